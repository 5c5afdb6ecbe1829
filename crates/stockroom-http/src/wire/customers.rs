//! Customers and their tokens (Elastic Path's customer resource, `POST /v2/customers/tokens`).

use serde::{Deserialize, Serialize};
use stockroom_store::Customer;
use utoipa::ToSchema;

use super::fields::{self, Chars, NonBlank, WireField};
use super::{tag, Timestamps};

tag!(CustomerTag, "customer");
tag!(TokenTag, "token");

/// Longest customer name and password, in characters / bytes.
pub const CUSTOMER_NAME_LEN_MAX: usize = 255;
pub const PASSWORD_LEN_MAX: usize = 256;
pub const EMAIL_LEN_MAX: usize = 254;

/// An email address: one `@` with text on both sides, no spaces, at most 254 bytes; kept
/// lowercased, so that it is unique whatever its case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(pub String);

impl WireField for Email {
    fn json_schema() -> serde_json::Value {
        serde_json::json!({"type": "string", "format": "email", "minLength": 3,
                           "maxLength": EMAIL_LEN_MAX})
    }
    fn parse<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let ok = raw.len() <= EMAIL_LEN_MAX
            && !raw.chars().any(|c| c.is_whitespace() || c == '\0')
            && matches!(raw.split_once('@'), Some((l, r)) if !l.is_empty() && !r.is_empty() && !r.contains('@'));
        match ok {
            true => Ok(Email(raw.to_lowercase())),
            false => Err(serde::de::Error::custom("must be an email address")),
        }
    }
}

pub type CustomerName = NonBlank<CUSTOMER_NAME_LEN_MAX>;
pub type Password = Chars<1, PASSWORD_LEN_MAX>;

/// `POST /v2/customers`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewCustomer {
    #[serde(rename = "type", default)]
    pub kind: Option<CustomerTag>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<CustomerName>)]
    pub name: CustomerName,
    /// Unique (case does not matter).
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Email>)]
    pub email: Email,
    /// Kept only as a slow (argon2) hash; without one, the customer cannot sign in.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Password>)]
    pub password: Option<Password>,
}

/// `PUT /v2/customers/{id}`: a field left out is kept.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct CustomerChanges {
    #[serde(rename = "type", default)]
    pub kind: Option<CustomerTag>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<CustomerName>)]
    pub name: Option<CustomerName>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Email>)]
    pub email: Option<Email>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Password>)]
    pub password: Option<Password>,
}

/// `POST /v2/customers/tokens`: an email and a password.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct CustomerTokenRequest {
    #[serde(rename = "type", default)]
    pub kind: Option<TokenTag>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Chars<1, EMAIL_LEN_MAX>>)]
    pub email: Chars<1, EMAIL_LEN_MAX>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Password>)]
    pub password: Password,
    /// Elastic Path's `password` mechanism (the only one).
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Chars<1, 32>>)]
    pub authentication_mechanism: Option<Chars<1, 32>>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerMeta {
    timestamps: Timestamps,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Customer)]
pub struct CustomerOut<'a> {
    #[serde(rename = "type")]
    kind: CustomerTag,
    #[schema(value_type = String)]
    id: &'a str,
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(value_type = String)]
    email: &'a str,
    /// Whether the customer has a password (never the password or its hash).
    password: bool,
    meta: CustomerMeta,
}

impl<'a> CustomerOut<'a> {
    pub fn new(c: &'a Customer) -> Self {
        CustomerOut {
            kind: CustomerTag,
            id: &c.id,
            name: &c.name,
            email: &c.email,
            password: c.password_hash.is_some(),
            meta: CustomerMeta {
                timestamps: Timestamps {
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                },
            },
        }
    }
}

/// A customer token, sent back as `X-Moltin-Customer-Token`.
#[derive(Serialize, ToSchema)]
pub struct CustomerToken {
    #[serde(rename = "type")]
    pub kind: TokenTag,
    pub id: String,
    pub customer_id: String,
    pub token: String,
    /// Unix seconds.
    pub expires: i64,
}

/// One `{"type": "customer", "id": …}` of a cart's customer relationship.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object {\"type\": \"customer\", \"id\": …}")]
pub struct CustomerRef {
    #[serde(rename = "type", default)]
    pub kind: Option<CustomerTag>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Chars<1, 64>>)]
    pub id: Chars<1, 64>,
}

/// `POST /v2/carts/{cart}/relationships/customers`: one customer.
pub type CustomerRefs = fields::Many<CustomerRef, 1, 1>;
