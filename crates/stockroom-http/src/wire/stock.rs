//! Stock and its history, in the classic shapes and the multi-location ones (wire-contract §3,
//! §4).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use stockroom_domain::limits::{LOCATIONS_PER_REQUEST_MAX, MULTIPLE_IDS_MAX, REASON_LEN_MAX};
use stockroom_domain::{Action, Adjustment, ProductId, Slug, StockLevel, Timestamp};
use stockroom_store::{HistoryEntry, HistoryQuery, ProductStock, NO_LOCATION};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::fields::{self, Bytes, Many, SlugMap, WireField};
use super::{tag, time, FilterTerm, Timestamps};
use crate::error::ApiError;

tag!(StockTag, "stock");
tag!(StockTransactionTag, "stock-transaction");

// ---- requests --------------------------------------------------------------------------------

/// `POST /v2/inventories/{id}` (classic): `{"data":{"quantity":n}}`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewStock {
    /// Units held at first: 0 or more (Elastic Path's stock starts at 0).
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<StockLevel>)]
    pub quantity: StockLevel,
}

/// What is available at one location.
#[derive(Deserialize, ToSchema, Debug, Clone, Copy)]
#[serde(expecting = "an object {\"available\": n}")]
pub struct Available {
    /// 0 or more; with units allocated there, the total becomes allocated + available.
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<StockLevel>)]
    pub available: StockLevel,
}

pub type NewLocations = SlugMap<Available, LOCATIONS_PER_REQUEST_MAX>;
pub type LocationChanges = SlugMap<Option<Available>, LOCATIONS_PER_REQUEST_MAX>;

/// `POST /v2/inventories` (multi-location).
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewStockMulti {
    #[serde(rename = "type", default)]
    pub kind: Option<StockTag>,
    /// The product's id.
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<ProductId>)]
    pub id: ProductId,
    #[serde(deserialize_with = "fields::object")]
    #[schema(schema_with = new_stock_attributes_schema)]
    pub attributes: NewStockAttributes,
}

/// `available`, or `locations`, or both; not null.
fn new_stock_attributes_schema() -> Schema {
    let constrained = fields::with_constraints(
        NewStockAttributes::schema(),
        json!({"anyOf": [
            {"type": "object", "required": ["available"],
             "properties": {"available": {"type": "integer"}}},
            {"type": "object", "required": ["locations"],
             "properties": {"locations": {"type": "object"}}},
        ]}),
    );
    fields::to_schema(serde_json::to_value(constrained).unwrap_or_default())
}

/// Stock at no location (`available`) and per location, at least one of them.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewStockAttributes {
    /// Available units held at no location.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<StockLevel>)]
    pub available: Option<StockLevel>,
    /// Location slug → its available units.
    #[serde(default)]
    #[schema(schema_with = fields::opt_partial::<NewLocations>)]
    pub locations: Option<NewLocations>,
}

impl NewStockAttributes {
    /// Every record to create, the one with no location first.
    pub fn records(self) -> Result<Vec<(String, StockLevel)>, ApiError> {
        let none = self.available.map(|q| (NO_LOCATION.to_owned(), q));
        let at = self.locations.map(|m| m.0).unwrap_or_default();
        let records: Vec<_> = none
            .into_iter()
            .chain(at.into_iter().map(|(s, a)| (s.into_string(), a.available)))
            .collect();
        if records.is_empty() {
            return Err(ApiError::invalid(
                "data.attributes",
                "give available or locations",
            ));
        }
        Ok(records)
    }
}

/// `PUT /v2/inventories/{id}` (multi-location).
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct StockUpdate {
    #[serde(rename = "type", default)]
    pub kind: Option<StockTag>,
    /// When sent, the product in the path.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<ProductId>)]
    pub id: Option<ProductId>,
    #[serde(deserialize_with = "fields::object")]
    pub attributes: StockChanges,
}

#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct StockChanges {
    /// Available units held at no location.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<StockLevel>)]
    pub available: Option<StockLevel>,
    /// Location slug → its new available units, or null to stop holding stock there (refused
    /// while units there are allocated).
    #[serde(default)]
    #[schema(schema_with = fields::opt_partial::<LocationChanges>)]
    pub locations: Option<LocationChanges>,
}

impl StockChanges {
    /// `Some(available)` per location to set, `None` to remove.
    pub fn changes(self) -> Vec<(String, Option<StockLevel>)> {
        let none = self.available.map(|q| (NO_LOCATION.to_owned(), Some(q)));
        let at = self.locations.map(|m| m.0).unwrap_or_default();
        none.into_iter()
            .chain(
                at.into_iter()
                    .map(|(s, a)| (s.into_string(), a.map(|a| a.available))),
            )
            .collect()
    }
}

/// One id of `POST /v2/inventories/multiple`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object {\"id\": …}")]
pub struct StockId {
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<ProductId>)]
    pub id: ProductId,
}

pub type MultipleIds = Many<StockId, 0, MULTIPLE_IDS_MAX>;

/// An action an administrator may post.
pub struct Postable(pub Action);

impl WireField for Postable {
    fn json_schema() -> serde_json::Value {
        let names: Vec<&str> = Action::ALL
            .iter()
            .filter(|a| a.is_postable())
            .map(|a| a.as_str())
            .collect();
        json!({"type": "string", "enum": names})
    }
    fn parse<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        raw.parse::<Action>()
            .ok()
            .filter(|a| a.is_postable())
            .map(Postable)
            .ok_or_else(|| {
                serde::de::Error::custom(
                    "must be one of increment, decrement, allocate, deallocate, set",
                )
            })
    }
}

/// A stock transaction's fields.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct TransactionFields {
    #[serde(rename = "type", default)]
    pub kind: Option<StockTransactionTag>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::schema::<Postable>)]
    pub action: Option<Postable>,
    /// 1 or more; `set` also takes 0.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::schema::<StockLevel>)]
    pub quantity: Option<StockLevel>,
    /// Why: free text kept with the history entry.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Bytes<REASON_LEN_MAX>>)]
    pub reason: Option<Bytes<REASON_LEN_MAX>>,
    /// The slug of the location whose stock changes; required when the product's stock is
    /// held at locations.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Slug>)]
    pub location: Option<Slug>,
    /// When sent, the product in the path (left out of the document: it can only repeat the
    /// path).
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(ignore)]
    pub product_id: Option<ProductId>,
}

/// `POST /v2/inventories/{id}/transactions` in any shape clients send: the classic fields in
/// `data`, the multi-location spec's `data.type` + `data.attributes`, or the SDK's
/// `data.attributes.type`. Held as read; [`TransactionBody::posted`] picks the shape.
#[derive(Deserialize)]
#[serde(expecting = "an object")]
pub struct TransactionBody {
    #[serde(default, deserialize_with = "fields::opt_object")]
    attributes: Option<TransactionFields>,
    #[serde(rename = "type", default)]
    kind: Option<StockTransactionTag>,
    #[serde(default, deserialize_with = "fields::opt")]
    action: Option<Postable>,
    #[serde(default, deserialize_with = "fields::opt")]
    quantity: Option<StockLevel>,
    #[serde(default, deserialize_with = "fields::opt")]
    reason: Option<Bytes<REASON_LEN_MAX>>,
    #[serde(default, deserialize_with = "fields::opt")]
    location: Option<Slug>,
    #[serde(default, deserialize_with = "fields::opt")]
    product_id: Option<ProductId>,
}

/// A transaction as posted.
pub struct Posted {
    pub adjustment: Adjustment,
    pub reason: Option<String>,
    pub location: Option<Slug>,
}

impl TransactionBody {
    /// The transaction's fields, from `data.attributes` when it is sent, else from `data`;
    /// `product_id`, when sent, must be `product`.
    pub fn posted(self, product: &ProductId) -> Result<Posted, ApiError> {
        let (prefix, fields) = match self.attributes {
            Some(fields) => ("data.attributes", fields),
            None => (
                "data",
                TransactionFields {
                    kind: self.kind,
                    action: self.action,
                    quantity: self.quantity,
                    reason: self.reason,
                    location: self.location,
                    product_id: self.product_id,
                },
            ),
        };
        let required = |field: &str| {
            let path = format!("{prefix}.{field}");
            ApiError::invalid(path.clone(), format!("{path} is required"))
        };
        if fields.product_id.as_ref().is_some_and(|id| id != product) {
            return Err(ApiError::invalid(
                format!("{prefix}.product_id"),
                "product_id must be the product in the path",
            ));
        }
        let action = fields.action.ok_or_else(|| required("action"))?.0;
        let level = fields.quantity.ok_or_else(|| required("quantity"))?;
        let adjustment = Adjustment::new(action, level).map_err(|e| {
            ApiError::invalid(
                format!("{prefix}.quantity"),
                format!("{e} (only set takes 0)"),
            )
        })?;
        Ok(Posted {
            adjustment,
            reason: fields.reason.map(|r| r.0),
            location: fields.location,
        })
    }
}

impl PartialSchema for TransactionBody {
    /// The classic shape (fields in `data`, no `attributes`) or the multi-location one
    /// (fields in `data.attributes`), each with `action` and `quantity` required.
    fn schema() -> RefOr<Schema> {
        let mut fields = serde_json::to_value(TransactionFields::schema()).unwrap_or_default();
        fields["required"] = json!(["action", "quantity"]);
        let classic = fields.clone();
        let wrapped = json!({
            "type": "object",
            "properties": {
                "type": fields["properties"]["type"].clone(),
                "attributes": fields,
            },
            "required": ["attributes"],
        });
        RefOr::T(fields::to_schema(json!({
            "description": "The classic shape (fields in `data`) or the multi-location one \
                (fields in `data.attributes`).",
            "anyOf": [classic, wrapped],
        })))
    }
}

impl ToSchema for TransactionBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        TransactionFields::schemas(schemas);
    }
}

// ---- filters -----------------------------------------------------------------------------------

/// `eq(locations,<slug>)` (the SDK) or `eq(location,<slug>)` (the spec).
fn location_term(op: &str, field: &str, value: &str) -> Option<Result<Slug, String>> {
    (op == "eq" && (field == "location" || field == "locations"))
        .then(|| Slug::parse(value).map_err(|e| format!("a location slug {e}")))
}

/// A term of a stock list's filter.
pub struct StockTerm(pub Slug);

impl FilterTerm for StockTerm {
    const SUPPORTS: &'static str =
        "`eq(locations,<slug>)` (or `eq(location,<slug>)`): stock held there";
    fn parse(op: &str, field: &str, value: &str) -> Result<Self, String> {
        location_term(op, field, value)
            .unwrap_or_else(|| Err(format!("unknown term {op}({field},…)")))
            .map(StockTerm)
    }
}

/// A term of a history filter.
pub enum HistoryTerm {
    Action(Action),
    Location(Slug),
    /// Entries at or after this instant.
    From(Timestamp),
    /// Entries strictly before this instant.
    Before(Timestamp),
}

impl FilterTerm for HistoryTerm {
    const SUPPORTS: &'static str = "`eq(action,<action>)`, `eq(location,<slug>)` and \
        `gt|ge|lt|le(created_at,<RFC 3339 time>)`, terms joined by `:` (at most 8)";
    fn parse(op: &str, field: &str, value: &str) -> Result<Self, String> {
        if let Some(slug) = location_term(op, field, value) {
            return slug.map(HistoryTerm::Location);
        }
        match (op, field) {
            ("eq", "action") => value
                .parse()
                .map(HistoryTerm::Action)
                .map_err(|_| format!("unknown action {value:?}")),
            (op @ ("gt" | "ge" | "lt" | "le"), "created_at") => {
                let t = parse_time(value)?;
                let at = |offset: i64| Timestamp(t.micros().saturating_add(offset));
                Ok(match op {
                    "ge" => HistoryTerm::From(at(0)),
                    "gt" => HistoryTerm::From(at(1)),
                    "lt" => HistoryTerm::Before(at(0)),
                    _ => HistoryTerm::Before(at(1)),
                })
            }
            _ => Err(format!("unknown term {op}({field},…)")),
        }
    }
}

/// The history query a filter asks for.
pub fn history_query(terms: &[HistoryTerm]) -> HistoryQuery {
    let mut query = HistoryQuery::default();
    for term in terms {
        match term {
            HistoryTerm::Action(a) => query.action = Some(*a),
            HistoryTerm::Location(s) => query.location = Some(s.as_str().to_owned()),
            HistoryTerm::From(t) => query.created_from = Some(*t),
            HistoryTerm::Before(t) => query.created_before = Some(*t),
        }
    }
    query
}

/// An RFC 3339 time as a [`Timestamp`].
pub fn parse_time(raw: &str) -> Result<Timestamp, String> {
    let t = time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{raw:?} is not an RFC 3339 time"))?;
    i64::try_from(t.unix_timestamp_nanos() / 1000)
        .map(Timestamp)
        .map_err(|_| "time out of range".to_owned())
}

// ---- answers -----------------------------------------------------------------------------------

/// `{"total", "allocated", "available"}`.
#[derive(Serialize, ToSchema, Clone, Copy)]
pub struct Figures {
    pub total: u64,
    pub allocated: u64,
    pub available: u64,
}

impl Figures {
    fn new(total: u64, allocated: u64) -> Self {
        Figures {
            total,
            allocated,
            available: total - allocated,
        }
    }
}

/// A product's stock in the classic shape: the sums over its records.
#[derive(Serialize, ToSchema)]
pub struct Stock<'a> {
    #[schema(value_type = String)]
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: StockTag,
    pub total: u64,
    pub available: u64,
    pub allocated: u64,
    pub meta: super::TimestampsMeta,
}

impl<'a> Stock<'a> {
    pub fn new(p: &'a ProductStock) -> Self {
        Stock {
            id: p.product_id.as_str(),
            kind: StockTag,
            total: p.total,
            available: p.available(),
            allocated: p.allocated,
            meta: super::TimestampsMeta {
                timestamps: Timestamps {
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                },
            },
        }
    }

    /// The record as it stood right after `entry` (the answer to a classic create).
    pub fn after(entry: &'a HistoryEntry) -> Self {
        Stock {
            id: entry.product_id.as_str(),
            kind: StockTag,
            total: entry.after.total(),
            available: entry.after.available(),
            allocated: entry.after.allocated(),
            meta: super::TimestampsMeta {
                timestamps: Timestamps {
                    created_at: entry.created_at,
                    updated_at: entry.created_at,
                },
            },
        }
    }
}

/// The sums, and each location's figures.
#[derive(Serialize, ToSchema)]
pub struct StockAttributes<'a> {
    #[serde(flatten)]
    pub figures: Figures,
    pub locations: BTreeMap<&'a str, Figures>,
}

#[derive(Serialize, ToSchema)]
pub struct StockMultiMeta {
    /// A stable id of the product's stock: a UUID made from the product id.
    pub stock_id: String,
    pub timestamps: Timestamps,
}

/// A product's stock in the multi-location shape.
#[derive(Serialize, ToSchema)]
pub struct StockMultiLocation<'a> {
    #[schema(value_type = String)]
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: StockTag,
    pub attributes: StockAttributes<'a>,
    pub meta: StockMultiMeta,
}

impl<'a> StockMultiLocation<'a> {
    pub fn new(p: &'a ProductStock) -> Self {
        let stock_id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("stockroom:stock:{}", p.product_id).as_bytes(),
        )
        .to_string();
        StockMultiLocation {
            id: p.product_id.as_str(),
            kind: StockTag,
            attributes: StockAttributes {
                figures: Figures::new(p.total, p.allocated),
                locations: p
                    .records
                    .iter()
                    .filter(|r| r.location != NO_LOCATION)
                    .map(|r| {
                        let figures = Figures::new(r.stock.total(), r.stock.allocated());
                        (r.location.as_str(), figures)
                    })
                    .collect(),
            },
            meta: StockMultiMeta {
                stock_id,
                timestamps: Timestamps {
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                },
            },
        }
    }
}

/// Stock in the shape the request asked for (`EP-Inventories-Multi-Location: true`).
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnyStock<'a> {
    Classic(Stock<'a>),
    MultiLocation(StockMultiLocation<'a>),
}

impl<'a> AnyStock<'a> {
    pub fn new(multi_location: bool, p: &'a ProductStock) -> Self {
        if multi_location {
            AnyStock::MultiLocation(StockMultiLocation::new(p))
        } else {
            AnyStock::Classic(Stock::new(p))
        }
    }
}

/// A history entry's fields, common to both transaction shapes.
#[derive(Serialize, ToSchema)]
pub struct EntryFields<'a> {
    #[serde(rename = "type")]
    pub kind: StockTransactionTag,
    #[schema(value_type = String)]
    pub action: &'a str,
    #[schema(value_type = String)]
    pub product_id: &'a str,
    pub quantity: u64,
    #[serde(flatten)]
    pub after: Figures,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub order_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reason: Option<&'a str>,
}

impl<'a> EntryFields<'a> {
    fn new(e: &'a HistoryEntry) -> Self {
        EntryFields {
            kind: StockTransactionTag,
            action: e.action.as_str(),
            product_id: e.product_id.as_str(),
            quantity: e.quantity,
            after: Figures::new(e.after.total(), e.after.allocated()),
            location: (e.location != NO_LOCATION).then_some(e.location.as_str()),
            order_id: e.order_id.as_deref(),
            reason: e.reason.as_deref(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Created {
    #[serde(serialize_with = "time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A history entry in the classic shape.
#[derive(Serialize, ToSchema)]
pub struct StockTransaction<'a> {
    #[serde(flatten)]
    pub fields: EntryFields<'a>,
    #[schema(value_type = String)]
    pub id: &'a str,
    pub timestamps: Created,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedMeta {
    pub timestamps: Created,
}

/// A history entry in the multi-location shape.
#[derive(Serialize, ToSchema)]
pub struct StockTransactionMultiLocation<'a> {
    #[schema(value_type = String)]
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: StockTransactionTag,
    pub attributes: EntryFields<'a>,
    pub meta: CreatedMeta,
}

/// A history entry in the shape the request asked for.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum AnyStockTransaction<'a> {
    Classic(StockTransaction<'a>),
    MultiLocation(StockTransactionMultiLocation<'a>),
}

impl<'a> AnyStockTransaction<'a> {
    pub fn new(multi_location: bool, e: &'a HistoryEntry) -> Self {
        let created = || Created {
            created_at: e.created_at,
        };
        if multi_location {
            AnyStockTransaction::MultiLocation(StockTransactionMultiLocation {
                id: &e.id,
                kind: StockTransactionTag,
                attributes: EntryFields::new(e),
                meta: CreatedMeta {
                    timestamps: created(),
                },
            })
        } else {
            AnyStockTransaction::Classic(StockTransaction {
                fields: EntryFields::new(e),
                id: &e.id,
                timestamps: created(),
            })
        }
    }
}
