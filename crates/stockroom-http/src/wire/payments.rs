//! Payments: `POST /v2/orders/{id}/payments` and the order's payment transactions.

use serde::{Deserialize, Serialize};
use serde_json::json;
use stockroom_domain::order::PaymentMethod;
use stockroom_store::{PaymentStatus, PaymentTx};
use utoipa::ToSchema;

use super::fields::{self, WireField};
use super::{DisplayPrice, Relation, Timestamps};

/// The payment gateways Stockroom knows.
#[derive(Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Gateway {
    /// Built in; always approves.
    Manual,
    /// The gateway at `--payment-gateway-url`, when one is configured.
    Http,
}

impl TryFrom<String> for Gateway {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "manual" => Ok(Gateway::Manual),
            "http" => Ok(Gateway::Http),
            _ => Err("must be manual or http"),
        }
    }
}

impl Gateway {
    /// Every gateway, in the order they are listed.
    pub const ALL: [Gateway; 2] = [Gateway::Manual, Gateway::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Gateway::Manual => "manual",
            Gateway::Http => "http",
        }
    }

    pub fn parse(slug: &str) -> Option<Gateway> {
        Gateway::ALL.into_iter().find(|g| g.as_str() == slug)
    }

    fn name(self) -> &'static str {
        match self {
            Gateway::Manual => "Manual",
            Gateway::Http => "HTTP gateway",
        }
    }
}

super::tag!(GatewayTag, "gateway");

/// A payment gateway as `/v2/gateways` shows it (Elastic Path's `Response.Gateway`).
#[derive(Serialize, ToSchema)]
#[schema(as = PaymentGateway)]
pub struct GatewayOut {
    #[serde(rename = "type")]
    kind: GatewayTag,
    /// `manual` or `http`.
    #[schema(value_type = String)]
    slug: &'static str,
    #[schema(value_type = String)]
    name: &'static str,
    /// Whether payments may be made through it (an administrator may always record a
    /// `manual` payment).
    enabled: bool,
    /// Whether it can be used at all: `http` only when `--payment-gateway-url` is set.
    configured: bool,
}

impl GatewayOut {
    pub fn new(gateway: Gateway, enabled: bool, configured: bool) -> Self {
        GatewayOut {
            kind: GatewayTag,
            slug: gateway.as_str(),
            name: gateway.name(),
            enabled,
            configured,
        }
    }
}

/// `PUT /v2/gateways/{gateway}`: enable or disable it. Other fields (another gateway's
/// credentials) are ignored.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct GatewayUpdate {
    pub enabled: bool,
}

/// `POST /v2/orders/{id}/transactions/{tid}/refund`: how much to give back, in minor units of
/// the order's currency; left out (or no body at all), everything not yet refunded.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct RefundRequest {
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub amount: Option<i64>,
}

impl WireField for PaymentMethod {
    fn json_schema() -> serde_json::Value {
        json!({"type": "string", "enum": ["purchase", "authorize"]})
    }
    fn parse<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        PaymentMethod::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom("must be purchase or authorize"))
    }
}

/// `POST /v2/orders/{id}/payments`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct PaymentRequest {
    pub gateway: Gateway,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<PaymentMethod>)]
    pub method: PaymentMethod,
    /// Left out, or the order's total (no split payments). Left out of the document: a
    /// schema cannot say "the order's total", and any other amount is refused.
    #[serde(default)]
    #[schema(ignore)]
    pub amount: Option<i64>,
}

// ---- answers -----------------------------------------------------------------------------------

super::tag!(TransactionTag, "transaction");

#[derive(Serialize, ToSchema)]
pub struct PaymentRelation<'a> {
    data: Relation<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentRelationships<'a> {
    order: PaymentRelation<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentMeta {
    display_price: DisplayPrice,
    timestamps: Timestamps,
}

/// A payment transaction: a purchase, an authorization or a capture.
#[derive(Serialize, ToSchema)]
#[schema(as = PaymentTransaction)]
pub struct PaymentOut<'a> {
    #[schema(value_type = String)]
    id: &'a str,
    #[serde(rename = "type")]
    kind: TransactionTag,
    #[schema(value_type = String)]
    reference: &'a str,
    #[schema(value_type = String)]
    gateway: &'a str,
    amount: i64,
    currency: String,
    /// `purchase`, `authorize`, `capture` or `refund`.
    #[schema(value_type = String)]
    transaction_type: &'a str,
    /// The same, as Elastic Path's manual-payments examples spell it.
    #[serde(rename = "transaction-type")]
    #[schema(value_type = String)]
    transaction_type_dashed: &'a str,
    /// `pending`, `complete`, `failed`, or `cancelled` (a voided authorization).
    #[schema(value_type = String)]
    status: &'static str,
    relationships: PaymentRelationships<'a>,
    meta: PaymentMeta,
    /// Why the gateway did not approve.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    failure: Option<&'a str>,
}

impl<'a> PaymentOut<'a> {
    pub fn new(p: &'a PaymentTx) -> Self {
        PaymentOut {
            id: &p.id,
            kind: TransactionTag,
            reference: &p.gateway,
            gateway: &p.gateway,
            amount: p.amount.amount_minor(),
            currency: p.amount.currency().to_string(),
            transaction_type: p.transaction_type.as_str(),
            transaction_type_dashed: p.transaction_type.as_str(),
            status: match p.status {
                PaymentStatus::Pending => "pending",
                PaymentStatus::Complete => "complete",
                PaymentStatus::Failed => "failed",
                PaymentStatus::Cancelled => "cancelled",
            },
            relationships: PaymentRelationships {
                order: PaymentRelation {
                    data: Relation {
                        kind: "order",
                        id: &p.order_id,
                    },
                },
            },
            meta: PaymentMeta {
                display_price: DisplayPrice::of(&p.amount),
                timestamps: Timestamps {
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                },
            },
            failure: p.failure.as_deref(),
        }
    }
}

/// What the HTTP gateway is sent.
#[derive(Serialize)]
pub struct GatewayRequest<'a> {
    pub order_id: &'a str,
    pub payment_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub method: &'a str,
}

/// What the HTTP gateway answers; anything but `approve` declines.
#[derive(Deserialize)]
pub struct GatewayAnswer {
    #[serde(default)]
    pub decision: Option<String>,
}
