//! Carts and their items (wire-contract §5).

use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use stockroom_domain::limits::{
    CART_ADD_ITEMS_MAX, CART_DESCRIPTION_LEN_MAX, CART_ITEM_ID_LEN_MAX, CART_LINES_MAX,
    CART_NAME_LEN_MAX,
};
use stockroom_domain::{Currency, Money, Price, ProductId, Quantity, Slug, StockLevel, Timestamp};

use stockroom_store::{Cart, CartItem, DEFAULT_CART_NAME, NO_LOCATION};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::fields::{self, Bytes, Chars, Many, OneOrMany, UnitAmount};
use super::products::{Name, Sku};
use super::{
    line_value, tag, DisplayPrice, LineDisplayPrice, MoneyOut, Relation, Timestamps, TotalPrices,
};
use crate::error::ApiError;

tag!(CartTag, "cart");
tag!(CartItemTag, "cart_item");

/// What an item to add is: a catalog product (`cart_item`, the default) or a custom item.
#[derive(Deserialize, Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CartItemKind {
    CartItem,
    CustomItem,
}

/// A custom item's price: minor units, and the cart's currency unless given.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object {\"amount\": …}")]
pub struct CustomPrice {
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<UnitAmount>)]
    pub amount: UnitAmount,
    /// The cart's currency (USD for a cart with no priced item) when left out.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Currency>)]
    pub currency: Option<Currency>,
    #[serde(default)]
    pub includes_tax: Option<bool>,
}

/// One item to add: a product by `id` or by `sku`, a quantity, and where to sell it from; or
/// (`type: custom_item`) a custom item with its own `name`, `sku` and `price`, never
/// stock-managed.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct CartItemFields {
    #[serde(rename = "type", default)]
    pub kind: Option<CartItemKind>,
    /// A custom item's name.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Name>)]
    pub name: Option<Name>,
    /// A custom item's price.
    #[serde(default, deserialize_with = "fields::opt_object")]
    pub price: Option<CustomPrice>,
    /// The product's id.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<ProductId>)]
    pub id: Option<ProductId>,
    /// The product's SKU (when no id is sent).
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Sku>)]
    pub sku: Option<Sku>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Quantity>)]
    pub quantity: Quantity,
    /// The slug of the location to sell from.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Slug>)]
    pub location: Option<Slug>,
}

/// A cart item names its product by `id` or by `sku`.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct NewCartItem(pub CartItemFields);

impl PartialSchema for NewCartItem {
    fn schema() -> RefOr<Schema> {
        fields::with_constraints(
            CartItemFields::schema(),
            // Present and not null; a custom item needs its name and price instead.
            json!({"anyOf": [
                {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}}},
                {"type": "object", "required": ["type", "name", "price"],
                 "properties": {"type": {"type": "string", "enum": ["custom_item"]},
                                "name": {"type": "string"},
                                "price": {"type": "object"}}},
            ]}),
        )
    }
}

impl ToSchema for NewCartItem {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        CartItemFields::schemas(schemas);
    }
}

/// How a product is named in an add-to-cart request.
pub enum ProductRef {
    Id(ProductId),
    Sku(String),
}

/// A custom item as sent; its currency, when left out, is the cart's.
pub struct CustomItemIn {
    pub name: String,
    pub sku: String,
    pub amount: i64,
    pub currency: Option<Currency>,
    pub includes_tax: bool,
    pub quantity: Quantity,
}

impl NewCartItem {
    pub fn product(&self) -> Option<ProductRef> {
        match (&self.0.id, &self.0.sku) {
            (Some(id), _) => Some(ProductRef::Id(id.clone())),
            (None, Some(sku)) => Some(ProductRef::Sku(sku.0.clone())),
            (None, None) => None,
        }
    }

    /// The custom item this is, if its `type` is `custom_item` (`at`: its path, for errors).
    pub fn custom(&self, at: &str) -> Result<Option<CustomItemIn>, ApiError> {
        if self.0.kind != Some(CartItemKind::CustomItem) {
            return Ok(None);
        }
        let required =
            |f: &str| ApiError::invalid(format!("{at}.{f}"), format!("a custom item needs a {f}"));
        let name = self.0.name.as_ref().ok_or_else(|| required("name"))?;
        let price = self.0.price.as_ref().ok_or_else(|| required("price"))?;
        Ok(Some(CustomItemIn {
            name: name.0.clone(),
            sku: self.0.sku.as_ref().map(|s| s.0.clone()).unwrap_or_default(),
            amount: price.amount.0,
            currency: price.currency,
            includes_tax: price.includes_tax.unwrap_or(false),
            quantity: self.0.quantity,
        }))
    }
}

/// `POST /v2/carts/{cart}/items`: one item, or an array of them (all or nothing).
pub type NewCartItems = OneOrMany<NewCartItem, CART_ADD_ITEMS_MAX>;

/// `PUT /v2/carts/{cart}/items/{item}`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct CartItemUpdate {
    #[serde(rename = "type", default)]
    pub kind: Option<CartItemTag>,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Quantity>)]
    pub quantity: Quantity,
}

/// `POST /v2/carts` and `PUT /v2/carts/{id}`: a name and a description, each optional (a new
/// cart is named `Cart`). Elastic Path's other cart settings (discounts, preview dates) are
/// not kept.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct CartFields {
    #[serde(rename = "type", default)]
    pub kind: Option<CartTag>,
    /// 1 to 255 characters.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Chars<1, CART_NAME_LEN_MAX>>)]
    pub name: Option<Chars<1, CART_NAME_LEN_MAX>>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Bytes<CART_DESCRIPTION_LEN_MAX>>)]
    pub description: Option<Bytes<CART_DESCRIPTION_LEN_MAX>>,
}

/// One item of `PUT /v2/carts/{cart}/items`: its id and its new quantity (0 removes it).
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object {\"id\": …, \"quantity\": n}")]
pub struct CartItemQuantity {
    #[serde(rename = "type", default)]
    pub kind: Option<CartItemTag>,
    /// The cart item's id.
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Chars<1, CART_ITEM_ID_LEN_MAX>>)]
    pub id: Chars<1, CART_ITEM_ID_LEN_MAX>,
    /// The new quantity; 0 removes the item.
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<StockLevel>)]
    pub quantity: StockLevel,
}

/// `PUT /v2/carts/{cart}/items`: several items' quantities, all changed or none.
pub type CartItemQuantities = Many<CartItemQuantity, 1, CART_LINES_MAX>;

/// `include=items` on a cart (a comma-separated list; other names are ignored).
#[derive(Deserialize, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CartIncludeQuery {
    /// Related resources to include: `items` adds the cart's items under `included.items`.
    #[serde(default)]
    #[param(value_type = Option<String>, pattern = "^[^\\u0000]*$")]
    pub include: Option<super::orders::Include>,
}

// ---- answers -----------------------------------------------------------------------------------

/// A cart item's price: from the catalog, or zero in `currency` when the product has no record.
pub fn item_price(item: &CartItem, currency: Currency) -> Price {
    item.product.as_ref().map(|p| p.price).unwrap_or(Price {
        amount: Money::zero(currency),
        includes_tax: false,
    })
}

/// The currency of a cart: that of its priced items (one per cart), else USD.
pub fn cart_currency(cart: Option<&Cart>) -> Currency {
    cart.and_then(|c| c.items.iter().find_map(|i| i.product.as_ref()))
        .map(|p| p.price.amount.currency())
        .unwrap_or(Currency::USD)
}

#[derive(Serialize, ToSchema)]
pub struct CartItemLinks {
    #[serde(rename = "self")]
    this: String,
    product: String,
}

#[derive(Serialize, ToSchema)]
pub struct CartItemMeta {
    display_price: LineDisplayPrice,
    timestamps: Timestamps,
}

#[derive(Serialize, ToSchema)]
#[schema(as = CartItem)]
pub struct CartItemOut<'a> {
    #[schema(value_type = String)]
    id: &'a str,
    #[serde(rename = "type")]
    kind: CartItemKind,
    /// A custom item's own id, for a custom item.
    #[schema(value_type = String)]
    product_id: &'a str,
    /// Empty for stock with no product record.
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(value_type = String)]
    sku: &'a str,
    quantity: u64,
    #[schema(value_type = Option<String>)]
    location: Option<&'a str>,
    /// Whether the product has a stock record.
    manage_stock: bool,
    unit_price: MoneyOut,
    value: MoneyOut,
    links: CartItemLinks,
    meta: CartItemMeta,
}

impl<'a> CartItemOut<'a> {
    pub fn new(cart_id: &str, item: &'a CartItem, currency: Currency) -> Self {
        let price = MoneyOut::from(&item_price(item, currency));
        let value = line_value(price.amount, item.quantity).unwrap_or(i64::MAX);
        let product = item.product.as_ref();
        CartItemOut {
            id: &item.id,
            kind: match item.custom {
                true => CartItemKind::CustomItem,
                false => CartItemKind::CartItem,
            },
            product_id: item.product_id.as_str(),
            name: product.map_or("", |p| p.name.as_str()),
            sku: product.map_or("", |p| p.sku.as_str()),
            quantity: item.quantity,
            location: (item.location != NO_LOCATION).then_some(item.location.as_str()),
            manage_stock: item.managed,
            meta: CartItemMeta {
                display_price: LineDisplayPrice::new(price.amount, value, &price.currency),
                timestamps: Timestamps {
                    created_at: item.created_at,
                    updated_at: item.updated_at,
                },
            },
            value: MoneyOut {
                amount: value,
                ..price.clone()
            },
            unit_price: price,
            links: CartItemLinks {
                this: format!("/v2/carts/{cart_id}/items/{}", item.id),
                product: format!("/v2/products/{}", item.product_id),
            },
        }
    }
}

/// A cart's totals as Elastic Path shows them: with and without tax, the tax, discounts and
/// shipping (Stockroom keeps no tax, discount or shipping: those are zero).
#[derive(Serialize, ToSchema)]
pub struct CartDisplayPrice {
    #[serde(flatten)]
    totals: TotalPrices,
    discount: DisplayPrice,
    without_discount: DisplayPrice,
    shipping: DisplayPrice,
}

/// A cart's times; it is purged at `expires_at` unless changed before.
#[derive(Serialize, ToSchema)]
pub struct CartTimestamps {
    #[serde(flatten)]
    times: Timestamps,
    #[serde(serialize_with = "super::time")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
}

/// A cart's totals and times.
#[derive(Serialize, ToSchema)]
pub struct CartMeta {
    display_price: CartDisplayPrice,
    timestamps: CartTimestamps,
}

impl CartMeta {
    fn new(cart: Option<&Cart>, now: Timestamp, expiry: Duration) -> Self {
        let currency = cart_currency(cart);
        let amount = cart
            .map(|c| {
                c.items.iter().try_fold(0i64, |sum, i| {
                    line_value(item_price(i, currency).amount.amount_minor(), i.quantity)
                        .and_then(|v| sum.checked_add(v))
                })
            })
            .unwrap_or(Some(0))
            .unwrap_or(i64::MAX);
        let (created_at, updated_at) = cart.map_or((now, now), |c| (c.created_at, c.updated_at));
        let expiry = i64::try_from(expiry.as_micros()).unwrap_or(i64::MAX);
        let expires_at = Timestamp(updated_at.micros().saturating_add(expiry));
        let currency = currency.as_str();
        CartMeta {
            display_price: CartDisplayPrice {
                totals: TotalPrices::new(amount, currency),
                discount: DisplayPrice::new(0, currency),
                without_discount: DisplayPrice::new(amount, currency),
                shipping: DisplayPrice::new(0, currency),
            },
            timestamps: CartTimestamps {
                times: Timestamps {
                    created_at,
                    updated_at,
                },
                expires_at,
            },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SelfLink {
    #[serde(rename = "self")]
    this: String,
}

#[derive(Serialize, ToSchema)]
pub struct Related<'a> {
    data: Vec<Relation<'a>>,
}

#[derive(Serialize, ToSchema)]
pub struct CartRelationships<'a> {
    items: Related<'a>,
}

/// `GET /v2/carts/{id}`: a cart that does not exist yet is shown empty.
#[derive(Serialize, ToSchema)]
#[schema(as = Cart)]
pub struct CartOut<'a> {
    #[schema(value_type = String)]
    id: &'a str,
    #[serde(rename = "type")]
    kind: CartTag,
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(value_type = String)]
    description: &'a str,
    links: SelfLink,
    relationships: CartRelationships<'a>,
    meta: CartMeta,
}

/// What `include=items` adds to a cart.
#[derive(Serialize, ToSchema)]
pub struct CartIncluded<'a> {
    items: Vec<CartItemOut<'a>>,
}

/// A cart, and with `include=items` its items under `included.items`.
#[derive(Serialize, ToSchema)]
pub struct CartAnswer<'a> {
    data: CartOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    included: Option<CartIncluded<'a>>,
}

impl<'a> CartAnswer<'a> {
    pub fn new(
        id: &'a str,
        cart: Option<&'a Cart>,
        now: Timestamp,
        expiry: Duration,
        items: bool,
    ) -> Self {
        let currency = cart_currency(cart);
        CartAnswer {
            data: CartOut::new(id, cart, now, expiry),
            included: items.then(|| CartIncluded {
                items: cart
                    .map(|c| {
                        c.items
                            .iter()
                            .map(|i| CartItemOut::new(id, i, currency))
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
        }
    }
}

impl<'a> CartOut<'a> {
    pub fn new(id: &'a str, cart: Option<&'a Cart>, now: Timestamp, expiry: Duration) -> Self {
        let items = cart
            .map(|c| {
                c.items
                    .iter()
                    .map(|i| Relation {
                        kind: "cart_item",
                        id: &i.id,
                    })
                    .collect()
            })
            .unwrap_or_default();
        CartOut {
            id,
            kind: CartTag,
            name: cart.map_or(DEFAULT_CART_NAME, |c| c.name.as_str()),
            description: cart.map_or("", |c| c.description.as_str()),
            links: SelfLink {
                this: format!("/v2/carts/{id}"),
            },
            relationships: CartRelationships {
                items: Related { data: items },
            },
            meta: CartMeta::new(cart, now, expiry),
        }
    }
}

/// The items of a cart, as add, update and `GET …/items` answer.
#[derive(Serialize, ToSchema)]
pub struct CartItems<'a> {
    data: Vec<CartItemOut<'a>>,
    meta: CartMeta,
}

impl<'a> CartItems<'a> {
    pub fn new(id: &str, cart: Option<&'a Cart>, now: Timestamp, expiry: Duration) -> Self {
        let currency = cart_currency(cart);
        CartItems {
            data: cart
                .map(|c| {
                    c.items
                        .iter()
                        .map(|i| CartItemOut::new(id, i, currency))
                        .collect()
                })
                .unwrap_or_default(),
            meta: CartMeta::new(cart, now, expiry),
        }
    }
}
