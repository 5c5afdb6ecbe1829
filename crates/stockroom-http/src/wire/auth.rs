//! The token endpoint: `POST /oauth/access_token`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::fields::{self, Text};

/// Client ids and secrets: any text of at most this many bytes, with no NUL.
pub type Credential = Text<1024, false>;

/// The grants Stockroom issues.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(
    rename_all = "snake_case",
    expecting = "client_credentials or implicit"
)]
pub enum Grant {
    /// An administrator's token, for a client id and secret.
    ClientCredentials,
    /// A shopper's token, for a client id alone.
    Implicit,
}

impl TryFrom<String> for Grant {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "client_credentials" => Ok(Grant::ClientCredentials),
            "implicit" => Ok(Grant::Implicit),
            _ => Err("grant_type must be client_credentials or implicit"),
        }
    }
}

/// The form (or JSON object) a token is asked with.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "grant_type, client_id and (for client_credentials) client_secret")]
pub struct TokenFields {
    pub grant_type: Grant,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Credential>)]
    pub client_id: Credential,
    /// Required for client_credentials.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::schema::<Credential>)]
    pub client_secret: Option<Credential>,
}

/// A token request, as the grant needs it.
pub enum TokenRequest {
    ClientCredentials { client_id: String, secret: String },
    Implicit { client_id: String },
}

#[derive(Deserialize)]
#[serde(transparent)]
pub struct TokenForm(pub TokenFields);

impl TokenForm {
    pub fn request(self) -> Result<TokenRequest, crate::error::ApiError> {
        let TokenFields {
            grant_type,
            client_id,
            client_secret,
        } = self.0;
        Ok(match grant_type {
            Grant::ClientCredentials => TokenRequest::ClientCredentials {
                client_id: client_id.0,
                secret: client_secret
                    .ok_or_else(|| {
                        crate::error::ApiError::invalid(
                            "client_secret",
                            "client_secret is required",
                        )
                    })?
                    .0,
            },
            Grant::Implicit => TokenRequest::Implicit {
                client_id: client_id.0,
            },
        })
    }
}

impl PartialSchema for TokenForm {
    /// `client_secret` is required with `client_credentials`.
    fn schema() -> RefOr<Schema> {
        fields::with_constraints(
            TokenFields::schema(),
            json!({"anyOf": [
                {"type": "object",
                 "properties": {"grant_type": {"type": "string", "enum": ["implicit"]}}},
                {"type": "object", "required": ["client_secret"]},
            ]}),
        )
    }
}

impl ToSchema for TokenForm {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        TokenFields::schemas(schemas);
    }
}

super::tag!(Bearer, "Bearer");

/// The token, flat (no `data` envelope: the SDK reads these fields at the top).
#[derive(Serialize, ToSchema)]
pub struct Token {
    pub access_token: String,
    pub token_type: Bearer,
    pub expires_in: i64,
    pub expires: i64,
    pub identifier: Grant,
}
