//! Compiles components once: an in-memory map and an on-disk directory of
//! precompiled artifacts, both keyed by content hash.
//!
//! On-disk artifacts live under `<dir>/<engine key>/<sha256>.cwasm`, where
//! the engine key hashes wasmtime's version and its compatibility hash, so
//! an engine with another configuration never loads a stale artifact.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::SandboxError;

/// The hex SHA-256 of a component's bytes: its identity everywhere.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub struct ComponentCache {
    engine: Engine,
    dir: Option<PathBuf>,
    loaded: Mutex<HashMap<String, Component>>,
}

impl ComponentCache {
    /// `dir` = `None` keeps compiled components in memory only.
    pub fn new(engine: Engine, dir: Option<PathBuf>) -> Self {
        let dir = dir.map(|d| d.join(engine_key(&engine)));
        Self { engine, dir, loaded: Mutex::default() }
    }

    /// Returns the compiled component for `bytes`, compiling at most once per
    /// process and once per cache directory.
    pub fn get(&self, bytes: &[u8]) -> Result<(String, Component), SandboxError> {
        check_header(bytes)?;
        let hash = content_hash(bytes);
        if let Some(c) = self.loaded.lock().unwrap_or_else(PoisonError::into_inner).get(&hash) {
            return Ok((hash, c.clone()));
        }
        let component = match self.load_from_disk(&hash) {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes)
                    .map_err(|e| SandboxError::InvalidComponent(format!("{e:#}")))?;
                self.store_on_disk(&hash, &c);
                c
            }
        };
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash.clone(), component.clone());
        Ok((hash, component))
    }

    /// The compiled component of `hash`, if memory or disk has it.
    pub fn cached(&self, hash: &str) -> Option<Component> {
        if let Some(c) = self.loaded.lock().unwrap_or_else(PoisonError::into_inner).get(hash) {
            return Some(c.clone());
        }
        let component = self.load_from_disk(hash)?;
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash.to_string(), component.clone());
        Some(component)
    }

    /// Keeps a component compiled elsewhere (the compiler process).
    pub fn adopt(&self, hash: &str, component: &Component) {
        self.store_on_disk(hash, component);
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).insert(hash.to_string(), component.clone());
    }

    /// Drops the compiled component of `hash` from memory and disk (a
    /// refused or removed plugin).
    pub fn forget(&self, hash: &str) {
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner).remove(hash);
        if let Some(path) = self.artifact_path(hash) {
            let _ = std::fs::remove_file(path);
        }
    }

    fn artifact_path(&self, hash: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{hash}.cwasm")))
    }

    fn load_from_disk(&self, hash: &str) -> Option<Component> {
        let path = self.artifact_path(hash)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: deserialising runs no guest code but trusts the artifact to
        // be wasmtime's own output. The directory is ours (written only by
        // `store_on_disk`), and the path is keyed by engine compatibility, so
        // a foreign or stale artifact is not expected; wasmtime also checks
        // the header and refuses artifacts of another version or config.
        match unsafe { Component::deserialize_file(&self.engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unusable artifact");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn store_on_disk(&self, hash: &str, component: &Component) {
        let Some(path) = self.artifact_path(hash) else { return };
        let result = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomically(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = result {
            // A cache miss next time is the only cost.
            tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
        }
    }
}

/// Writes via a temporary file and a rename, so a concurrent reader never
/// sees half an artifact.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn engine_key(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("wasmtime48-{:016x}", hasher.finish())
}

/// Rejects what is plainly not a component with a message a plugin author
/// can act on (wasmtime's own parse errors dump byte arrays).
pub(super) fn check_header(bytes: &[u8]) -> Result<(), SandboxError> {
    const MAGIC: &[u8] = b"\0asm";
    // The version/layer field after the magic: 1 for a core module, 0x1000d
    // for a component (the component-model binary format).
    const CORE_MODULE: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return Err(SandboxError::InvalidComponent("not a WebAssembly binary (no `\\0asm` header)".into()));
    }
    if bytes.get(4..8) == Some(CORE_MODULE) {
        return Err(SandboxError::InvalidComponent(
            "a core WebAssembly module, not a component: build the plugin for the `wasm32-wasip2` target".into(),
        ));
    }
    Ok(())
}
