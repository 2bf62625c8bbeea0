//! A stdout/stderr sink that keeps only the last bytes written.
//!
//! wasmtime-wasi's `MemoryOutputPipe` errors once full, which makes a guest's
//! `eprintln!` panic: a chatty plugin would then fail for talking. This pipe
//! never refuses a write; it keeps the tail (most useful after a panic) and
//! counts what it dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: u64,
}

/// Cloneable handle: the store owns one clone, the runner reads another.
#[derive(Debug, Clone)]
pub struct CapturePipe {
    cap: usize,
    tail: Arc<Mutex<Tail>>,
}

impl CapturePipe {
    pub fn new(cap: usize) -> Self {
        Self { cap, tail: Arc::default() }
    }

    fn push(&self, data: &[u8]) {
        let mut tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.bytes.extend_from_slice(data);
        // Trim only when twice over the cap, so trimming is amortised O(1).
        if tail.bytes.len() > self.cap.saturating_mul(2).max(1) {
            let excess = tail.bytes.len() - self.cap;
            tail.bytes.drain(..excess);
            tail.dropped += excess as u64;
        }
    }

    /// The kept tail as text, prefixed with a note of what was dropped.
    pub fn tail_text(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        let start = tail.bytes.len().saturating_sub(self.cap);
        let dropped = tail.dropped + start as u64;
        let text = String::from_utf8_lossy(&tail.bytes[start..]);
        if dropped > 0 { format!("[{dropped} earlier bytes dropped] {text}") } else { text.into_owned() }
    }
}

impl IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturePipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

impl AsyncWrite for CapturePipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_tail_and_counts_the_rest() {
        let pipe = CapturePipe::new(8);
        for chunk in ["hello ", "noisy ", "world!"] {
            pipe.push(chunk.as_bytes());
        }
        let text = pipe.tail_text();
        assert!(text.ends_with("y world!"), "{text}");
        assert!(text.starts_with("[10 earlier bytes dropped]"), "{text}");
    }
}
