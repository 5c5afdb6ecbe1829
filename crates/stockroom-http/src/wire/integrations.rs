//! Elastic Path's integrations (`/v2/integrations`): the requests, the answers, and the
//! payload an event is delivered with.

use serde::{Deserialize, Serialize};
use stockroom_domain::Timestamp;
use stockroom_store::{Integration, IntegrationLog, IntegrationType, Job};
use utoipa::ToSchema;

use super::fields::{self, Chars, Many};
use super::{tag, time, Timestamps, TimestampsMeta};
use crate::error::ApiError;

tag!(IntegrationTag, "integration");
tag!(IntegrationJobTag, "integration-job");

pub type Name = Chars<1, 255>;
pub type Description = Chars<0, 1024>;
/// A webhook's URL: at most this many characters.
pub const URL_LEN_MAX: usize = 2048;
/// A webhook's secret key: at most this many characters.
pub type SecretKey = Chars<1, 255>;
/// A NATS subject: tokens of letters, digits, `-` and `_` separated by dots.
pub const SUBJECT_LEN_MAX: usize = 255;
/// Most events one integration may observe (there are fewer kinds).
pub const OBSERVES_MAX: usize = 32;

/// The events Stockroom emits: Elastic Path's observable events for the resources it has, and
/// its own low-stock alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum ObservableEvent {
    #[serde(rename = "stock-transaction.created")]
    StockTransactionCreated,
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.updated")]
    OrderUpdated,
    #[serde(rename = "order.authorized")]
    OrderAuthorized,
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "order.fulfilled")]
    OrderFulfilled,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.refunded")]
    OrderRefunded,
    #[serde(rename = "transaction.created")]
    TransactionCreated,
    #[serde(rename = "transaction.updated")]
    TransactionUpdated,
    #[serde(rename = "cart.updated")]
    CartUpdated,
    #[serde(rename = "cart.deleted")]
    CartDeleted,
    #[serde(rename = "customer.created")]
    CustomerCreated,
    #[serde(rename = "customer.updated")]
    CustomerUpdated,
    #[serde(rename = "customer.deleted")]
    CustomerDeleted,
    #[serde(rename = "integration.created")]
    IntegrationCreated,
    #[serde(rename = "integration.updated")]
    IntegrationUpdated,
    #[serde(rename = "integration.deleted")]
    IntegrationDeleted,
    #[serde(rename = "payment-gateway.updated")]
    PaymentGatewayUpdated,
    #[serde(rename = "stock.low")]
    StockLow,
    #[serde(rename = "stock.out")]
    StockOut,
    #[serde(rename = "stock.replenished")]
    StockReplenished,
}

impl ObservableEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservableEvent::StockTransactionCreated => "stock-transaction.created",
            ObservableEvent::OrderCreated => "order.created",
            ObservableEvent::OrderUpdated => "order.updated",
            ObservableEvent::OrderAuthorized => "order.authorized",
            ObservableEvent::OrderPaid => "order.paid",
            ObservableEvent::OrderFulfilled => "order.fulfilled",
            ObservableEvent::OrderCancelled => "order.cancelled",
            ObservableEvent::OrderRefunded => "order.refunded",
            ObservableEvent::TransactionCreated => "transaction.created",
            ObservableEvent::TransactionUpdated => "transaction.updated",
            ObservableEvent::CartUpdated => "cart.updated",
            ObservableEvent::CartDeleted => "cart.deleted",
            ObservableEvent::CustomerCreated => "customer.created",
            ObservableEvent::CustomerUpdated => "customer.updated",
            ObservableEvent::CustomerDeleted => "customer.deleted",
            ObservableEvent::IntegrationCreated => "integration.created",
            ObservableEvent::IntegrationUpdated => "integration.updated",
            ObservableEvent::IntegrationDeleted => "integration.deleted",
            ObservableEvent::PaymentGatewayUpdated => "payment-gateway.updated",
            ObservableEvent::StockLow => "stock.low",
            ObservableEvent::StockOut => "stock.out",
            ObservableEvent::StockReplenished => "stock.replenished",
        }
    }
}

/// `integration_type`: Elastic Path's `webhook`, or `nats` (JetStream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationTypeIn {
    Webhook,
    Nats,
}

impl IntegrationTypeIn {
    fn kind(self) -> IntegrationType {
        match self {
            IntegrationTypeIn::Webhook => IntegrationType::Webhook,
            IntegrationTypeIn::Nats => IntegrationType::Nats,
        }
    }
}

/// The `configuration` object: `url` (and optionally `secret_key`, sent as
/// `X-Moltin-Secret-Key` and used to sign) for a webhook; `subject` for NATS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct Configuration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Configuration {
    /// Checks the configuration against its integration's type; the stored JSON text.
    fn checked(self, kind: IntegrationType) -> Result<String, ApiError> {
        let at = |field: &str| format!("data.configuration.{field}");
        if let Some(key) = &self.secret_key {
            if key.is_empty() || key.chars().count() > 255 || key.contains(['\0', '\r', '\n']) {
                return Err(ApiError::invalid(
                    at("secret_key"),
                    "must be 1 to 255 characters, with no NUL or line break",
                ));
            }
        }
        match kind {
            IntegrationType::Webhook => {
                let url = self
                    .url
                    .as_deref()
                    .ok_or_else(|| ApiError::invalid(at("url"), "a webhook needs a url"))?;
                check_url(url).map_err(|e| ApiError::invalid(at("url"), e))?;
                if self.subject.is_some() {
                    return Err(ApiError::invalid(at("subject"), "is for nats integrations"));
                }
            }
            IntegrationType::Nats => {
                let subject = self.subject.as_deref().ok_or_else(|| {
                    ApiError::invalid(at("subject"), "a nats integration needs a subject")
                })?;
                check_subject(subject).map_err(|e| ApiError::invalid(at("subject"), e))?;
                if self.url.is_some() {
                    return Err(ApiError::invalid(at("url"), "is for webhook integrations"));
                }
            }
        }
        serde_json::to_string(&self).map_err(|_| ApiError::Internal)
    }
}

/// A webhook URL: `http` or `https`, a host, no credentials, at most [`URL_LEN_MAX`].
pub fn check_url(raw: &str) -> Result<reqwest::Url, String> {
    if raw.len() > URL_LEN_MAX {
        return Err(format!("must be at most {URL_LEN_MAX} characters"));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("may not carry credentials".into());
    }
    Ok(url)
}

/// A NATS subject to publish to: no wildcards, no spaces, no empty token.
fn check_subject(subject: &str) -> Result<(), String> {
    let ok_token = |t: &str| {
        !t.is_empty()
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if subject.len() > SUBJECT_LEN_MAX || !subject.split('.').all(ok_token) {
        return Err(format!(
            "must be dot-separated tokens of letters, digits, '-' and '_', \
             at most {SUBJECT_LEN_MAX} characters"
        ));
    }
    Ok(())
}

fn observes(events: Many<ObservableEvent, 1, OBSERVES_MAX>) -> Vec<String> {
    let mut names: Vec<String> = events.0.iter().map(|e| e.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    names
}

/// `POST /v2/integrations`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewIntegration {
    #[serde(rename = "type", default)]
    pub kind: Option<IntegrationTag>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Name>)]
    name: Name,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Description>)]
    description: Option<Description>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    integration_type: Option<IntegrationTypeIn>,
    #[schema(value_type = Vec<ObservableEvent>, min_items = 1, max_items = 32)]
    observes: Many<ObservableEvent, 1, OBSERVES_MAX>,
    configuration: Configuration,
}

impl NewIntegration {
    pub fn into_integration(self, id: String, now: Timestamp) -> Result<Integration, ApiError> {
        let kind = self
            .integration_type
            .map_or(IntegrationType::Webhook, IntegrationTypeIn::kind);
        Ok(Integration {
            id,
            name: self.name.0,
            description: self.description.map(|d| d.0).unwrap_or_default(),
            enabled: self.enabled.unwrap_or(true),
            integration_type: kind,
            observes: observes(self.observes),
            configuration: self.configuration.checked(kind)?,
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PUT /v2/integrations/{id}`: the fields given replace the integration's; the others stay.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct IntegrationUpdate {
    #[serde(rename = "type", default)]
    pub kind: Option<IntegrationTag>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Name>)]
    name: Option<Name>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Description>)]
    description: Option<Description>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    integration_type: Option<IntegrationTypeIn>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<ObservableEvent>>, min_items = 1, max_items = 32)]
    observes: Option<Many<ObservableEvent, 1, OBSERVES_MAX>>,
    #[serde(default)]
    configuration: Option<Configuration>,
}

impl IntegrationUpdate {
    pub fn apply(self, i: &mut Integration, now: Timestamp) -> Result<(), ApiError> {
        if let Some(name) = self.name {
            i.name = name.0;
        }
        if let Some(description) = self.description {
            i.description = description.0;
        }
        if let Some(enabled) = self.enabled {
            i.enabled = enabled;
        }
        if let Some(kind) = self.integration_type {
            i.integration_type = kind.kind();
        }
        if let Some(events) = self.observes {
            i.observes = observes(events);
        }
        let configuration = match self.configuration {
            Some(c) => c,
            None => stored_configuration(i),
        };
        i.configuration = configuration.checked(i.integration_type)?;
        i.updated_at = now;
        Ok(())
    }
}

/// An integration's stored configuration.
pub fn stored_configuration(i: &Integration) -> Configuration {
    serde_json::from_str(&i.configuration).unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
pub struct SelfLink {
    #[serde(rename = "self")]
    pub self_link: String,
}

/// An integration as Elastic Path shows it.
#[derive(Serialize, ToSchema)]
pub struct IntegrationOut<'a> {
    #[schema(value_type = String)]
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: IntegrationTag,
    #[schema(value_type = String)]
    pub name: &'a str,
    #[schema(value_type = String)]
    pub description: &'a str,
    pub enabled: bool,
    /// `webhook` or `nats`.
    pub integration_type: &'static str,
    #[schema(value_type = Vec<ObservableEvent>)]
    pub observes: &'a [String],
    pub configuration: Configuration,
    pub links: SelfLink,
    pub meta: TimestampsMeta,
}

impl<'a> IntegrationOut<'a> {
    pub fn new(i: &'a Integration) -> Self {
        IntegrationOut {
            id: &i.id,
            kind: IntegrationTag,
            name: &i.name,
            description: &i.description,
            enabled: i.enabled,
            integration_type: i.integration_type.as_str(),
            observes: &i.observes,
            configuration: stored_configuration(i),
            links: SelfLink {
                self_link: format!("/v2/integrations/{}", i.id),
            },
            meta: TimestampsMeta {
                timestamps: Timestamps {
                    created_at: i.created_at,
                    updated_at: i.updated_at,
                },
            },
        }
    }
}

/// A job's id: its outbox row's number, shown as a UUID (version 8: Stockroom's own layout).
pub fn job_id(seq: i64) -> String {
    let n = u64::try_from(seq).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("00000000-0000-8000-8000-{n:012x}")
}

/// The outbox row a job id names, if it is one.
pub fn job_seq(id: &str) -> Option<i64> {
    let tail = id.strip_prefix("00000000-0000-8000-8000-")?;
    if tail.len() != 12 || !tail.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(tail, 16).ok()
}

/// The event id a job carries on every attempt (and as `Nats-Msg-Id`): a UUIDv5 of the
/// integration and the outbox row, the same on every instance and after any restart.
pub fn event_id(job: &Job) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x7c1f_52a0_5d3e_4d6b_9a86_4f1e_2b8c_0e51);
    let name = format!("{}/{}", job.integration_id, job.seq);
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

#[derive(Serialize, ToSchema)]
pub struct CreatedMeta {
    pub timestamps: CreatedAt,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedAt {
    #[serde(serialize_with = "time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A job: one event for one integration.
#[derive(Serialize, ToSchema)]
pub struct JobOut<'a> {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: IntegrationJobTag,
    /// The event id every attempt carries.
    pub event_id: String,
    #[schema(value_type = String)]
    pub triggered_by: &'a str,
    /// `pending`, `delivered` or `failed`.
    pub status: &'static str,
    pub attempts: u32,
    pub meta: CreatedMeta,
}

impl<'a> JobOut<'a> {
    pub fn new(job: &'a Job) -> Self {
        JobOut {
            id: job_id(job.seq),
            kind: IntegrationJobTag,
            event_id: event_id(job),
            triggered_by: &job.triggered_by,
            status: job.status.as_str(),
            attempts: job.attempts,
            meta: CreatedMeta {
                timestamps: CreatedAt {
                    created_at: job.created_at,
                },
            },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RelationData {
    pub data: RelationRef,
}

#[derive(Serialize, ToSchema)]
pub struct RelationRef {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct LogRelationships {
    pub integration: RelationData,
    pub job: RelationData,
}

/// One delivery attempt, as Elastic Path's integration logs show it.
#[derive(Serialize, ToSchema)]
pub struct LogOut<'a> {
    #[schema(value_type = String)]
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: IntegrationTag,
    pub succeeded: bool,
    pub attempt: u32,
    #[schema(value_type = String)]
    pub body: &'a str,
    pub status_code: Option<u16>,
    #[schema(value_type = String)]
    pub error_detail: &'a str,
    pub relationships: LogRelationships,
    pub meta: CreatedMeta,
}

impl<'a> LogOut<'a> {
    pub fn new(log: &'a IntegrationLog) -> Self {
        LogOut {
            id: &log.id,
            kind: IntegrationTag,
            succeeded: log.outcome.succeeded,
            attempt: log.attempt,
            body: &log.outcome.body,
            status_code: log.outcome.status_code,
            error_detail: &log.outcome.error_detail,
            relationships: LogRelationships {
                integration: RelationData {
                    data: RelationRef {
                        id: log.integration_id.clone(),
                        kind: "integration",
                    },
                },
                job: RelationData {
                    data: RelationRef {
                        id: job_id(log.job_seq),
                        kind: "integration-job",
                    },
                },
            },
            meta: CreatedMeta {
                timestamps: CreatedAt {
                    created_at: log.created_at,
                },
            },
        }
    }
}

/// `integration` in a delivered payload.
#[derive(Serialize)]
pub struct PayloadIntegration<'a> {
    pub id: &'a str,
    pub integration_type: &'static str,
    pub name: &'a str,
    pub description: &'a str,
}

/// What a webhook receives, as Elastic Path sends it: `resources` is the resource as JSON
/// text (deprecated there, still sent), `payload` the same as an object.
#[derive(Serialize)]
pub struct Payload<'a> {
    pub id: &'a str,
    pub triggered_by: &'a str,
    pub attempt: u32,
    pub integration: PayloadIntegration<'a>,
    pub resources: String,
    pub payload: &'a serde_json::Value,
}

tag!(StockThresholdTag, "stock-threshold");

/// `PUT /v2/inventories/{product}/threshold`: the low-stock threshold of one of the product's
/// records (at `location`, or at no location); `null` removes it. `stock.low` fires when what
/// is available falls to the threshold or below, `stock.out` when it reaches zero, and
/// `stock.replenished` when it rises above the threshold again.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub struct StockThreshold {
    #[serde(rename = "type", default)]
    pub kind: Option<StockThresholdTag>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<stockroom_domain::Slug>)]
    pub location: Option<stockroom_domain::Slug>,
    #[serde(deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<stockroom_domain::Quantity>)]
    pub threshold: Option<stockroom_domain::Quantity>,
}

/// The threshold as set.
#[derive(Serialize, ToSchema)]
pub struct StockThresholdOut {
    #[serde(rename = "type")]
    pub kind: StockThresholdTag,
    #[schema(value_type = String)]
    pub product_id: String,
    /// The location's slug; `null` for no location.
    pub location: Option<String>,
    pub threshold: Option<u64>,
}
