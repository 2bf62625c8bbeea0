//! Tenants and their API keys (DESIGN section 12, issue 14 point 1).
//!
//! Authentication is off for the embedded single-user default and on as
//! soon as a tenant exists or `CARDRUN_AUTH=required`: then every API and
//! Socket.IO request needs `Authorization: Bearer <key>` (Socket.IO: the
//! handshake's `auth.token`), and sees its tenant's data only
//! (`api::Scope`).

mod auth;
mod keys;
mod quota;

pub use auth::bearer_token;
pub use auth::{Access, Auth, AuthError};
pub use keys::{ApiKey, hash_key};
pub use quota::{Metered, OverQuota, QuotaSettings, Quotas};

use crate::store::{Store, StoreError, Tenant};

/// Why a tenant or key command failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant names are 1-64 characters of a-z, 0-9, `-` and `_`; got `{0}`")]
    InvalidName(String),
    #[error("a tenant named `{0}` exists already")]
    NameTaken(String),
    #[error("no tenant named `{0}`")]
    UnknownTenant(String),
    #[error("no live key with id `{0}`")]
    UnknownKey(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A tenant just created, and what it took over.
#[derive(Debug, Clone)]
pub struct Created {
    pub tenant: Tenant,
    /// Cards and executions made while keys were off, which the first
    /// tenant takes over so that turning keys on hides nothing from the
    /// team that made them.
    pub adopted: (u64, u64),
}

/// Creates tenant `name`; the first one adopts everything unowned.
pub async fn create_tenant(store: &dyn Store, name: &str) -> Result<Created, TenantError> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !valid {
        return Err(TenantError::InvalidName(name.to_string()));
    }
    let first = store.tenants().await?.is_empty();
    let tenant = store.create_tenant(name).await?.ok_or_else(|| TenantError::NameTaken(name.to_string()))?;
    let adopted = if first { store.adopt_unowned(tenant.id).await? } else { (0, 0) };
    Ok(Created { tenant, adopted })
}

/// A new key for tenant `name`; the key itself exists only in the return
/// value (the store keeps its hash).
pub async fn create_key(store: &dyn Store, tenant: &str) -> Result<ApiKey, TenantError> {
    let found = store.tenants().await?.into_iter().find(|t| t.name == tenant);
    let tenant = found.ok_or_else(|| TenantError::UnknownTenant(tenant.to_string()))?;
    let key = ApiKey::generate();
    if !store.create_api_key(tenant.id, &key.id, &hash_key(&key.secret)).await? {
        return Err(TenantError::UnknownTenant(tenant.name));
    }
    Ok(key)
}

/// Revokes key `key_id` at once, on every host.
pub async fn revoke_key(store: &dyn Store, key_id: &str) -> Result<(), TenantError> {
    if store.revoke_api_key(key_id).await? { Ok(()) } else { Err(TenantError::UnknownKey(key_id.to_string())) }
}
