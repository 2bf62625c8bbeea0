//! Which assertion plugin provides which type, for whom.
//!
//! Invariants:
//! - Types live in namespaces: the shared one (`None`: built-ins, plugin
//!   files, and uploads made without a tenant) and one per tenant. A tenant
//!   sees the shared types and its own; a type name resolves to at most one
//!   plugin for any tenant, because a tenant's type may not repeat a shared
//!   one and a shared type may not repeat any tenant's.
//! - Built-in types are never claimed, by anyone.
//! - Within what one tenant sees, a plugin name is unique, and a type
//!   belongs to one plugin: claiming another plugin's type is `type_taken`
//!   (replacing is explicit).
//! - Registering the same bytes again in the same namespace changes nothing.
//! - Replacing a plugin keeps its earlier versions (up to
//!   [`KEPT_VERSIONS`] in all) for tests queued before the replacement,
//!   which name the version they were planned with; deleting a plugin
//!   drops every version.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use super::{AssertionInfo, AssertionPlugin, SandboxError};

/// Whose a plugin is: `None` for the shared namespace, else a tenant id.
pub type Owner = Option<i64>;

/// A tenant's allowance for uploaded plugins (issue 14: plugin count and
/// total size per tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginQuota {
    /// `TENANT_MAX_PLUGINS` (20).
    pub max_plugins: usize,
    /// `TENANT_MAX_PLUGIN_BYTES` (64 MiB): the components' bytes together.
    pub max_bytes: usize,
}

impl Default for PluginQuota {
    fn default() -> Self {
        Self { max_plugins: 20, max_bytes: 64 << 20 }
    }
}

/// Versions of one plugin kept (the current one included).
pub const KEPT_VERSIONS: usize = 4;

#[derive(Default)]
pub(super) struct Registry {
    /// (owner, type) -> plugin.
    map: RwLock<BTreeMap<(Owner, String), Arc<AssertionPlugin>>>,
    /// Every kept version, oldest first: current ones and those replaced.
    /// Locked after `map` when both are.
    versions: RwLock<Vec<(Owner, Arc<AssertionPlugin>)>>,
    pub(super) builtin_types: Vec<String>,
    pub(super) max_plugins: usize,
}

impl Registry {
    pub fn new(max_plugins: usize) -> Self {
        Self { max_plugins, ..Self::default() }
    }

    /// The plugin providing `kind` (no `not-`) as `owner` sees it.
    pub fn get(&self, owner: Owner, kind: &str) -> Option<Arc<AssertionPlugin>> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(&(None, kind.to_string())).or_else(|| owner.and_then(|_| map.get(&(owner, kind.to_string())))).cloned()
    }

    /// The version of `owner`'s (or a shared) plugin whose component hashes
    /// to `hash`, current or replaced.
    pub fn version(&self, owner: Owner, hash: &str) -> Option<Arc<AssertionPlugin>> {
        let versions = self.versions.read().unwrap_or_else(PoisonError::into_inner);
        let find = |who: Owner| versions.iter().find(|(o, p)| *o == who && p.info().hash == hash);
        find(owner).or_else(|| find(None)).map(|(_, p)| p.clone())
    }

    /// The types `owner` sees, sorted.
    pub fn types(&self, owner: Owner) -> Vec<String> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut types: Vec<String> =
            map.keys().filter(|(o, _)| o.is_none() || *o == owner).map(|(_, kind)| kind.clone()).collect();
        types.sort();
        types
    }

    /// The plugins `owner` sees (shared ones first), each once.
    pub fn plugins(&self, owner: Owner) -> Vec<(Owner, AssertionInfo)> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut seen = BTreeMap::new();
        for ((o, _), plugin) in map.iter() {
            if o.is_none() || *o == owner {
                seen.entry((*o, plugin.info().hash.clone())).or_insert_with(|| (*o, plugin.info().clone()));
            }
        }
        seen.into_values().collect()
    }

    /// Every plugin of every namespace, each once: for the host's figures.
    pub fn count_all(&self) -> usize {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|((o, _), p)| (*o, p.info().hash.as_str())).collect::<HashSet<_>>().len()
    }

    pub fn has_hash(&self, hash: &str) -> bool {
        self.versions.read().unwrap_or_else(PoisonError::into_inner).iter().any(|(_, p)| p.info().hash == hash)
    }

    fn is_builtin_plugin(&self, plugin: &AssertionPlugin) -> bool {
        plugin.info().assertion_types.iter().any(|t| self.builtin_types.contains(t))
    }

    /// Registers `plugin` for `owner`, replacing the plugin named
    /// `replacing` (which must be the plugin's own name), within the host's
    /// plugin count and, for a tenant, `quota`.
    pub fn insert(
        &self,
        owner: Owner,
        plugin: Arc<AssertionPlugin>,
        replacing: Option<&str>,
        quota: Option<PluginQuota>,
    ) -> Result<AssertionInfo, SandboxError> {
        let info = plugin.info().clone();
        if let Some(name) = replacing
            && info.name != name
        {
            return Err(SandboxError::BadDescription(format!("the component is plugin `{}`, not `{name}`", info.name)));
        }
        if let Some(taken) = info.assertion_types.iter().find(|t| self.builtin_types.contains(t)) {
            return Err(SandboxError::BuiltinType { name: taken.clone() });
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(same) = map.iter().find(|((o, _), p)| *o == owner && p.info().hash == info.hash) {
            return Ok(same.1.info().clone());
        }
        // Only one's own plugin can be replaced; another tenant's is unknown.
        if replacing.is_some() && !map.iter().any(|((o, _), p)| *o == owner && p.info().name == info.name) {
            return Err(SandboxError::UnknownPlugin { name: info.name });
        }
        // What could collide: everything the owner sees; for a shared
        // plugin, which every tenant sees, everything.
        let collides = |o: &Owner| owner.is_none() || o.is_none() || *o == owner;
        for ((o, kind), holder) in map.iter() {
            if collides(o) && info.assertion_types.contains(kind) && holder.info().name != info.name {
                return Err(SandboxError::TypeTaken { name: kind.clone(), owner: holder.info().name.clone() });
            }
        }
        let exists = map.iter().any(|((o, _), p)| collides(o) && p.info().name == info.name);
        if replacing.is_none() && exists {
            return Err(SandboxError::PluginExists { name: info.name });
        }
        let others = |map: &BTreeMap<(Owner, String), Arc<AssertionPlugin>>, of: &dyn Fn(&Owner) -> bool| {
            let mut seen = HashSet::new();
            map.iter()
                .filter(|((o, _), p)| of(o) && p.info().name != info.name && !self.is_builtin_plugin(p))
                .filter(|((o, _), p)| seen.insert((*o, p.info().hash.clone())))
                .map(|(_, p)| p.info().size_bytes)
                .collect::<Vec<usize>>()
        };
        if others(&map, &|_| true).len() >= self.max_plugins {
            return Err(SandboxError::TooManyPlugins { max: self.max_plugins });
        }
        if let (Some(_), Some(quota)) = (owner, quota) {
            let own = others(&map, &|o| *o == owner);
            if own.len() >= quota.max_plugins {
                return Err(SandboxError::PluginQuota {
                    what: format!("{} plugins", quota.max_plugins),
                    variable: "TENANT_MAX_PLUGINS",
                });
            }
            if own.iter().sum::<usize>().saturating_add(info.size_bytes) > quota.max_bytes {
                return Err(SandboxError::PluginQuota {
                    what: format!("{} MiB of plugins", quota.max_bytes >> 20),
                    variable: "TENANT_MAX_PLUGIN_BYTES",
                });
            }
        }
        map.retain(|(o, _), p| !(*o == owner && p.info().name == info.name));
        for kind in &info.assertion_types {
            map.insert((owner, kind.clone()), plugin.clone());
        }
        let mut versions = self.versions.write().unwrap_or_else(PoisonError::into_inner);
        versions.retain(|(o, p)| !(*o == owner && p.info().hash == info.hash));
        versions.push((owner, plugin));
        // The oldest replaced versions beyond what is kept are dropped.
        let same = |(o, p): &(Owner, Arc<AssertionPlugin>)| *o == owner && p.info().name == info.name;
        while versions.iter().filter(|v| same(v)).count() > KEPT_VERSIONS {
            let Some(oldest) = versions.iter().position(same) else { break };
            versions.remove(oldest);
        }
        Ok(info)
    }

    /// The hashes of `owner`'s kept versions of plugin `name`, oldest first.
    pub fn version_hashes(&self, owner: Owner, name: &str) -> Vec<String> {
        let versions = self.versions.read().unwrap_or_else(PoisonError::into_inner);
        versions
            .iter()
            .filter(|(o, p)| *o == owner && p.info().name == name)
            .map(|(_, p)| p.info().hash.clone())
            .collect()
    }

    /// Unregisters `owner`'s plugin named `name`; built-ins stay, and a
    /// tenant cannot remove a shared plugin (it is not the tenant's).
    pub fn remove(&self, owner: Owner, name: &str) -> Result<AssertionInfo, SandboxError> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let found = map.iter().find(|((o, _), p)| *o == owner && p.info().name == name).map(|(_, p)| p.clone());
        let Some(plugin) = found else {
            return Err(SandboxError::UnknownPlugin { name: name.to_string() });
        };
        if let Some(builtin) = plugin.info().assertion_types.iter().find(|t| self.builtin_types.contains(t)) {
            return Err(SandboxError::BuiltinType { name: builtin.clone() });
        }
        map.retain(|(o, _), p| !(*o == owner && p.info().name == name));
        drop(map);
        let mut versions = self.versions.write().unwrap_or_else(PoisonError::into_inner);
        versions.retain(|(o, p)| !(*o == owner && p.info().name == name));
        Ok(plugin.info().clone())
    }

    /// Drops a replaced version (not the current one) of `owner`'s plugin
    /// hashing to `hash`; true if one was dropped.
    pub fn drop_version(&self, owner: Owner, hash: &str) -> bool {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let current = map.iter().any(|((o, _), p)| *o == owner && p.info().hash == hash);
        let mut versions = self.versions.write().unwrap_or_else(PoisonError::into_inner);
        let before = versions.len();
        if !current {
            versions.retain(|(o, p)| !(*o == owner && p.info().hash == hash));
        }
        versions.len() < before
    }

    /// The name of `owner`'s plugin whose current version hashes to `hash`
    /// (`None` for a replaced version, or none at all).
    pub fn named_by_hash(&self, owner: Owner, hash: &str) -> Option<String> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.iter().find(|((o, _), p)| *o == owner && p.info().hash == hash).map(|(_, p)| p.info().name.clone())
    }
}
