//! What a component imports, checked against what the sandbox provides,
//! when it is loaded (upload, `--plugin`, `cardrun plugin check`), so that
//! an author learns which import is missing and how to drop it, instead of
//! wasmtime's "resource implementation is missing" at first use.
//!
//! The sandbox links WASI 0.2 (`wasmtime_wasi::p2`: io, clocks, random,
//! cli, filesystem with no directories, sockets with no network) for every
//! plugin, the `cardrun:plugin/types` interface (types only),
//! `cardrun:plugin/grader` and `cardrun:plugin/model-call` for assertions alone and `cardrun:plugin/http`
//! for model adapters alone. Nothing else.

use wasmtime::Engine;
use wasmtime::component::Component;

use super::error::SandboxError;

/// Which world a component is loaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorldKind {
    Assertion,
    ModelAdapter,
}

impl WorldKind {
    pub fn name(self) -> &'static str {
        match self {
            WorldKind::Assertion => "assertion",
            WorldKind::ModelAdapter => "model-adapter",
        }
    }
}

/// The WASI 0.2 packages the sandbox links (any 0.2.x version: wasmtime
/// matches semver-compatible imports).
const WASI_PACKAGES: &[&str] =
    &["wasi:io", "wasi:clocks", "wasi:random", "wasi:cli", "wasi:filesystem", "wasi:sockets"];

/// An import name split into package (`wasi:http`), interface (`types`)
/// and version (`0.2.3`); plain names (`describe`) have no package.
struct ImportName<'a> {
    package: Option<&'a str>,
    interface: &'a str,
    version: Option<&'a str>,
}

fn split(name: &str) -> ImportName<'_> {
    let (path, version) = match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    };
    match path.split_once('/') {
        Some((package, interface)) => ImportName { package: Some(package), interface, version },
        None => ImportName { package: None, interface: path, version },
    }
}

/// Whether the sandbox provides `name` to a component of `world`.
fn provided(name: &str, world: WorldKind) -> bool {
    let import = split(name);
    match import.package {
        Some(package) if WASI_PACKAGES.contains(&package) => import.version.is_none_or(|v| v.starts_with("0.2.")),
        Some("cardrun:plugin") => match import.interface {
            "types" => true,
            "http" => world == WorldKind::ModelAdapter,
            "grader" | "model-call" => world == WorldKind::Assertion,
            _ => false,
        },
        _ => false,
    }
}

/// How an author drops `name` from a build, when we know.
fn hint(name: &str, world: WorldKind) -> Option<&'static str> {
    let import = split(name);
    match import.package? {
        "wasi:http" => Some(
            "cardrun does not provide wasi:http (adapters reach the network through `cardrun:plugin/http`); componentize-js adds it unless built with `--disable http fetch-event` (`-d http -d fetch-event`)",
        ),
        "cardrun:plugin" if import.interface == "http" && world == WorldKind::Assertion => {
            Some("the `http` capability is granted to model adapters only; an assertion cannot import it")
        }
        "cardrun:plugin" if import.interface == "grader" && world == WorldKind::ModelAdapter => {
            Some("the `grader` capability is granted to assertions only; an adapter cannot import it")
        }
        package if WASI_PACKAGES.contains(&package) => {
            Some("cardrun provides WASI 0.2 (wasm32-wasip2); build for that target, not a preview-3 one")
        }
        _ => None,
    }
}

/// The imports of `component` the sandbox does not provide to `world`, in
/// the component's order.
pub fn missing_imports(engine: &Engine, component: &Component, world: WorldKind) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !provided(name, world))
        .map(str::to_string)
        .collect()
}

/// The world whose exports `exports` has, if any.
pub fn world_of(exports: &[String]) -> Option<WorldKind> {
    let has = |name: &str| exports.iter().any(|e| e == name);
    if has("describe") && has("evaluate") {
        Some(WorldKind::Assertion)
    } else if has("complete") && has("warm") {
        Some(WorldKind::ModelAdapter)
    } else {
        None
    }
}

/// Refuses `component` when its exports are another world's (checked
/// first: an adapter uploaded as an assertion is the wrong world, not an
/// assertion with a forbidden import), or when it imports anything the
/// sandbox does not provide to `world`, naming every such import and how
/// to drop it. wasmtime checks the exports' types when it links.
pub fn check(engine: &Engine, component: &Component, world: WorldKind) -> Result<(), SandboxError> {
    let exports: Vec<String> = component.component_type().exports(engine).map(|(name, _)| name.to_string()).collect();
    match world_of(&exports) {
        Some(found) if found == world => {}
        found => {
            let what = match found {
                Some(WorldKind::ModelAdapter) => " (a model adapter: upload it as multipart with a manifest)",
                Some(WorldKind::Assertion) => " (an assertion plugin)",
                None => "",
            };
            return Err(SandboxError::WrongWorld {
                world: world.name(),
                detail: format!("it exports {}{what}", exports.join(", ")),
            });
        }
    }
    let missing = missing_imports(engine, component, world);
    if missing.is_empty() { Ok(()) } else { Err(check_names(&missing, world)) }
}

/// The error naming `missing` imports of a `world` component, with the
/// fixes known for them.
pub fn check_names(missing: &[String], world: WorldKind) -> SandboxError {
    let mut hints: Vec<&str> = missing.iter().filter_map(|name| hint(name, world)).collect();
    hints.dedup();
    SandboxError::MissingImports { world: world.name(), imports: missing.to_vec(), hints: hints.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_0_2_and_our_types_are_provided() {
        for name in [
            "wasi:io/streams@0.2.0",
            "wasi:cli/environment@0.2.3",
            "wasi:random/random@0.2.6",
            "cardrun:plugin/types@0.1.0",
        ] {
            assert!(provided(name, WorldKind::Assertion), "{name}");
        }
        assert!(provided("cardrun:plugin/http@0.1.0", WorldKind::ModelAdapter));
    }

    #[test]
    fn http_and_other_versions_are_not() {
        for name in [
            "wasi:http/types@0.2.3",
            "cardrun:plugin/http@0.1.0",
            "wasi:cli/environment@0.3.0",
            "acme:secret/keys",
            "log",
        ] {
            assert!(!provided(name, WorldKind::Assertion), "{name}");
        }
    }

    #[test]
    fn hints_name_the_fix() {
        assert!(hint("wasi:http/types@0.2.3", WorldKind::Assertion).is_some_and(|h| h.contains("-d http")));
        assert!(hint("cardrun:plugin/http@0.1.0", WorldKind::Assertion).is_some_and(|h| h.contains("model adapters")));
        assert_eq!(hint("acme:secret/keys", WorldKind::Assertion), None);
    }
}
