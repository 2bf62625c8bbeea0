//! Whose data a request may see (issue 14, point 2): the tenant of its API
//! key, or everything while keys are off. Another tenant's ids answer 404,
//! as an unknown id does, so nothing tells a client they exist.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;
use crate::store::Tenant;

/// `Some(tenant id)` with a key; `None` (everything) while keys are off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope(pub Option<i64>);

impl Scope {
    /// Whether this tenant may queue `executions` more now: its executions
    /// per minute, and its tests queued or running (no limits without a
    /// tenant).
    pub async fn may_queue(self, state: &super::AppState, executions: u32) -> Result<(), ApiError> {
        let Some(tenant) = self.0 else { return Ok(()) };
        state.quotas.admit_tests(state.engine.store().unfinished_tests(tenant).await?)?;
        state.quotas.take(tenant, crate::tenants::Metered::Executions, executions)?;
        Ok(())
    }

    /// Whether a row owned by `owner` is visible.
    pub fn sees(self, owner: Option<i64>) -> bool {
        self.0.is_none_or(|tenant| owner == Some(tenant))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    /// The auth layer puts the key's tenant in the extensions.
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Scope(parts.extensions.get::<Tenant>().map(|t| t.id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_sees_only_its_own_and_no_scope_sees_all() {
        assert!(Scope(None).sees(Some(1)) && Scope(None).sees(None));
        assert!(Scope(Some(1)).sees(Some(1)));
        assert!(!Scope(Some(1)).sees(Some(2)));
        assert!(!Scope(Some(1)).sees(None), "rows made while keys were off are nobody's");
    }
}
