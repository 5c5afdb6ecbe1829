//! Stockroom's minimal catalog: products with a name, SKU and price.

use serde::{Deserialize, Serialize};
use stockroom_domain::limits::{PRODUCT_NAME_LEN_MAX, PRODUCT_SKU_LEN_MAX};
use stockroom_domain::{Currency, Money, Price, ProductId};
use stockroom_store::Product;
use utoipa::ToSchema;

use super::fields::{self, Bytes, Chars, Many, NonBlank, UnitAmount};
use super::{tag, DisplayPrice, MoneyOut, Timestamps};
use crate::error::ApiError;

tag!(ProductTag, "product");

pub type Name = NonBlank<PRODUCT_NAME_LEN_MAX>;
pub type Sku = NonBlank<PRODUCT_SKU_LEN_MAX>;

/// A price as sent: minor units, an ISO 4217 code, and whether tax is included.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object {\"amount\": …, \"currency\": …}")]
pub struct PriceIn {
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<UnitAmount>)]
    amount: UnitAmount,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Currency>)]
    currency: Currency,
    #[serde(default)]
    includes_tax: Option<bool>,
}

impl PriceIn {
    pub fn price(self) -> Result<Price, ApiError> {
        let amount = Money::new(self.amount.0, self.currency)
            .map_err(|e| ApiError::invalid("data.attributes.price.amount", format!("price {e}")))?;
        Ok(Price {
            amount,
            includes_tax: self.includes_tax.unwrap_or(false),
        })
    }
}

/// A legacy product's `status`.
#[derive(Deserialize, ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LegacyStatus {
    Live,
    Draft,
}

/// A legacy product's `commodity_type`.
#[derive(Deserialize, ToSchema, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
pub enum CommodityType {
    Physical,
    Digital,
}

/// `POST /v2/products`: today's shape (`attributes`), or Elastic Path's legacy flat product as
/// `@moltin/sdk`'s `Products.Create` sends it (`name`, `slug`, `sku`, `manage_stock`,
/// `price: [{amount, currency, includes_tax}]`, `status`, `commodity_type`, `description`).
/// Stockroom keeps one price per product; `slug`, `status`, `commodity_type` and
/// `description` are checked and not kept.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewProductBody {
    #[serde(rename = "type", default)]
    pub kind: Option<ProductTag>,
    /// Chosen by the client, or a UUID when left out.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<ProductId>)]
    pub id: Option<ProductId>,
    /// Today's shape; when left out, the legacy flat fields below.
    #[serde(default, deserialize_with = "fields::opt_object")]
    pub attributes: Option<NewProduct>,
    /// Legacy: the product's name.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Name>)]
    pub name: Option<Name>,
    /// Legacy: the product's SKU.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Sku>)]
    pub sku: Option<Sku>,
    /// Legacy: one price.
    #[serde(default)]
    #[schema(value_type = Option<Vec<PriceIn>>)]
    pub price: Option<Many<PriceIn, 1, 1>>,
    /// Legacy: whether Stockroom manages the product's stock (created at 0).
    #[serde(default)]
    pub manage_stock: Option<bool>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Chars<1, PRODUCT_SKU_LEN_MAX>>)]
    pub slug: Option<Chars<1, PRODUCT_SKU_LEN_MAX>>,
    #[serde(default)]
    pub status: Option<LegacyStatus>,
    #[serde(default)]
    pub commodity_type: Option<CommodityType>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Bytes<PRODUCT_NAME_LEN_MAX>>)]
    pub description: Option<Bytes<PRODUCT_NAME_LEN_MAX>>,
}

/// What a new product is, from either shape.
pub struct NewProductFields {
    pub name: String,
    pub sku: String,
    pub price: Price,
    pub manage_stock: bool,
}

impl NewProductBody {
    pub fn fields(self) -> Result<NewProductFields, ApiError> {
        if let Some(new) = self.attributes {
            return Ok(NewProductFields {
                name: new.name.0,
                sku: new.sku.0,
                price: new.price.price()?,
                manage_stock: false,
            });
        }
        let required = |f: &str| {
            ApiError::invalid(
                format!("data.{f}"),
                format!("send data.attributes, or the legacy product's {f}"),
            )
        };
        let name = self.name.ok_or_else(|| required("name"))?;
        let sku = self.sku.ok_or_else(|| required("sku"))?;
        let price = self.price.ok_or_else(|| required("price"))?;
        let price = price
            .0
            .into_iter()
            .next()
            .ok_or_else(|| required("price"))?;
        Ok(NewProductFields {
            name: name.0,
            sku: sku.0,
            price: price.price()?,
            manage_stock: self.manage_stock.unwrap_or(false),
        })
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewProduct {
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Name>)]
    pub name: Name,
    #[serde(deserialize_with = "fields::de")]
    #[schema(schema_with = fields::schema::<Sku>)]
    pub sku: Sku,
    #[serde(deserialize_with = "fields::object")]
    pub price: PriceIn,
}

/// `PUT /v2/products/{id}`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct ProductPatchBody {
    #[serde(rename = "type", default)]
    pub kind: Option<ProductTag>,
    #[serde(deserialize_with = "fields::object")]
    pub attributes: ProductPatchIn,
}

/// Changes to a product: a field left out (or `null`) is kept.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct ProductPatchIn {
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Name>)]
    pub name: Option<Name>,
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<Sku>)]
    pub sku: Option<Sku>,
    #[serde(default, deserialize_with = "fields::opt_object")]
    pub price: Option<PriceIn>,
}

// ---- answers -----------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct ProductAttributes<'a> {
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(value_type = String)]
    sku: &'a str,
    price: MoneyOut,
}

#[derive(Serialize, ToSchema)]
pub struct WithoutTax {
    without_tax: DisplayPrice,
}

/// Whether a product can be bought now.
#[derive(Serialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Availability {
    InStock,
    OutStock,
}

/// A stock-managed product's stock, as the legacy API showed it: what is available.
#[derive(Serialize, ToSchema)]
pub struct StockMeta {
    level: u64,
    availability: Availability,
}

#[derive(Serialize, ToSchema)]
pub struct ProductMeta {
    display_price: WithoutTax,
    timestamps: Timestamps,
    /// Present when the product's stock is managed.
    #[serde(skip_serializing_if = "Option::is_none")]
    stock: Option<StockMeta>,
}

/// A product: today's shape (`attributes`), with the legacy API's flat fields beside it
/// (`name`, `sku`, `manage_stock`, `price` as a list) for `@moltin/sdk`'s readers.
#[derive(Serialize, ToSchema)]
#[schema(as = Product)]
pub struct ProductOut<'a> {
    #[serde(rename = "type")]
    kind: ProductTag,
    #[schema(value_type = String)]
    id: &'a str,
    attributes: ProductAttributes<'a>,
    #[schema(value_type = String)]
    name: &'a str,
    #[schema(value_type = String)]
    sku: &'a str,
    manage_stock: bool,
    price: Vec<MoneyOut>,
    meta: ProductMeta,
}

impl<'a> ProductOut<'a> {
    /// `available`: the product's available stock, if its stock is managed.
    pub fn new(p: &'a Product, available: Option<u64>) -> Self {
        ProductOut {
            kind: ProductTag,
            id: p.id.as_str(),
            attributes: ProductAttributes {
                name: &p.name,
                sku: &p.sku,
                price: MoneyOut::from(&p.price),
            },
            name: &p.name,
            sku: &p.sku,
            manage_stock: available.is_some(),
            price: vec![MoneyOut::from(&p.price)],
            meta: ProductMeta {
                display_price: WithoutTax {
                    without_tax: DisplayPrice::of(&p.price.amount),
                },
                timestamps: Timestamps {
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                },
                stock: available.map(|level| StockMeta {
                    level,
                    availability: match level {
                        0 => Availability::OutStock,
                        _ => Availability::InStock,
                    },
                }),
            },
        }
    }
}
