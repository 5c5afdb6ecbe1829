//! Identifiers, parsed once at the edge.

use std::fmt;

use crate::limits::{CART_ID_LEN_MAX, PRODUCT_ID_LEN_MAX};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("may only contain letters, digits, '-', '_', '.' and ':'")]
    BadCharacter,
    #[error("is a reserved word (the API's paths use it)")]
    Reserved,
}

/// Ids that would collide with the API's own paths (`/v2/inventories/multiple`,
/// `/v2/inventories/locations`).
const RESERVED_PRODUCT_IDS: [&str; 2] = ["multiple", "locations"];

/// The id of a product, and so of its stock record: 1 to 64 characters of `[A-Za-z0-9-_.:]`
/// (UUIDs, SKUs and slugs all fit).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProductId(String);

impl ProductId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id(raw, PRODUCT_ID_LEN_MAX)?;
        if RESERVED_PRODUCT_IDS.contains(&raw) {
            return Err(IdError::Reserved);
        }
        Ok(ProductId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of a cart, chosen by the client (SPEC §2: 1 to 64 characters of `[A-Za-z0-9-_.:]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CartId(String);

impl CartId {
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        check_id(raw, CART_ID_LEN_MAX)?;
        Ok(CartId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CartId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The shared rule for client-chosen ids.
pub fn check_id(raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > max {
        return Err(IdError::TooLong { max });
    }
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_bounded_and_plain() {
        assert!(ProductId::parse("prod-0001").is_ok());
        assert!(ProductId::parse("a297bd20-9b3c-4b56-8c22-1a7c1b6f0e11").is_ok());
        assert_eq!(ProductId::parse(""), Err(IdError::Empty));
        assert!(ProductId::parse(&"x".repeat(PRODUCT_ID_LEN_MAX)).is_ok());
        assert_eq!(
            ProductId::parse(&"x".repeat(PRODUCT_ID_LEN_MAX + 1)),
            Err(IdError::TooLong {
                max: PRODUCT_ID_LEN_MAX
            })
        );
        assert_eq!(ProductId::parse("a/b"), Err(IdError::BadCharacter));
        assert_eq!(ProductId::parse("a b"), Err(IdError::BadCharacter));
        assert_eq!(ProductId::parse("é"), Err(IdError::BadCharacter));
        assert_eq!(ProductId::parse("multiple"), Err(IdError::Reserved));
        assert_eq!(ProductId::parse("locations"), Err(IdError::Reserved));
    }

    #[test]
    fn cart_ids_are_bounded_and_plain() {
        assert!(CartId::parse("cart-1").is_ok());
        assert!(CartId::parse(&"c".repeat(CART_ID_LEN_MAX)).is_ok());
        assert_eq!(
            CartId::parse(&"c".repeat(CART_ID_LEN_MAX + 1)),
            Err(IdError::TooLong {
                max: CART_ID_LEN_MAX
            })
        );
        assert_eq!(CartId::parse(""), Err(IdError::Empty));
        assert_eq!(CartId::parse("a/b"), Err(IdError::BadCharacter));
    }
}
