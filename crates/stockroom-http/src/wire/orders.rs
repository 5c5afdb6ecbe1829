//! Checkout and orders (wire-contract §6).

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use stockroom_domain::order::{Payment, Shipping, Status};
use stockroom_store::{Command, Order, OrderItem, OrderQuery, NO_LOCATION};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::fields::{self, Customer, Party};
use super::{line_value, tag, FilterTerm, LineDisplayPrice, MoneyOut, Relation, Timestamps};
use super::{DisplayPrice, TotalPrices};

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

/// `PUT /v2/orders/{id}`: exactly one of `shipping: fulfilled` (ships) and `status: cancelled`.
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
}

fn fulfilled_schema() -> Schema {
    fields::to_schema(fields::constant("fulfilled"))
}

fn cancelled_schema() -> Schema {
    fields::to_schema(fields::constant("cancelled"))
}

#[derive(Deserialize)]
#[serde(transparent)]
pub struct OrderUpdate(pub OrderUpdateFields);

impl OrderUpdate {
    /// The command it asks for; `None` unless exactly one change is asked.
    pub fn command(&self, order_id: String) -> Option<Command> {
        match (self.0.shipping, self.0.status) {
            (Some(Fulfilled), None) => Some(Command::Ship { order_id }),
            (None, Some(Cancelled)) => Some(Command::Cancel { order_id }),
            _ => None,
        }
    }
}

impl PartialSchema for OrderUpdate {
    fn schema() -> RefOr<Schema> {
        fields::with_constraints(
            OrderUpdateFields::schema(),
            // Both present match both: `oneOf` refuses that too.
            json!({"oneOf": [
                {"type": "object", "required": ["shipping"]},
                {"type": "object", "required": ["status"]},
            ]}),
        )
    }
}

impl ToSchema for OrderUpdate {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        OrderUpdateFields::schemas(schemas);
    }
}

/// A term of the order list's filter.
pub enum OrderTerm {
    Status(Status),
    Payment(Payment),
    Shipping(Shipping),
}

impl FilterTerm for OrderTerm {
    const SUPPORTS: &'static str =
        "`eq(status|payment|shipping,<value>)`, terms joined by `:` (at most 8)";
    fn parse(op: &str, field: &str, value: &str) -> Result<Self, String> {
        let unknown = || format!("unknown {field} {value:?}");
        match (op, field) {
            ("eq", "status") => Status::parse(value).map(OrderTerm::Status),
            ("eq", "payment") => Payment::parse(value).map(OrderTerm::Payment),
            ("eq", "shipping") => Shipping::parse(value).map(OrderTerm::Shipping),
            _ => return Err(format!("unknown term {op}({field},…)")),
        }
        .ok_or_else(unknown)
    }
}

pub fn order_query(terms: &[OrderTerm]) -> OrderQuery {
    let mut query = OrderQuery::default();
    for term in terms {
        match term {
            OrderTerm::Status(s) => query.status = Some(*s),
            OrderTerm::Payment(p) => query.payment = Some(*p),
            OrderTerm::Shipping(s) => query.shipping = Some(*s),
        }
    }
    query
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

/// An order's totals as Elastic Path shows them: with and without tax, the tax, what is paid,
/// what is authorized (not yet captured) and what is still owed.
#[derive(Serialize, ToSchema)]
pub struct OrderDisplayPrice {
    #[serde(flatten)]
    totals: TotalPrices,
    paid: DisplayPrice,
    authorized: DisplayPrice,
    balance_owing: DisplayPrice,
}

impl OrderDisplayPrice {
    fn of(o: &Order) -> Self {
        let currency = o.total.currency();
        let (total, currency) = (o.total.amount_minor(), currency.as_str());
        let (paid, authorized) = match o.state.payment {
            Payment::Paid => (total, 0),
            Payment::Authorized => (0, total),
            Payment::Unpaid => (0, 0),
        };
        OrderDisplayPrice {
            totals: TotalPrices::of(&o.total),
            paid: DisplayPrice::new(paid, currency),
            authorized: DisplayPrice::new(authorized, currency),
            balance_owing: DisplayPrice::new(total - paid, currency),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct OrderMeta {
    display_price: OrderDisplayPrice,
    timestamps: Timestamps,
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

/// `GET /v2/orders`' query as documented: a page, a filter, and `include=items` (read by two
/// extractors: [`ListQuery`] and [`IncludeQuery`]).
pub struct OrderListParams;

impl utoipa::IntoParams for OrderListParams {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut params = super::ListQuery::<OrderTerm>::into_params(&parameter_in);
        params.extend(IncludeQuery::into_params(&parameter_in));
        params
    }
}

/// A page of orders, with every item of the page's orders under `included.items` when asked.
#[derive(Serialize)]
pub struct OrderList<'a> {
    #[serde(flatten)]
    pub list: super::List<OrderOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub included: Option<Included<'a>>,
}

impl<'a> OrderList<'a> {
    pub fn new(list: super::List<OrderOut<'a>>, orders: &'a [Order], include: Include) -> Self {
        OrderList {
            list,
            included: include.items.then(|| Included {
                items: orders.iter().flat_map(OrderItemOut::all).collect(),
            }),
        }
    }
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
