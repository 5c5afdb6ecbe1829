//! Access tokens: signed, checked without a database read, and revoked by changing what they
//! are signed with.
//!
//! A token is `base64url(body ‖ HMAC-SHA256(body))`, the body being
//! `version ‖ key id ‖ role ‖ credential tag ‖ issued at ‖ expires ‖ 16 random bytes`.
//!
//! - The MAC key is a **credential key**: `HMAC(signing key, client id ‖ role ‖ secret hash)`.
//!   The signing key is kept in the database (`settings`), shared by every instance. Changing
//!   a credential's secret (a new argon2 hash, with a new salt) or removing the credential
//!   changes or removes its key, so every token issued to it stops working; rotating the
//!   signing key (`stockroom keys rotate-signing-key`) does the same for every token at once.
//!   (Django's password-reset tokens are revoked the same way: they are keyed with the hash.)
//! - The key id (the first bytes of the signing key's SHA-256) says which signing key a token
//!   was made with, so a token of a rotated key is refused before any MAC is computed.
//! - A token is refused unless `issued ≤ now + skew`, `now < expires` and
//!   `expires ≤ issued + lifetime`: a token cannot be made to outlive its lifetime.
//!
//! Each instance keeps the signing key and the credential keys in memory ([`KeySet`]) and
//! re-reads them every [`REFRESH_EVERY`]: checking a token reads no database, and a rotation
//! or revocation made anywhere is in force everywhere within that time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use stockroom_domain::limits::{TOKEN_CLOCK_SKEW_SECS, TOKEN_LIFETIME_SECS};
use stockroom_domain::{Role, Timestamp};
use stockroom_store::{Credential, Store, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// The setting under which the token signing key is kept (base64url, 32 bytes).
pub const SIGNING_KEY_SETTING: &str = "token_signing_key";
/// How often every instance re-reads the signing key and the credentials: the longest a
/// rotation or revocation made elsewhere takes to be in force here.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

const VERSION: u8 = 2;
const KID_BYTES: usize = 4;
const TAG_BYTES: usize = 8;
const RANDOM_BYTES: usize = 16;
/// version, key id, role, credential tag, issued, expires, random.
const BODY_BYTES: usize = 1 + KID_BYTES + 1 + TAG_BYTES + 8 + 8 + RANDOM_BYTES;
const MAC_BYTES: usize = 32;

/// The fields of a token's body, in order.
struct Body {
    kid: [u8; KID_BYTES],
    role: Role,
    tag: [u8; TAG_BYTES],
    issued: i64,
    expires: i64,
}

impl Body {
    fn encode(&self) -> [u8; BODY_BYTES] {
        let mut b = [0u8; BODY_BYTES];
        b[0] = VERSION;
        b[1..5].copy_from_slice(&self.kid);
        b[5] = match self.role {
            Role::Admin => 1,
            Role::Shopper => 2,
        };
        b[6..14].copy_from_slice(&self.tag);
        b[14..22].copy_from_slice(&self.issued.to_be_bytes());
        b[22..30].copy_from_slice(&self.expires.to_be_bytes());
        rand::rngs::OsRng.fill_bytes(&mut b[30..]);
        b
    }

    fn decode(b: &[u8]) -> Option<Body> {
        if b.len() != BODY_BYTES || b[0] != VERSION {
            return None;
        }
        let field = |at: usize| -> Option<[u8; 8]> { b.get(at..at + 8)?.try_into().ok() };
        Some(Body {
            kid: b[1..5].try_into().ok()?,
            role: match b[5] {
                1 => Role::Admin,
                2 => Role::Shopper,
                _ => return None,
            },
            tag: b[6..14].try_into().ok()?,
            issued: i64::from_be_bytes(field(14)?),
            expires: i64::from_be_bytes(field(22)?),
        })
    }

    /// Issued no later than a little ahead of now, unexpired, and living no longer than a
    /// token may.
    fn is_current(&self, now: Timestamp) -> bool {
        self.issued <= now.secs().saturating_add(TOKEN_CLOCK_SKEW_SECS)
            && now.secs() < self.expires
            && self.expires <= self.issued.saturating_add(TOKEN_LIFETIME_SECS)
    }
}

/// Which credential a token belongs to: the first bytes of its client id's SHA-256.
fn tag_of(client_id: &str) -> [u8; TAG_BYTES] {
    let digest = Sha256::digest(client_id.as_bytes());
    let mut tag = [0u8; TAG_BYTES];
    tag.copy_from_slice(&digest[..TAG_BYTES]);
    tag
}

fn mac_with(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// One credential's token key, and what it was derived from.
struct CredentialKey {
    role: Role,
    secret_hash: String,
    mac: HmacSha256,
}

/// The signing key and every credential's key, as last read from the database.
struct KeySet {
    kid: [u8; KID_BYTES],
    signing_key: Vec<u8>,
    credentials: HashMap<[u8; TAG_BYTES], CredentialKey>,
}

impl KeySet {
    fn new(signing_key: Vec<u8>, credentials: &[Credential]) -> KeySet {
        let mut kid = [0u8; KID_BYTES];
        kid.copy_from_slice(&Sha256::digest(&signing_key)[..KID_BYTES]);
        let mut set = KeySet {
            kid,
            signing_key,
            credentials: HashMap::new(),
        };
        for c in credentials {
            let key = set.credential_key(c);
            set.credentials.insert(tag_of(&c.client_id), key);
        }
        set
    }

    fn credential_key(&self, c: &Credential) -> CredentialKey {
        let mut derive = mac_with(&self.signing_key);
        for part in [
            b"stockroom token key".as_slice(),
            c.client_id.as_bytes(),
            c.role.as_str().as_bytes(),
            c.secret_hash.as_bytes(),
        ] {
            derive.update(&(part.len() as u64).to_be_bytes());
            derive.update(part);
        }
        CredentialKey {
            role: c.role,
            secret_hash: c.secret_hash.clone(),
            mac: mac_with(&derive.finalize().into_bytes()),
        }
    }

    fn knows(&self, c: &Credential) -> bool {
        self.credentials
            .get(&tag_of(&c.client_id))
            .is_some_and(|k| k.role == c.role && k.secret_hash == c.secret_hash)
    }
}

/// The keys that sign and check tokens, kept current by [`TokenKeys::refresh`].
pub struct TokenKeys {
    current: RwLock<Arc<KeySet>>,
}

fn decode_signing_key(stored: &str) -> Result<Vec<u8>, StoreError> {
    URL_SAFE_NO_PAD
        .decode(stored)
        .map_err(|_| StoreError::Internal("unreadable token signing key".into()))
}

/// A new random signing key, encoded as it is stored.
pub fn new_signing_key() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    URL_SAFE_NO_PAD.encode(key)
}

impl TokenKeys {
    /// The signing key shared by every instance over this database (made on first start) and
    /// every credential's key.
    pub async fn load(store: &dyn Store) -> Result<TokenKeys, StoreError> {
        let stored = store
            .setting_or_insert(SIGNING_KEY_SETTING, &new_signing_key())
            .await?;
        let set = KeySet::new(decode_signing_key(&stored)?, &store.credentials().await?);
        Ok(TokenKeys {
            current: RwLock::new(Arc::new(set)),
        })
    }

    /// Re-reads the signing key and the credentials.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let stored = store
            .setting(SIGNING_KEY_SETTING)
            .await?
            .ok_or_else(|| StoreError::Internal("the token signing key is gone".into()))?;
        let set = KeySet::new(decode_signing_key(&stored)?, &store.credentials().await?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        Ok(())
    }

    /// Refreshes every [`REFRESH_EVERY`], for ever; a failed read keeps the keys it had.
    pub async fn refresh_forever(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.refresh(&*store).await {
                tracing::warn!(error = %e, "could not refresh the token keys; keeping the old ones");
            }
        }
    }

    fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A token for `role` on behalf of `credential` (just read from the database), valid for
    /// the token lifetime from `now`; returns it and its expiry. Refreshes first if this
    /// instance does not know the credential as it is now, so that the token it returns is
    /// accepted here at once.
    pub async fn issue(
        &self,
        store: &dyn Store,
        credential: &Credential,
        role: Role,
        now: Timestamp,
    ) -> Result<(String, i64), StoreError> {
        if !self.snapshot().knows(credential) {
            self.refresh(store).await?;
        }
        let set = self.snapshot();
        let body = Body {
            kid: set.kid,
            role,
            tag: tag_of(&credential.client_id),
            issued: now.secs(),
            expires: now.secs() + TOKEN_LIFETIME_SECS,
        }
        .encode();
        let mut mac = set.credential_key(credential).mac;
        mac.update(&body);
        let mut token = body.to_vec();
        token.extend_from_slice(&mac.finalize().into_bytes());
        Ok((
            URL_SAFE_NO_PAD.encode(token),
            now.secs() + TOKEN_LIFETIME_SECS,
        ))
    }

    /// The role of a token that this instance's keys accept at `now`.
    pub fn check(&self, token: &str, now: Timestamp) -> Option<Role> {
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() != BODY_BYTES + MAC_BYTES {
            return None;
        }
        let (body, tag) = raw.split_at(BODY_BYTES);
        let fields = Body::decode(body)?;
        let set = self.snapshot();
        if fields.kid != set.kid {
            return None;
        }
        let key = set.credentials.get(&fields.tag)?;
        let mut mac = key.mac.clone();
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        let allowed = fields.role == Role::Shopper || key.role == Role::Admin;
        (allowed && fields.is_current(now)).then_some(fields.role)
    }
}

/// Lifetime of a customer token, in seconds (Elastic Path: 24 hours).
pub const CUSTOMER_TOKEN_LIFETIME_SECS: i64 = 24 * 3600;
const CUSTOMER_VERSION: u8 = 3;
/// Longest customer id a token carries, in bytes (Stockroom's are 36).
const CUSTOMER_ID_BYTES_MAX: usize = 64;

impl KeySet {
    /// The key of customer tokens, derived from the signing key (a new signing key revokes
    /// them all, as it does every other token).
    fn customer_mac(&self) -> HmacSha256 {
        let mut derive = mac_with(&self.signing_key);
        derive.update(b"stockroom customer token key");
        mac_with(&derive.finalize().into_bytes())
    }
}

impl TokenKeys {
    /// A customer token (Elastic Path's `X-Moltin-Customer-Token`): the customer's id and an
    /// expiry, MACed with a key derived from the signing key; and its expiry (Unix seconds).
    pub fn issue_customer(&self, customer_id: &str, now: Timestamp) -> (String, i64) {
        let set = self.snapshot();
        let expires = now.secs() + CUSTOMER_TOKEN_LIFETIME_SECS;
        let mut body = vec![CUSTOMER_VERSION];
        body.extend_from_slice(&set.kid);
        body.extend_from_slice(&expires.to_be_bytes());
        body.extend_from_slice(customer_id.as_bytes());
        let mut mac = set.customer_mac();
        mac.update(&body);
        body.extend_from_slice(&mac.finalize().into_bytes());
        (URL_SAFE_NO_PAD.encode(body), expires)
    }

    /// The customer a customer token speaks for, if this instance's keys accept it at `now`.
    pub fn check_customer(&self, token: &str, now: Timestamp) -> Option<String> {
        if token.len() > 4 * (1 + KID_BYTES + 8 + CUSTOMER_ID_BYTES_MAX + MAC_BYTES) / 3 + 4 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        let (body, tag) = raw.split_at(raw.len().checked_sub(MAC_BYTES)?);
        let head = 1 + KID_BYTES + 8;
        if body.len() <= head || body[0] != CUSTOMER_VERSION {
            return None;
        }
        let set = self.snapshot();
        if body[1..1 + KID_BYTES] != set.kid {
            return None;
        }
        let mut mac = set.customer_mac();
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        let expires = i64::from_be_bytes(body[1 + KID_BYTES..head].try_into().ok()?);
        let id = std::str::from_utf8(&body[head..]).ok()?;
        (now.secs() < expires).then(|| id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(id: &str, role: Role, hash: &str) -> Credential {
        Credential {
            client_id: id.into(),
            name: id.into(),
            role,
            secret_hash: hash.into(),
            created_at: Timestamp::from_secs(0),
        }
    }

    fn keys(signing_key: &[u8], credentials: &[Credential]) -> TokenKeys {
        TokenKeys {
            current: RwLock::new(Arc::new(KeySet::new(signing_key.to_vec(), credentials))),
        }
    }

    #[test]
    fn customer_tokens_name_their_customer_until_they_expire() {
        let k = keys(b"signing key one", &[]);
        let now = Timestamp::from_secs(1_800_000_000);
        let (token, expires) = k.issue_customer("cust-1", now);
        assert_eq!(expires, now.secs() + CUSTOMER_TOKEN_LIFETIME_SECS);
        assert_eq!(k.check_customer(&token, now).as_deref(), Some("cust-1"));
        let late = Timestamp::from_secs(expires);
        assert_eq!(k.check_customer(&token, late), None, "expired");
        let mut forged = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        let at = 1 + KID_BYTES + 8;
        forged[at] ^= 1;
        assert_eq!(k.check_customer(&URL_SAFE_NO_PAD.encode(forged), now), None);
        let other = keys(b"signing key two", &[]);
        assert_eq!(
            other.check_customer(&token, now),
            None,
            "another signing key"
        );
        assert_eq!(k.check_customer("", now), None);
        assert_eq!(k.check_customer(&"A".repeat(4096), now), None);
    }

    /// A token signed by `set`'s key for `c`, with any fields at all (what someone holding the
    /// signing key could make).
    fn forge(set: &KeySet, c: &Credential, role: Role, issued: i64, expires: i64) -> String {
        let body = Body {
            kid: set.kid,
            role,
            tag: tag_of(&c.client_id),
            issued,
            expires,
        }
        .encode();
        let mut mac = set.credential_key(c).mac;
        mac.update(&body);
        let mut raw = body.to_vec();
        raw.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    const NOW: i64 = 1_000_000;

    #[test]
    fn tokens_check_their_role_signature_and_expiry() {
        let admin = credential("a", Role::Admin, "hash-a");
        let keys = keys(&[7; 32], std::slice::from_ref(&admin));
        let set = keys.snapshot();
        let now = Timestamp::from_secs(NOW);
        let token = forge(&set, &admin, Role::Shopper, NOW, NOW + TOKEN_LIFETIME_SECS);
        assert_eq!(keys.check(&token, now), Some(Role::Shopper));
        let expires = NOW + TOKEN_LIFETIME_SECS;
        assert_eq!(
            keys.check(&token, Timestamp::from_secs(expires - 1)),
            Some(Role::Shopper)
        );
        assert_eq!(keys.check(&token, Timestamp::from_secs(expires)), None);
        let other = self::keys(&[8; 32], std::slice::from_ref(&admin));
        assert_eq!(
            other.check(&token, now),
            None,
            "another key's token is refused"
        );
        let mut tampered = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        tampered[5] = 1; // shopper -> admin
        assert_eq!(keys.check(&URL_SAFE_NO_PAD.encode(tampered), now), None);
        assert_eq!(keys.check("garbage", now), None);
        let a = forge(&set, &admin, Role::Admin, NOW, expires);
        let b = forge(&set, &admin, Role::Admin, NOW, expires);
        assert_ne!(a, b, "two tokens are never the same");
    }

    #[test]
    fn a_token_cannot_outlive_its_lifetime_even_signed_with_the_real_key() {
        let admin = credential("a", Role::Admin, "hash-a");
        let keys = keys(&[7; 32], std::slice::from_ref(&admin));
        let set = keys.snapshot();
        let now = Timestamp::from_secs(NOW);
        let forever = forge(&set, &admin, Role::Admin, NOW, i64::MAX);
        assert_eq!(
            keys.check(&forever, now),
            None,
            "expiry beyond the lifetime"
        );
        let one_more = forge(
            &set,
            &admin,
            Role::Admin,
            NOW,
            NOW + TOKEN_LIFETIME_SECS + 1,
        );
        assert_eq!(keys.check(&one_more, now), None);
        let future = forge(
            &set,
            &admin,
            Role::Admin,
            NOW + TOKEN_CLOCK_SKEW_SECS + 1,
            NOW + TOKEN_CLOCK_SKEW_SECS + 1 + TOKEN_LIFETIME_SECS,
        );
        assert_eq!(keys.check(&future, now), None, "issued in the future");
        let skewed = forge(
            &set,
            &admin,
            Role::Admin,
            NOW + TOKEN_CLOCK_SKEW_SECS,
            NOW + TOKEN_CLOCK_SKEW_SECS + TOKEN_LIFETIME_SECS,
        );
        assert_eq!(
            keys.check(&skewed, now),
            Some(Role::Admin),
            "another instance's clock may run a little ahead"
        );
        let backwards = forge(&set, &admin, Role::Admin, NOW, NOW - 1);
        assert_eq!(keys.check(&backwards, now), None);
    }

    #[test]
    fn a_credential_change_or_removal_or_a_new_signing_key_revokes_its_tokens() {
        let admin = credential("a", Role::Admin, "hash-a");
        let other = credential("b", Role::Admin, "hash-b");
        let now = Timestamp::from_secs(NOW);
        let before = keys(&[7; 32], &[admin.clone(), other.clone()]);
        let token = forge(&before.snapshot(), &admin, Role::Admin, NOW, NOW + 60);
        let kept = forge(&before.snapshot(), &other, Role::Admin, NOW, NOW + 60);
        assert_eq!(before.check(&token, now), Some(Role::Admin));

        let changed = credential("a", Role::Admin, "hash-a-new-salt");
        let after = keys(&[7; 32], &[changed, other.clone()]);
        assert_eq!(after.check(&token, now), None, "new secret");
        assert_eq!(
            after.check(&kept, now),
            Some(Role::Admin),
            "others keep theirs"
        );

        let demoted = credential("a", Role::Shopper, "hash-a");
        assert_eq!(
            keys(&[7; 32], &[demoted]).check(&token, now),
            None,
            "new role"
        );
        assert_eq!(
            keys(&[7; 32], std::slice::from_ref(&other)).check(&token, now),
            None,
            "removed"
        );
        assert_eq!(
            keys(&[9; 32], &[admin.clone(), other]).check(&kept, now),
            None,
            "new signing key"
        );
    }

    #[test]
    fn a_shopper_credential_cannot_carry_an_administrator_token() {
        let shopper = credential("s", Role::Shopper, "hash-s");
        let keys = keys(&[7; 32], std::slice::from_ref(&shopper));
        let now = Timestamp::from_secs(NOW);
        let set = keys.snapshot();
        let token = forge(&set, &shopper, Role::Admin, NOW, NOW + 60);
        assert_eq!(keys.check(&token, now), None);
        let token = forge(&set, &shopper, Role::Shopper, NOW, NOW + 60);
        assert_eq!(keys.check(&token, now), Some(Role::Shopper));
    }
}
