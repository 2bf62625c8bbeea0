//! Who may call: checks a bearer key against the store.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::keys::hash_key;
use crate::store::{Store, StoreError, Tenant};

/// How long "does any tenant exist" is remembered: a tenant created from
/// the CLI switches authentication on within this time, without a store
/// query per request while it is off.
const MODE_TTL: Duration = Duration::from_secs(1);

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("an API key is required: send `Authorization: Bearer <key>` (`cardrun key create TENANT` makes one)")]
    Missing,
    #[error("the API key is not valid (unknown or revoked)")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Authentication is off (no tenant, `CARDRUN_AUTH` not `required`).
    Open,
    /// A live key of this tenant.
    Tenant(Tenant),
}

/// Checks keys; shared by the REST API and the Socket.IO server.
pub struct Auth {
    store: Arc<dyn Store>,
    required: bool,
    /// When the tenant count was last read, and whether it was non-zero.
    mode: Mutex<Option<(Instant, bool)>>,
}

impl Auth {
    /// `required`: `CARDRUN_AUTH=required` (on even before any tenant).
    pub fn new(store: Arc<dyn Store>, required: bool) -> Self {
        Self { store, required, mode: Mutex::new(None) }
    }

    /// Whether requests need a key now.
    pub async fn enabled(&self) -> Result<bool, StoreError> {
        if self.required {
            return Ok(true);
        }
        let cached = *self.mode.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, on)) = cached.filter(|(at, _)| at.elapsed() < MODE_TTL) {
            return Ok(on);
        }
        let on = !self.store.tenants().await?.is_empty();
        *self.mode.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), on));
        Ok(on)
    }

    /// What a request carrying `bearer` (the token after `Bearer `) may do.
    pub async fn check(&self, bearer: Option<&str>) -> Result<Access, AuthError> {
        if !self.enabled().await? {
            return Ok(Access::Open);
        }
        let key = bearer.map(str::trim).filter(|k| !k.is_empty()).ok_or(AuthError::Missing)?;
        match self.store.tenant_of_key(&hash_key(key)).await? {
            Some(tenant) => Ok(Access::Tenant(tenant)),
            None => Err(AuthError::Invalid),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[tokio::test]
    async fn keys_open_the_door_once_a_tenant_exists() {
        let store: Arc<dyn Store> = Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap());
        let auth = Auth::new(store.clone(), false);
        assert_eq!(auth.check(None).await.unwrap(), Access::Open);
        let tenant = super::super::create_tenant(store.as_ref(), "acme").await.unwrap().tenant;
        let fresh = Auth::new(store.clone(), false);
        assert!(matches!(fresh.check(None).await, Err(AuthError::Missing)));
        assert!(matches!(fresh.check(Some("crd_x_y")).await, Err(AuthError::Invalid)));
        let key = super::super::create_key(store.as_ref(), "acme").await.unwrap();
        assert_eq!(fresh.check(Some(&key.secret)).await.unwrap(), Access::Tenant(tenant));
        super::super::revoke_key(store.as_ref(), &key.id).await.unwrap();
        assert!(matches!(fresh.check(Some(&key.secret)).await, Err(AuthError::Invalid)));
        let required = Auth::new(Arc::new(crate::store::sqlite::SqliteStore::in_memory().unwrap()), true);
        assert!(matches!(required.check(None).await, Err(AuthError::Missing)));
    }
}
