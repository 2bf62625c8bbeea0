//! Validation of an uploaded component's structure before it is compiled.
//!
//! Compiling costs the host CPU in proportion to what the component
//! contains, superlinearly in a function's live values: one function with
//! thousands of live locals took half a minute of Cranelift time. So the
//! bytes are walked first (`wasmparser`, no compilation) and a component
//! over any of these limits is refused before it reaches the compiler.

use wasmparser::{Parser, Payload};

use super::error::SandboxError;

/// Structural limits on an uploaded component, with room over what the
/// built-in plugins need (recorded in docs/BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Function bodies in all of the component's core modules.
    pub max_functions: usize,
    /// Locals declared by one function.
    pub max_locals: u64,
    /// Bytes of one function body.
    pub max_body_bytes: usize,
    /// Core modules and nested components.
    pub max_modules: usize,
    /// The sum over functions of locals x body bytes: Cranelift's time
    /// grows with both (a function whose locals stay live across a loop
    /// took 0.8 s at 5,000 locals and 97 KB, 14 s at 20,000 and 419 KB), so
    /// this bounds the whole component's compile time, not one function's.
    pub max_complexity: u64,
}

impl Default for UploadLimits {
    fn default() -> Self {
        Self {
            max_functions: 50_000,
            max_locals: 5_000,
            max_body_bytes: 512 << 10,
            max_modules: 64,
            max_complexity: 2_000_000_000,
        }
    }
}

/// What a component contains, as far as compiling it is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    pub functions: usize,
    pub most_locals: u64,
    pub largest_body: usize,
    pub modules: usize,
    pub complexity: u64,
}

/// Walks `bytes` and returns what they contain, or why they are refused.
pub fn check(bytes: &[u8], limits: &UploadLimits) -> Result<UploadStats, SandboxError> {
    // Not wasm, or a core module: refused with the reason, before parsing.
    super::cache::check_header(bytes)?;
    let mut stats = UploadStats::default();
    let too_complex =
        |what: String| Err(SandboxError::InvalidComponent(format!("too complex to compile safely: {what}")));
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| SandboxError::InvalidComponent(e.to_string()))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                stats.modules += 1;
                if stats.modules > limits.max_modules {
                    return too_complex(format!("more than {} modules and components", limits.max_modules));
                }
            }
            Payload::CodeSectionEntry(body) => {
                stats.functions += 1;
                if stats.functions > limits.max_functions {
                    return too_complex(format!("more than {} functions", limits.max_functions));
                }
                let size = body.range().len();
                stats.largest_body = stats.largest_body.max(size);
                if size > limits.max_body_bytes {
                    return too_complex(format!("a function body of {size} bytes (at most {})", limits.max_body_bytes));
                }
                let mut locals = 0u64;
                let reader = body.get_locals_reader().map_err(|e| SandboxError::InvalidComponent(e.to_string()))?;
                for entry in reader {
                    let (count, _) = entry.map_err(|e| SandboxError::InvalidComponent(e.to_string()))?;
                    locals = locals.saturating_add(u64::from(count));
                }
                stats.most_locals = stats.most_locals.max(locals);
                if locals > limits.max_locals {
                    return too_complex(format!("a function with {locals} locals (at most {})", limits.max_locals));
                }
                let cost = locals.saturating_add(1).saturating_mul(size as u64);
                stats.complexity = stats.complexity.saturating_add(cost);
                if stats.complexity > limits.max_complexity {
                    return too_complex(format!(
                        "locals x body bytes over all functions above {} (an estimate of compile time)",
                        limits.max_complexity
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_plugins_pass_with_room() {
        let limits = UploadLimits::default();
        for bytes in super::super::builtin::ASSERTION_PLUGINS {
            let stats = check(bytes, &limits).unwrap();
            println!("{stats:?}");
            assert!(stats.functions > 0, "{stats:?}");
            // Room: each figure at most half its limit.
            assert!(stats.functions * 2 <= limits.max_functions, "{stats:?}");
            assert!(stats.most_locals * 2 <= limits.max_locals, "{stats:?}");
            assert!(stats.largest_body * 2 <= limits.max_body_bytes, "{stats:?}");
            assert!(stats.complexity * 2 <= limits.max_complexity, "{stats:?}");
        }
    }

    #[test]
    fn garbage_is_refused_as_invalid() {
        let err = check(b"\0asm\x0d\0\x01\0\xff\xff", &UploadLimits::default()).unwrap_err();
        assert_eq!(err.code(), "invalid_component");
    }
}
