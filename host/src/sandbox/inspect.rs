//! Looking at a component without registering it: which world it
//! implements, what it imports that the sandbox lacks, and an assertion
//! plugin loaded for a trial (`cardrun plugin check` and `bench`).

use std::time::{Duration, Instant};

use super::assertion::AssertionPlugin;
use super::error::SandboxError;
use super::imports::{self, WorldKind};
use super::upload::{self, UploadStats};
use super::{Sandbox, content_hash};

/// What a component is, as far as loading it goes.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// The world its exports match; `None` when they match neither.
    pub world: Option<WorldKind>,
    /// Whether it exports `check` (the `checked-assertion` world).
    pub checks_parameters: bool,
    /// Its exports and imports, by name, in the component's order.
    pub exports: Vec<String>,
    pub imports: Vec<String>,
    /// Imports the sandbox does not provide to `world` (to the assertion
    /// world when `world` is `None`).
    pub missing_imports: Vec<String>,
    /// What the structure check found.
    pub stats: UploadStats,
    pub size_bytes: usize,
    /// How long getting the compiled form took, and whether it was cached.
    pub load_time: Duration,
    pub was_cached: bool,
}

impl Sandbox {
    /// Checks the structure of `bytes`, compiles them (or takes the cached
    /// form) and reports their world and imports. Errors are what would
    /// refuse the component before its world is even looked at.
    pub async fn inspect(&self, bytes: &[u8]) -> Result<Inspection, SandboxError> {
        let stats = upload::check(bytes, &upload::UploadLimits::default())?;
        let was_cached = self.is_compiled(bytes);
        let started = Instant::now();
        let (_, component) = self.compile(bytes).await?;
        let load_time = started.elapsed();
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let imports_found: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let world = imports::world_of(&exports);
        let missing_imports = imports::missing_imports(&self.engine, &component, world.unwrap_or(WorldKind::Assertion));
        Ok(Inspection {
            world,
            checks_parameters: world == Some(WorldKind::Assertion) && exports.iter().any(|e| e == "check"),
            exports,
            imports: imports_found,
            missing_imports,
            stats,
            size_bytes: bytes.len(),
            load_time,
            was_cached,
        })
    }

    /// Loads `bytes` as an assertion plugin without registering it: its
    /// types need not be free, and nothing else sees it.
    pub async fn trial_assertion_plugin(&self, bytes: &[u8]) -> Result<AssertionPlugin, SandboxError> {
        upload::check(bytes, &upload::UploadLimits::default())?;
        let (hash, component) = self.compile(bytes).await?;
        AssertionPlugin::load(&self.engine, &self.assertion_linker, &component, hash, bytes.len()).await
    }

    /// How long compiling `bytes` takes on this host when nothing is cached
    /// (a first load), measured without touching the cache.
    pub async fn time_compile(&self, bytes: &[u8]) -> Result<Duration, SandboxError> {
        upload::check(bytes, &upload::UploadLimits::default())?;
        let (engine, owned) = (self.engine.clone(), bytes.to_vec());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            wasmtime::component::Component::new(&engine, &owned)
                .map(|_| started.elapsed())
                .map_err(|e| SandboxError::InvalidComponent(format!("{e:#}")))
        })
        .await
        .map_err(|e| SandboxError::Internal(format!("compiling the plugin: {e}")))?
    }

    /// The built-in assertion plugin providing `kind`, for a baseline.
    pub fn builtin_assertion_plugin(&self, kind: &str) -> Result<std::sync::Arc<AssertionPlugin>, SandboxError> {
        let plugin = self.assertion_plugin(kind)?;
        if self.is_builtin(plugin.info()) {
            Ok(plugin)
        } else {
            Err(SandboxError::UnknownAssertion {
                name: kind.to_string(),
                known: self.assertions.builtin_types.join(", "),
            })
        }
    }
}

/// The hex SHA-256 of `bytes`, shortened for display.
pub fn short_hash(bytes: &[u8]) -> String {
    content_hash(bytes)[..12].to_string()
}
