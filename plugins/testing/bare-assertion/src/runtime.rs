//! What `std` would otherwise provide: an allocator, `cabi_realloc`, a
//! panic handler and the C string functions.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

// `memcmp`, `memcpy` and friends, which the compiler emits calls to: on
// this target they come from wasi-libc, whose string functions touch no
// WASI interface.
#[link(name = "c")]
unsafe extern "C" {}

/// Size of the arena the first allocations come from: zero-initialised,
/// so it costs no data segment and no `memory.grow` for small inputs.
const ARENA_BYTES: usize = 64 * 1024;
const WASM_PAGE: usize = 64 * 1024;

/// Hands out memory and never takes it back: each use of the plugin is a
/// fresh instance, so nothing freed would be reused anyway. Allocations
/// come from the arena until it is full, then from pages added with
/// `memory.grow` (which the host's memory cap limits).
struct BumpAllocator {
    arena: UnsafeCell<[u8; ARENA_BYTES]>,
    state: UnsafeCell<BumpState>,
}

struct BumpState {
    /// Bytes of the arena handed out so far.
    arena_used: usize,
    /// Next free address in memory grown with `memory.grow` (0: none yet).
    heap_next: usize,
    heap_end: usize,
}

// SAFETY: a component instance is single-threaded.
unsafe impl Sync for BumpAllocator {}

unsafe impl GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single-threaded (see `Sync`), and no reference to the
        // state outlives this call.
        let state = unsafe { &mut *self.state.get() };
        let base = self.arena.get() as usize;
        let start = align_up(base + state.arena_used, layout.align());
        if let Some(end) = start.checked_add(layout.size())
            && end <= base + ARENA_BYTES
        {
            state.arena_used = end - base;
            return start as *mut u8;
        }
        let start = align_up(state.heap_next, layout.align());
        match start.checked_add(layout.size()) {
            Some(end) if state.heap_next != 0 && end <= state.heap_end => {
                state.heap_next = end;
                start as *mut u8
            }
            _ => {
                let pages = (layout.size() + layout.align()).div_ceil(WASM_PAGE);
                let previous = core::arch::wasm32::memory_grow(0, pages);
                if previous == usize::MAX {
                    return core::ptr::null_mut();
                }
                let fresh = previous * WASM_PAGE;
                let start = align_up(fresh, layout.align());
                state.heap_next = start + layout.size();
                state.heap_end = fresh + pages * WASM_PAGE;
                start as *mut u8
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

/// The canonical ABI's allocation entry point (on this target wit-bindgen
/// leaves it to wasi-libc, whose version would bring in libc's malloc).
///
/// # Safety
/// Called by the host as the canonical ABI specifies: `old_ptr`/`old_len`
/// describe an earlier allocation of this function (or are 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    let Ok(layout) = Layout::from_size_align(new_len, align) else { core::arch::wasm32::unreachable() };
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: `layout` has a non-zero size.
    let new = unsafe { ALLOCATOR.alloc(layout) };
    if new.is_null() {
        core::arch::wasm32::unreachable()
    }
    if old_len != 0 {
        // SAFETY: the old block holds `old_len` bytes and cannot overlap a
        // fresh bump allocation.
        unsafe { core::ptr::copy_nonoverlapping(old_ptr, new, old_len.min(new_len)) };
    }
    new
}

fn align_up(addr: usize, align: usize) -> usize {
    (addr + align - 1) & !(align - 1)
}

#[global_allocator]
static ALLOCATOR: BumpAllocator = BumpAllocator {
    arena: UnsafeCell::new([0; ARENA_BYTES]),
    state: UnsafeCell::new(BumpState { arena_used: 0, heap_next: 0, heap_end: 0 }),
};

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}
