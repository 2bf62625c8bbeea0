//! Which model adapter answers to which name, for whom.
//!
//! Invariants:
//! - Adapter names live in namespaces like assertion types (`registry.rs`):
//!   shared (the built-ins) and one per tenant. A tenant sees the shared
//!   adapters and its own; its names may not repeat a shared one.
//! - An uploaded adapter reaches only the hosts of its own grant, and the
//!   secret headers of that grant are added by the host on the way out: the
//!   plugin never sees them, and [`AdapterInfo`] names them without values.

use std::sync::{Arc, PoisonError};

use serde::Serialize;

use super::{AdapterPlugin, AdapterSettings, Limits, Owner, Sandbox, SandboxError, upload};
use super::{Completion, CompletionRequest};

/// What may be shown of an adapter: never a secret's value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AdapterInfo {
    pub name: String,
    /// SHA-256 of the component.
    pub hash: String,
    /// The hosts it may reach (`host[:port]`).
    pub allowed_hosts: Vec<String>,
    /// The headers the host adds to its requests, by name only.
    pub secret_headers: Vec<String>,
    /// The JSON object handed to the plugin as its `config`.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// The component's size in bytes (counts against a tenant's allowance).
    pub size_bytes: usize,
}

/// Longest adapter name, as for plugin names.
const MAX_ADAPTER_NAME: usize = 64;
/// Most hosts one adapter may reach, and most secret headers.
const MAX_HOSTS: usize = 16;
/// Largest secret header value, and the largest `config` (as JSON).
const MAX_SECRET_BYTES: usize = 8 << 10;
const MAX_CONFIG_BYTES: usize = 64 << 10;

/// How an uploaded adapter is to be run: what its owner sends with the
/// component. Kept as JSON in the store; the secret values never leave the
/// host except in the adapter's own requests.
#[derive(Clone, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdapterManifest {
    /// Executions name it as `"model": "<name>:<model>"`.
    pub name: String,
    /// Handed to the plugin as its `config` (e.g. `{"base_url": ...}`).
    /// Not secret: put keys in `secret_headers`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
    /// `host`, `host:port` or a URL: the only places it may connect to.
    pub allowed_hosts: Vec<String>,
    /// Headers the host adds to its requests (an API key, say).
    #[serde(default)]
    pub secret_headers: Vec<SecretHeaderSpec>,
}

/// One secret header of a manifest.
#[derive(Clone, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretHeaderSpec {
    /// Which allowed host gets it; every allowed host when absent.
    #[serde(default)]
    pub host: Option<String>,
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for SecretHeaderSpec {
    /// Never the value, wherever a manifest is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHeaderSpec").field("host", &self.host).field("name", &self.name).finish_non_exhaustive()
    }
}

impl AdapterManifest {
    /// The settings the sandbox runs the adapter with; a clear error for
    /// anything malformed (hosts, header names and values, sizes).
    pub fn settings(&self) -> Result<AdapterSettings, SandboxError> {
        let bad = |m: String| SandboxError::BadDescription(m);
        if self.allowed_hosts.is_empty() || self.allowed_hosts.len() > MAX_HOSTS {
            return Err(bad(format!("an adapter needs 1 to {MAX_HOSTS} `allowed_hosts`")));
        }
        if self.secret_headers.len() > MAX_HOSTS {
            return Err(bad(format!("at most {MAX_HOSTS} `secret_headers`")));
        }
        let config = serde_json::Value::Object(self.config.clone());
        if config.to_string().len() > MAX_CONFIG_BYTES {
            return Err(bad(format!("`config` is over {MAX_CONFIG_BYTES} bytes")));
        }
        let allowed = self
            .allowed_hosts
            .iter()
            .map(|h| super::AllowedHost::parse(h).map_err(|e| bad(format!("allowed_hosts: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut secret_headers = Vec::new();
        for spec in &self.secret_headers {
            let name = http::header::HeaderName::from_bytes(spec.name.as_bytes())
                .map_err(|_| bad(format!("secret header name `{}` is not a header name", spec.name)))?;
            if spec.value.len() > MAX_SECRET_BYTES {
                return Err(bad(format!("secret header `{name}` is over {MAX_SECRET_BYTES} bytes")));
            }
            let mut value = http::header::HeaderValue::from_str(&spec.value)
                .map_err(|_| bad(format!("secret header `{name}` has a value that is not a header value")))?;
            value.set_sensitive(true);
            let hosts = match &spec.host {
                None => allowed.clone(),
                Some(h) => {
                    let host = super::AllowedHost::parse(h).map_err(|e| bad(format!("secret header `{name}`: {e}")))?;
                    if !allowed.contains(&host) {
                        return Err(bad(format!("secret header `{name}` is for `{h}`, which is not an allowed host")));
                    }
                    vec![host]
                }
            };
            for host in hosts {
                secret_headers.push(super::SecretHeader { host, name: name.clone(), value: value.clone() });
            }
        }
        Ok(AdapterSettings { config, grant: super::HttpGrant { allowed, secret_headers } })
    }
}

impl Sandbox {
    /// Registers a shared adapter (a built-in) under `name`.
    pub fn add_adapter_plugin(&self, name: &str, bytes: &[u8], settings: AdapterSettings) -> Result<(), SandboxError> {
        let (hash, component) = self.cache.get(bytes)?;
        let plugin = AdapterPlugin::load(
            name,
            &self.engine,
            &self.adapter_linker,
            &component,
            hash,
            settings,
            self.http.clone(),
        )?;
        self.adapters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((None, name.to_string()), Arc::new(plugin));
        Ok(())
    }

    /// Compiles (with the upload checks and budget), validates and
    /// registers `owner`'s adapter `name`. A name the owner already sees
    /// (shared, or its own) is `plugin_exists`; delete it first.
    pub async fn add_adapter_plugin_for(
        &self,
        owner: Owner,
        name: &str,
        bytes: &[u8],
        settings: AdapterSettings,
    ) -> Result<AdapterInfo, SandboxError> {
        let well_formed = !name.is_empty()
            && name.len() <= MAX_ADAPTER_NAME
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-');
        if !well_formed {
            return Err(SandboxError::BadDescription(format!(
                "adapter names are 1-{MAX_ADAPTER_NAME} characters of a-z, 0-9 and -"
            )));
        }
        upload::check(bytes, &upload::UploadLimits::default())?;
        let (hash, component) = self.compile(bytes).await?;
        let registered = AdapterPlugin::load(
            name,
            &self.engine,
            &self.adapter_linker,
            &component,
            hash.clone(),
            settings,
            self.http.clone(),
        )
        .map(|plugin| plugin.with_size(bytes.len()))
        .and_then(|plugin| {
            let mut adapters = self.adapters.write().unwrap_or_else(PoisonError::into_inner);
            // What could collide: every name the owner sees; for a shared
            // adapter, which every tenant sees, every name.
            let taken = adapters.keys().any(|(o, n)| n == name && (o.is_none() || *o == owner || owner.is_none()));
            if taken {
                return Err(SandboxError::PluginExists { name: name.to_string() });
            }
            let info = describe(&plugin);
            adapters.insert((owner, name.to_string()), Arc::new(plugin));
            Ok(info)
        });
        match &registered {
            Ok(info) => {
                tracing::info!(adapter = %name, owner = ?owner, hash = %info.hash, hosts = ?info.allowed_hosts, "adapter registered")
            }
            // A refused adapter leaves no compiled artifact behind.
            Err(_) if !self.has_component(&hash) => self.cache.forget(&hash),
            Err(_) => {}
        }
        registered
    }

    /// Unregisters `owner`'s uploaded adapter `name` (a built-in, or
    /// another tenant's, is `unknown_plugin`).
    pub fn remove_adapter_plugin_for(&self, owner: Owner, name: &str) -> Result<AdapterInfo, SandboxError> {
        let removed = match owner.is_none() && is_builtin(name) {
            true => None,
            false => self.adapters.write().unwrap_or_else(PoisonError::into_inner).remove(&(owner, name.to_string())),
        };
        let plugin = removed.ok_or_else(|| SandboxError::UnknownPlugin { name: name.to_string() })?;
        if !self.has_component(plugin.hash()) {
            self.cache.forget(plugin.hash());
        }
        tracing::info!(adapter = %name, owner = ?owner, "adapter removed");
        Ok(describe(&plugin))
    }

    /// The shared adapter names, sorted.
    pub fn adapter_names(&self) -> Vec<String> {
        self.adapter_names_for(None)
    }

    /// The adapter names `owner` sees (shared and its own), sorted.
    pub fn adapter_names_for(&self, owner: Owner) -> Vec<String> {
        let adapters = self.adapters.read().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> =
            adapters.keys().filter(|(o, _)| o.is_none() || *o == owner).map(|(_, n)| n.clone()).collect();
        names.sort();
        names
    }

    /// The adapters `owner` uploaded (without a key: the shared uploads,
    /// built-ins aside).
    pub fn uploaded_adapters(&self, owner: Owner) -> Vec<AdapterInfo> {
        let adapters = self.adapters.read().unwrap_or_else(PoisonError::into_inner);
        adapters
            .iter()
            .filter(|((o, name), _)| *o == owner && !(o.is_none() && is_builtin(name)))
            .map(|(_, p)| describe(p))
            .collect()
    }

    /// The shared adapter registered as `name`.
    pub fn adapter(&self, name: &str) -> Result<Arc<AdapterPlugin>, SandboxError> {
        self.adapter_for(None, name)
    }

    /// The adapter `owner` knows as `name`: a shared one, else its own.
    pub fn adapter_for(&self, owner: Owner, name: &str) -> Result<Arc<AdapterPlugin>, SandboxError> {
        let found = {
            let adapters = self.adapters.read().unwrap_or_else(PoisonError::into_inner);
            adapters.get(&(None, name.to_string())).or_else(|| adapters.get(&(owner, name.to_string()))).cloned()
        };
        found.ok_or_else(|| SandboxError::UnknownAdapter {
            name: name.to_string(),
            known: self.adapter_names_for(owner).join(", "),
        })
    }

    /// Runs the shared `adapter` on `request` under `limits`.
    pub async fn complete(
        &self,
        adapter: &str,
        request: &CompletionRequest,
        limits: &Limits,
    ) -> Result<Completion, SandboxError> {
        self.complete_for(None, adapter, request, limits).await
    }

    /// Runs the adapter `owner` knows as `adapter`.
    pub async fn complete_for(
        &self,
        owner: Owner,
        adapter: &str,
        request: &CompletionRequest,
        limits: &Limits,
    ) -> Result<Completion, SandboxError> {
        self.adapter_for(owner, adapter)?.complete(request, limits).await
    }

    /// One embedding per text from `model`, through the adapter `owner`
    /// knows as `adapter`.
    pub async fn embed_for(
        &self,
        owner: Owner,
        adapter: &str,
        model: &str,
        texts: &[String],
        limits: &Limits,
    ) -> Result<Vec<Vec<f32>>, SandboxError> {
        self.adapter_for(owner, adapter)?.embed(model, texts, limits).await
    }

    /// Warms `model` through the shared `adapter`.
    pub async fn warm(&self, adapter: &str, model: &str, limits: &Limits) -> Result<(), SandboxError> {
        self.warm_for(None, adapter, model, limits).await
    }

    /// Warms `model` through the adapter `owner` knows as `adapter`.
    pub async fn warm_for(
        &self,
        owner: Owner,
        adapter: &str,
        model: &str,
        limits: &Limits,
    ) -> Result<(), SandboxError> {
        self.adapter_for(owner, adapter)?.warm(model, limits).await
    }

    /// The concurrency state of the model endpoints the shared (built-in)
    /// adapters may reach: what any API caller may see. Tenants' own
    /// adapters' endpoints are another tenant's business; the operator sees
    /// every endpoint in `/metrics`.
    pub fn shared_endpoint_status(&self) -> Vec<super::endpoints::EndpointStatus> {
        let shared: Vec<super::HttpGrant> = {
            let adapters = self.adapters.read().unwrap_or_else(PoisonError::into_inner);
            adapters.iter().filter(|((o, _), _)| o.is_none()).map(|(_, p)| p.settings().grant.clone()).collect()
        };
        self.endpoint_status()
            .into_iter()
            .filter(|status| {
                url::Url::parse(&status.endpoint).is_ok_and(|url| shared.iter().any(|grant| grant.permits(&url)))
            })
            .collect()
    }

    /// Whether a registered adapter or assertion plugin uses the component
    /// hashing to `hash` (its compiled form is then kept).
    fn has_component(&self, hash: &str) -> bool {
        self.assertions.has_hash(hash)
            || self.adapters.read().unwrap_or_else(PoisonError::into_inner).values().any(|p| p.hash() == hash)
    }
}

/// Whether `name` is one of the adapters shipped with cardrun.
fn is_builtin(name: &str) -> bool {
    super::builtin::ADAPTERS.iter().any(|(builtin, _)| *builtin == name)
}

fn describe(plugin: &AdapterPlugin) -> AdapterInfo {
    let settings = plugin.settings();
    AdapterInfo {
        name: plugin.name().to_string(),
        hash: plugin.hash().to_string(),
        allowed_hosts: settings.grant.allowed.iter().map(ToString::to_string).collect(),
        secret_headers: settings.grant.secret_headers.iter().map(|h| h.name.to_string()).collect(),
        config: settings.config.clone(),
        size_bytes: plugin.size_bytes(),
    }
}
