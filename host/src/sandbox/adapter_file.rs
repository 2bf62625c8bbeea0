//! A model adapter given as files (`--adapter-plugin MANIFEST` of `run`,
//! `serve` and `worker`): the manifest an upload sends, in YAML or JSON,
//! plus `component`, the `.wasm` path relative to the manifest.
//!
//! ```yaml
//! name: mychat
//! component: openai-chat.wasm
//! config: { base_url: "http://127.0.0.1:8080" }
//! allowed_hosts: ["127.0.0.1:8080"]
//! ```

use std::path::{Path, PathBuf};

use super::AdapterManifest;

/// A manifest and the component it names.
pub struct AdapterFile {
    pub manifest: AdapterManifest,
    pub component: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdapterFileError {
    #[error("reading {}: {error}", .path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{}: {message}", .path.display())]
    Manifest { path: PathBuf, message: String },
}

/// Reads the manifest at `path` and the component it names.
pub fn read(path: &Path) -> Result<AdapterFile, AdapterFileError> {
    let bad = |message: String| AdapterFileError::Manifest { path: path.to_path_buf(), message };
    let text = std::fs::read_to_string(path).map_err(|error| AdapterFileError::Read { path: path.into(), error })?;
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_yaml_ng::from_str(&text).map_err(|e| bad(format!("not a manifest: {e}")))?;
    let component = match fields.remove("component") {
        Some(serde_json::Value::String(component)) => component,
        _ => return Err(bad("`component` (the .wasm file, relative to the manifest) is required".into())),
    };
    let manifest: AdapterManifest =
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| bad(e.to_string()))?;
    let component_path = path.parent().unwrap_or(Path::new(".")).join(component);
    let bytes = std::fs::read(&component_path)
        .map_err(|error| AdapterFileError::Read { path: component_path.clone(), error })?;
    Ok(AdapterFile { manifest, component: bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_names_its_component_relative_to_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wasm"), b"\0asm").unwrap();
        let manifest = dir.path().join("a.yaml");
        std::fs::write(&manifest, "name: a\ncomponent: a.wasm\nallowed_hosts: [\"127.0.0.1:1\"]\n").unwrap();
        let file = read(&manifest).unwrap();
        assert_eq!((file.manifest.name.as_str(), file.component.as_slice()), ("a", &b"\0asm"[..]));
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("a.yaml");
        for (text, expected) in [
            ("name: a\nallowed_hosts: []\n", "`component`"),
            ("name: a\ncomponent: a.wasm\nallowed_hosts: []\nkey: x\n", "unknown field `key`"),
            ("name: a\ncomponent: missing.wasm\nallowed_hosts: []\n", "missing.wasm"),
        ] {
            std::fs::write(&manifest, text).unwrap();
            let message = read(&manifest).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }
}
