//! Stockroom's minimal catalog: products with a name, SKU and price.

use serde::{Deserialize, Serialize};
use stockroom_domain::limits::{PRODUCT_NAME_LEN_MAX, PRODUCT_SKU_LEN_MAX};
use stockroom_domain::{Currency, Money, Price, ProductId};
use stockroom_store::Product;
use utoipa::ToSchema;

use super::fields::{self, NonBlank, UnitAmount};
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

/// `POST /v2/products`.
#[derive(Deserialize, ToSchema)]
#[serde(expecting = "an object")]
pub struct NewProductBody {
    #[serde(rename = "type", default)]
    pub kind: Option<ProductTag>,
    /// Chosen by the client, or a UUID when left out.
    #[serde(default, deserialize_with = "fields::opt")]
    #[schema(schema_with = fields::opt_schema::<ProductId>)]
    pub id: Option<ProductId>,
    #[serde(deserialize_with = "fields::object")]
    pub attributes: NewProduct,
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

#[derive(Serialize, ToSchema)]
pub struct ProductMeta {
    display_price: WithoutTax,
    timestamps: Timestamps,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Product)]
pub struct ProductOut<'a> {
    #[serde(rename = "type")]
    kind: ProductTag,
    #[schema(value_type = String)]
    id: &'a str,
    attributes: ProductAttributes<'a>,
    meta: ProductMeta,
}

impl<'a> ProductOut<'a> {
    pub fn new(p: &'a Product) -> Self {
        ProductOut {
            kind: ProductTag,
            id: p.id.as_str(),
            attributes: ProductAttributes {
                name: &p.name,
                sku: &p.sku,
                price: MoneyOut::from(&p.price),
            },
            meta: ProductMeta {
                display_price: WithoutTax {
                    without_tax: DisplayPrice::of(&p.price.amount),
                },
                timestamps: Timestamps {
                    created_at: p.created_at,
                    updated_at: p.updated_at,
                },
            },
        }
    }
}
