//! API keys: `crd_<id>_<secret>`. The id names a key (to revoke it, in
//! logs); the secret is 244 bits from the operating system's random source
//! (two version-4 UUIDs). Only the SHA-256 of the whole key is stored, so a
//! leaked database leaks no usable key.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A key as handed out once.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Names the key; not secret.
    pub id: String,
    /// The whole bearer token, `crd_<id>_<secret>`.
    pub secret: String,
}

impl ApiKey {
    pub fn generate() -> Self {
        let id = Uuid::new_v4().simple().to_string()[..12].to_string();
        let secret = format!("crd_{id}_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        Self { id, secret }
    }
}

/// What the store keeps of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_name_their_id() {
        let (a, b) = (ApiKey::generate(), ApiKey::generate());
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(&format!("crd_{}_", a.id)));
        assert_eq!(a.secret.len(), 4 + 12 + 1 + 64);
        assert_eq!(hash_key(&a.secret).len(), 64);
        assert_ne!(hash_key(&a.secret), hash_key(&b.secret));
    }
}
