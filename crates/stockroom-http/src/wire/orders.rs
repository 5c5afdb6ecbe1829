//! Checkout and orders (wire-contract §6).

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use stockroom_domain::order::{Payment, Shipping, Status};
use stockroom_domain::{Currency, Timestamp};
use stockroom_store::{
    Command, Compare, Order, OrderChange, OrderDetails, OrderFilter, OrderItem, OrderQuery,
    OrderSort, OrderText, OrderTime, TextMatch, NO_LOCATION,
};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::fields::{self, Customer, Party};
use super::stock::parse_time;
use super::{component, List, TotalPrices};
use super::{
    line_value, tag, DisplayPrice, FilterTerm, LineDisplayPrice, ListQuery, MoneyOut, Relation,
    Timestamps,
};
use axum::response::{IntoResponse, Response};

tag!(OrderTag, "order");
tag!(OrderItemTag, "order_item");
tag!(Fulfilled, "fulfilled");
tag!(Cancelled, "cancelled");

/// `POST /v2/carts/{cart}/checkout`. Customer and addresses are Elastic Path's open objects,
/// kept as sent (see [`Party`]); the shipping address defaults to the billing one.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct CheckoutBody {
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Customer>)]
    pub customer: Customer,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Party>)]
    pub billing_address: Party,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Party>)]
    pub shipping_address: Option<Party>,
}

/// `PUT /v2/orders/{id}`: any of `order_number`, `external_ref` (1–64 characters; `null`
/// clears) and `shipping_address`, with at most one of `shipping: fulfilled` (ships) and
/// `status: cancelled` (cancels). Every change is applied, or none.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct OrderUpdateFields {
    #[serde(rename = "type", default)]
    pub kind: Option<OrderTag>,
    #[serde(default)]
    #[schema(schema_with = fulfilled_schema)]
    pub shipping: Option<Fulfilled>,
    #[serde(default)]
    #[schema(schema_with = cancelled_schema)]
    pub status: Option<Cancelled>,
    /// The shop's own order number; `null` clears it.
    #[serde(default, deserialize_with = "fields::patch")]
    #[schema(schema_with = order_ref_schema)]
    pub order_number: Option<Option<OrderRef>>,
    /// A reference from another system (Elastic Path's `external_ref`); `null` clears it.
    #[serde(default, deserialize_with = "fields::patch")]
    #[schema(schema_with = order_ref_schema)]
    pub external_ref: Option<Option<OrderRef>>,
    /// A new shipping address, kept as sent; refused once the order is shipped.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Party>)]
    pub shipping_address: Option<Party>,
}

/// An order number or external reference: 1 to 64 characters (Elastic Path's limit).
pub type OrderRef = fields::Chars<1, ORDER_REF_CHARS_MAX>;

/// Most characters of an `order_number` or `external_ref`.
pub const ORDER_REF_CHARS_MAX: usize = 64;

fn order_ref_schema() -> Schema {
    fields::to_schema(fields::nullable_json(
        <OrderRef as fields::WireField>::json_schema(),
    ))
}

// `null` is taken as absent, like every optional field of the update: say so.
fn fulfilled_schema() -> Schema {
    fields::to_schema(fields::nullable_json(fields::constant("fulfilled")))
}

fn cancelled_schema() -> Schema {
    fields::to_schema(fields::nullable_json(fields::constant("cancelled")))
}

#[derive(Deserialize)]
#[serde(transparent)]
pub struct OrderUpdate(pub OrderUpdateFields);

/// Why an update asks for nothing, or for two things that exclude each other.
pub const ORDER_UPDATE_HELP: &str = "send any of order_number, external_ref and \
    shipping_address, with at most one of {\"shipping\":\"fulfilled\"} and \
    {\"status\":\"cancelled\"}";

impl OrderUpdate {
    /// The command it asks for; `None` if it asks for nothing, or to ship and cancel at once.
    pub fn command(self, order_id: String) -> Option<Command> {
        let f = self.0;
        let then = match (f.shipping, f.status) {
            (Some(Fulfilled), None) => Some(OrderChange::Ship),
            (None, Some(Cancelled)) => Some(OrderChange::Cancel),
            (None, None) => None,
            (Some(_), Some(_)) => return None,
        };
        let text = |v: Option<Option<OrderRef>>| v.map(|v| v.map(|r| r.0));
        let details = OrderDetails {
            order_number: text(f.order_number),
            external_ref: text(f.external_ref),
            shipping_address: f.shipping_address.map(|a| a.0),
        };
        match (details.is_empty(), then) {
            (true, None) => None,
            (true, Some(OrderChange::Ship)) => Some(Command::Ship { order_id }),
            (true, Some(OrderChange::Cancel)) => Some(Command::Cancel { order_id }),
            (false, then) => Some(Command::UpdateOrder {
                order_id,
                details,
                then,
            }),
        }
    }
}

impl PartialSchema for OrderUpdate {
    fn schema() -> RefOr<Schema> {
        fields::with_constraints(
            OrderUpdateFields::schema(),
            json!({
                "not": {"type": "object", "required": ["shipping", "status"]},
                "anyOf": [
                    {"type": "object", "required": ["shipping"]},
                    {"type": "object", "required": ["status"]},
                    {"type": "object", "required": ["order_number"]},
                    {"type": "object", "required": ["external_ref"]},
                    {"type": "object", "required": ["shipping_address"]},
                ],
            }),
        )
    }
}

impl ToSchema for OrderUpdate {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        OrderUpdateFields::schemas(schemas);
    }
}

/// A term of the order list's filter (Elastic Path's, less the customer and account ones).
pub enum OrderTerm {
    Status(Status),
    Payment(Payment),
    Shipping(Shipping),
    Other(OrderFilter),
    /// `eq(created_at|updated_at,YYYY-MM-DD)`: any time of that day (UTC), from its start.
    Day(OrderTime, Timestamp),
}

/// Most bytes of a filter term's value.
pub const ORDER_FILTER_VALUE_BYTES_MAX: usize = 256;

/// A day in microseconds.
const DAY_MICROS: i64 = 86_400_000_000;

impl FilterTerm for OrderTerm {
    const SUPPORTS: &'static str = "`eq(status|payment|shipping,<value>)`; \
        `eq|like(name|email|external_ref|order_number|shipping_postcode|billing_postcode,<text>)` \
        (`like`: `*` matches any text, ASCII case ignored); `eq(currency,<code>)`; \
        `eq(product_id|product_sku,<value>)` (an item of it); \
        `eq|gt|ge|lt|le(with_tax|without_tax,<minor units>)`; \
        `eq|gt|ge|lt|le(created_at|updated_at,<RFC 3339 time or YYYY-MM-DD>)` (a date is its \
        whole day, UTC); values of at most 256 bytes; terms joined by `:` (at most 8)";
    fn parse(op: &str, field: &str, value: &str) -> Result<Self, String> {
        if value.len() > ORDER_FILTER_VALUE_BYTES_MAX {
            return Err(format!(
                "a filter value may have at most {ORDER_FILTER_VALUE_BYTES_MAX} bytes"
            ));
        }
        let unknown = || format!("unknown {field} {value:?}");
        let text = |field: OrderText| {
            let matching = match op {
                "eq" => TextMatch::Eq,
                _ => TextMatch::Like,
            };
            Ok(OrderTerm::Other(OrderFilter::Text {
                field,
                matching,
                value: value.to_owned(),
            }))
        };
        match (op, field) {
            ("eq", "status") => Status::parse(value)
                .map(OrderTerm::Status)
                .ok_or_else(unknown),
            ("eq", "payment") => Payment::parse(value)
                .map(OrderTerm::Payment)
                .ok_or_else(unknown),
            ("eq", "shipping") => Shipping::parse(value)
                .map(OrderTerm::Shipping)
                .ok_or_else(unknown),
            ("eq" | "like", "name") => text(OrderText::Name),
            ("eq" | "like", "email") => text(OrderText::Email),
            ("eq" | "like", "external_ref") => text(OrderText::ExternalRef),
            ("eq" | "like", "order_number") => text(OrderText::OrderNumber),
            ("eq" | "like", "shipping_postcode") => text(OrderText::ShippingPostcode),
            ("eq" | "like", "billing_postcode") => text(OrderText::BillingPostcode),
            ("eq", "currency") => Currency::parse(value)
                .map(|c| {
                    OrderTerm::Other(OrderFilter::Text {
                        field: OrderText::Currency,
                        matching: TextMatch::Eq,
                        value: c.as_str().to_owned(),
                    })
                })
                .map_err(|_| unknown()),
            ("eq", "product_id") => Ok(OrderTerm::Other(OrderFilter::ProductId(value.into()))),
            ("eq", "product_sku") => Ok(OrderTerm::Other(OrderFilter::ProductSku(value.into()))),
            (_, "with_tax" | "without_tax") => {
                let compare = compare(op).ok_or_else(|| bad_op(op, field))?;
                let amount = value
                    .parse::<i64>()
                    .map_err(|_| format!("{field} must be a whole number of minor units"))?;
                Ok(OrderTerm::Other(OrderFilter::Total(compare, amount)))
            }
            (_, "created_at" | "updated_at") => {
                let at = match field {
                    "created_at" => OrderTime::CreatedAt,
                    _ => OrderTime::UpdatedAt,
                };
                let compare = compare(op).ok_or_else(|| bad_op(op, field))?;
                time_term(at, compare, value)
            }
            _ => Err(format!("unknown term {op}({field},…)")),
        }
    }
}

fn bad_op(op: &str, field: &str) -> String {
    format!("unknown term {op}({field},…)")
}

fn compare(op: &str) -> Option<Compare> {
    Some(match op {
        "eq" => Compare::Eq,
        "gt" => Compare::Gt,
        "ge" => Compare::Ge,
        "lt" => Compare::Lt,
        "le" => Compare::Le,
        _ => return None,
    })
}

/// A time term: an RFC 3339 instant compared as it is, or a date (`YYYY-MM-DD`, UTC) standing
/// for its whole day (`gt`: after that day, `le`: up to its end).
fn time_term(at: OrderTime, compare: Compare, value: &str) -> Result<OrderTerm, String> {
    let Some(start) = day_start(value) else {
        let t = parse_time(value)
            .map_err(|_| format!("{value:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"))?;
        return Ok(OrderTerm::Other(OrderFilter::Time(at, compare, t)));
    };
    let next = Timestamp(start.micros().saturating_add(DAY_MICROS));
    Ok(match compare {
        Compare::Eq => OrderTerm::Day(at, start),
        Compare::Ge => OrderTerm::Other(OrderFilter::Time(at, Compare::Ge, start)),
        Compare::Lt => OrderTerm::Other(OrderFilter::Time(at, Compare::Lt, start)),
        Compare::Gt => OrderTerm::Other(OrderFilter::Time(at, Compare::Ge, next)),
        Compare::Le => OrderTerm::Other(OrderFilter::Time(at, Compare::Lt, next)),
    })
}

/// The start (UTC) of a `YYYY-MM-DD` date; `None` if it is not one.
fn day_start(value: &str) -> Option<Timestamp> {
    let mut parts = value.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    let seconds = date.midnight().assume_utc().unix_timestamp();
    Some(Timestamp(seconds.checked_mul(1_000_000)?))
}

/// `sort`: `created_at` or `updated_at`, oldest first, or with `-` newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortParam(pub OrderSort);

impl SortParam {
    fn text(self) -> &'static str {
        match (self.0.by, self.0.ascending) {
            (OrderTime::CreatedAt, true) => "created_at",
            (OrderTime::CreatedAt, false) => "-created_at",
            (OrderTime::UpdatedAt, true) => "updated_at",
            (OrderTime::UpdatedAt, false) => "-updated_at",
        }
    }
}

impl<'de> Deserialize<'de> for SortParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let (ascending, name) = match raw.trim().strip_prefix('-') {
            Some(name) => (false, name),
            None => (true, raw.trim()),
        };
        let by = match name {
            "created_at" => OrderTime::CreatedAt,
            "updated_at" => OrderTime::UpdatedAt,
            _ => {
                return Err(serde::de::Error::custom(
                    "sort must be created_at, -created_at, updated_at or -updated_at",
                ))
            }
        };
        Ok(SortParam(OrderSort { by, ascending }))
    }
}

/// `GET /v2/orders`: a page, a filter, a sort and `include=items`.
#[derive(Deserialize)]
pub struct OrderListQuery {
    #[serde(flatten)]
    pub list: ListQuery<OrderTerm>,
    #[serde(default)]
    pub sort: Option<SortParam>,
    #[serde(default)]
    pub include: Option<Include>,
}

impl OrderListQuery {
    pub fn query(&self) -> OrderQuery {
        let mut query = OrderQuery::default();
        for term in &self.list.filter.terms {
            match term {
                OrderTerm::Status(s) => query.status = Some(*s),
                OrderTerm::Payment(p) => query.payment = Some(*p),
                OrderTerm::Shipping(s) => query.shipping = Some(*s),
                OrderTerm::Other(f) => query.terms.push(f.clone()),
                OrderTerm::Day(at, start) => {
                    let next = Timestamp(start.micros().saturating_add(DAY_MICROS));
                    query
                        .terms
                        .push(OrderFilter::Time(*at, Compare::Ge, *start));
                    query.terms.push(OrderFilter::Time(*at, Compare::Lt, next));
                }
            }
        }
        query.sort = self.sort.map(|s| s.0).unwrap_or_default();
        query
    }

    /// The filter, sort and include to keep in the list's links.
    pub fn link_suffix(&self) -> String {
        let mut suffix = self.list.filter.link_suffix();
        if let Some(sort) = self.sort {
            suffix.push_str("&sort=");
            suffix.push_str(sort.text());
        }
        if self.include.unwrap_or_default().items {
            suffix.push_str("&include=items");
        }
        suffix
    }
}

impl utoipa::IntoParams for OrderListQuery {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut params = ListQuery::<OrderTerm>::into_params(&parameter_in);
        params.push(
            utoipa::openapi::path::ParameterBuilder::new()
                .name("sort")
                .parameter_in(utoipa::openapi::path::ParameterIn::Query)
                .required(utoipa::openapi::Required::False)
                .description(Some(
                    "`created_at` or `updated_at` (oldest first), or `-created_at` (the \
                     default) or `-updated_at` (newest first).",
                ))
                .schema(Some(fields::to_schema(json!({
                    "type": "string",
                    "enum": ["created_at", "-created_at", "updated_at", "-updated_at"],
                }))))
                .build(),
        );
        params.extend(IncludeQuery::into_params(parameter_in));
        params
    }
}

/// `include=items` (a comma-separated list; other names are ignored).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Include {
    pub items: bool,
}

impl<'de> Deserialize<'de> for Include {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Ok(Include {
            items: raw.split(',').any(|i| i.trim() == "items"),
        })
    }
}

#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IncludeQuery {
    /// Related resources to include: `items` adds the order's items under `included`.
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^[^\\u0000]*$")]
    pub include: Option<Include>,
}

// ---- answers -----------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct OrderRelation<'a> {
    data: Relation<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderItemRelationships<'a> {
    order: OrderRelation<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderItemMeta {
    display_price: LineDisplayPrice,
}

#[derive(Serialize, ToSchema)]
#[schema(as = OrderItem)]
pub struct OrderItemOut<'a> {
    #[serde(rename = "type")]
    kind: OrderItemTag,
    #[schema(value_type = String)]
    id: &'a str,
    #[schema(value_type = String)]
    product_id: &'a str,
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(value_type = String)]
    sku: &'a str,
    #[schema(value_type = Option<String>)]
    location: Option<&'a str>,
    #[schema(minimum = 1)]
    quantity: u64,
    unit_price: MoneyOut,
    value: MoneyOut,
    relationships: OrderItemRelationships<'a>,
    meta: OrderItemMeta,
}

impl<'a> OrderItemOut<'a> {
    pub fn new(order_id: &'a str, item: &'a OrderItem) -> Self {
        let unit = MoneyOut::from(&item.unit_price);
        let value = line_value(unit.amount, item.quantity.get()).unwrap_or(i64::MAX);
        OrderItemOut {
            kind: OrderItemTag,
            id: &item.id,
            product_id: item.product_id.as_str(),
            name: &item.name,
            sku: &item.sku,
            location: (item.location != NO_LOCATION).then_some(item.location.as_str()),
            quantity: item.quantity.get(),
            meta: OrderItemMeta {
                display_price: LineDisplayPrice::new(unit.amount, value, &unit.currency),
            },
            value: MoneyOut {
                amount: value,
                ..unit.clone()
            },
            unit_price: unit,
            relationships: OrderItemRelationships {
                order: OrderRelation {
                    data: Relation {
                        kind: "order",
                        id: order_id,
                    },
                },
            },
        }
    }

    pub fn all(order: &'a Order) -> Vec<Self> {
        order
            .items
            .iter()
            .map(|i| OrderItemOut::new(&order.id, i))
            .collect()
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderMeta {
    display_price: OrderDisplayPrice,
    timestamps: Timestamps,
}

/// An order's totals, and where its payment stands, as Elastic Path shows them: `paid` (taken
/// by purchases and captures, less refunds), `authorized` (reserved by an authorization not
/// yet captured or voided) and `balance_owing` (the total less what was taken and what is
/// authorized; a refund does not make it owing again).
#[derive(Serialize, ToSchema)]
pub struct OrderDisplayPrice {
    #[serde(flatten)]
    totals: TotalPrices,
    paid: DisplayPrice,
    authorized: DisplayPrice,
    balance_owing: DisplayPrice,
}

impl OrderDisplayPrice {
    pub fn of(o: &Order) -> Self {
        let total = o.total.amount_minor();
        let currency = o.total.currency();
        let currency = currency.as_str();
        let authorized = match o.state.payment {
            Payment::Authorized => total,
            _ => 0,
        };
        let paid = o.paid_gross.saturating_sub(o.refunded).max(0);
        let owing = total
            .saturating_sub(o.paid_gross)
            .saturating_sub(authorized)
            .max(0);
        OrderDisplayPrice {
            totals: TotalPrices::new(total, currency),
            paid: DisplayPrice::new(paid, currency),
            authorized: DisplayPrice::new(authorized, currency),
            balance_owing: DisplayPrice::new(owing, currency),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderItemsRelation<'a> {
    data: Vec<Relation<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct OrderRelationships<'a> {
    items: OrderItemsRelation<'a>,
    /// The customer the order is for, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: Option<OrderRelation<'a>>,
}

/// Elastic Path's order `links`: none here.
#[derive(Serialize, ToSchema)]
pub struct NoLinks {}

#[derive(Serialize, ToSchema)]
#[schema(as = Order)]
pub struct OrderOut<'a> {
    #[serde(rename = "type")]
    kind: OrderTag,
    #[schema(value_type = String)]
    id: &'a str,
    #[schema(value_type = String)]
    status: &'static str,
    #[schema(value_type = String)]
    payment: &'static str,
    #[schema(value_type = String)]
    shipping: &'static str,
    /// As sent at checkout.
    #[schema(value_type = Option<Object>)]
    customer: Option<&'a RawValue>,
    #[schema(value_type = Option<Object>)]
    billing_address: Option<&'a RawValue>,
    #[schema(value_type = Option<Object>)]
    shipping_address: Option<&'a RawValue>,
    /// Set through `PUT /v2/orders/{id}`; left out until set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    order_number: Option<&'a str>,
    /// Set through `PUT /v2/orders/{id}`; left out until set.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    external_ref: Option<&'a str>,
    links: NoLinks,
    meta: OrderMeta,
    relationships: OrderRelationships<'a>,
}

/// Stored customer and address JSON, as it was kept.
fn stored(raw: &str) -> Option<&RawValue> {
    serde_json::from_str(raw).ok()
}

impl<'a> OrderOut<'a> {
    pub fn new(o: &'a Order) -> Self {
        OrderOut {
            kind: OrderTag,
            id: &o.id,
            status: o.state.status.as_str(),
            payment: o.state.payment.as_str(),
            shipping: o.state.shipping.as_str(),
            customer: stored(&o.customer),
            billing_address: stored(&o.billing_address),
            shipping_address: stored(&o.shipping_address),
            order_number: o.order_number.as_deref(),
            external_ref: o.external_ref.as_deref(),
            links: NoLinks {},
            meta: OrderMeta {
                display_price: OrderDisplayPrice::of(o),
                timestamps: Timestamps {
                    created_at: o.created_at,
                    updated_at: o.updated_at,
                },
            },
            relationships: OrderRelationships {
                items: OrderItemsRelation {
                    data: o
                        .items
                        .iter()
                        .map(|i| Relation {
                            kind: "item",
                            id: &i.id,
                        })
                        .collect(),
                },
                customer: o.customer_id.as_deref().map(|id| OrderRelation {
                    data: Relation {
                        kind: "customer",
                        id,
                    },
                }),
            },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Included<'a> {
    items: Vec<OrderItemOut<'a>>,
}

/// `GET /v2/orders/{id}`, with the items under `included` when asked.
#[derive(Serialize, ToSchema)]
pub struct OrderAnswer<'a> {
    data: OrderOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    included: Option<Included<'a>>,
}

impl<'a> OrderAnswer<'a> {
    pub fn new(order: &'a Order, include: Include) -> Self {
        OrderAnswer {
            data: OrderOut::new(order),
            included: include.items.then(|| Included {
                items: OrderItemOut::all(order),
            }),
        }
    }
}

/// `GET /v2/orders`: a page of orders, with their items under `included` when asked.
#[derive(Serialize)]
pub struct OrderList<'a> {
    #[serde(flatten)]
    list: List<OrderOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    included: Option<Included<'a>>,
}

impl<'a> OrderList<'a> {
    pub fn new(
        orders: &'a [Order],
        include: Include,
        page: impl FnOnce(Vec<OrderOut<'a>>) -> List<OrderOut<'a>>,
    ) -> Self {
        OrderList {
            list: page(orders.iter().map(OrderOut::new).collect()),
            included: include.items.then(|| Included {
                items: orders.iter().flat_map(OrderItemOut::all).collect(),
            }),
        }
    }
}

impl IntoResponse for OrderList<'_> {
    fn into_response(self) -> Response {
        axum::Json(self).into_response()
    }
}

impl PartialSchema for OrderList<'_> {
    fn schema() -> RefOr<Schema> {
        fields::with_constraints(
            List::<OrderOut>::schema(),
            json!({"type": "object", "properties": {
                "included": {"$ref": "#/components/schemas/Included"},
            }}),
        )
    }
}

impl ToSchema for OrderList<'_> {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        List::<OrderOut>::schemas(schemas);
        component::<Included>(schemas);
    }
}
