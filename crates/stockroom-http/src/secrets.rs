//! Secrets: client secrets and customers' passwords are stored only as argon2id hashes,
//! compared in constant time by the argon2 crate; generated secrets and ids are random and
//! URL-safe.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use stockroom_store::StoreError;

/// Hashes a secret with argon2id and a fresh salt.
pub fn hash_secret(secret: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Internal(format!("hashing a secret: {e}")))
}

/// Whether `secret` is the secret whose argon2 hash is `hash`.
pub fn secret_matches(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A random string of `bytes` bytes of entropy, URL-safe.
pub fn random_string(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hashed_and_verified() {
        let hash = hash_secret("s3cret").expect("hash");
        assert!(!hash.contains("s3cret"));
        assert!(secret_matches("s3cret", &hash));
        assert!(!secret_matches("s3cret!", &hash));
        assert!(!secret_matches("s3cret", "not a hash"));
    }
}
