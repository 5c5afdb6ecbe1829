//! The product catalog: the reads, the catalog records a batch has read ([`Catalog`]), and the
//! product commands.

use std::collections::HashMap;

use stockroom_domain::{ProductId, Timestamp};

use crate::dialect::product_columns;
use crate::error::StoreError;
use crate::exec::{args, Conn, Reader, Row};
use crate::model::*;
use crate::rows::{self, figure};

/// The catalog records of the products a batch adds to carts or checks out, as the batch has
/// left them.
#[derive(Default)]
pub(crate) struct Catalog(HashMap<ProductId, Product>);

impl Catalog {
    /// The rows of `Dialect::catalog_of`.
    pub fn read(rows: &[Row]) -> Result<Catalog, StoreError> {
        let mut catalog = HashMap::with_capacity(rows.len());
        for row in rows {
            let product = rows::product(row)?;
            catalog.insert(product.id.clone(), product);
        }
        Ok(Catalog(catalog))
    }

    /// A product's record, if it has one (`None`: stock with no catalog record).
    pub fn get(&self, id: &ProductId) -> Option<&Product> {
        self.0.get(id)
    }
}

/// Applies a product command with statements of its own.
pub(crate) async fn apply_product_command(
    conn: Conn<'_>,
    now: i64,
    catalog: &mut Catalog,
    command: &Command,
) -> Result<Outcome, StoreError> {
    match command {
        Command::CreateProduct(p) => create(conn, now, catalog, p).await,
        Command::DeleteProduct { product } => delete(conn, catalog, product).await,
        _ => Err(StoreError::Internal("not a product command".into())),
    }
}

async fn create(
    conn: Conn<'_>,
    now: i64,
    catalog: &mut Catalog,
    p: &Product,
) -> Result<Outcome, StoreError> {
    let done = conn
        .run(
            "INSERT INTO products (id, sku, name, price_amount, currency, includes_tax, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
             ON CONFLICT DO NOTHING",
            args![
                p.id.as_str(),
                &p.sku,
                &p.name,
                p.price.amount.amount_minor(),
                p.price.amount.currency().as_str(),
                i64::from(p.price.includes_tax),
                now
            ],
        )
        .await?;
    if done == 0 {
        return Ok(Outcome::Refused(Rejection::ProductTaken));
    }
    // Lines of it already in the batch's carts now have a price and a currency.
    catalog.0.insert(
        p.id.clone(),
        Product {
            created_at: Timestamp(now),
            updated_at: Timestamp(now),
            ..p.clone()
        },
    );
    Ok(Outcome::Applied(Effect::Product(p.id.clone())))
}

/// Removes a product and its lines in every cart. The carts are not locked: a batch that holds
/// one with a line of this product in memory may write that line back (a line of a product
/// with no catalog record, which the cart shows with an empty name and a zero price).
async fn delete(
    conn: Conn<'_>,
    catalog: &mut Catalog,
    product: &ProductId,
) -> Result<Outcome, StoreError> {
    let done = conn
        .run(
            "DELETE FROM products WHERE id = $1",
            args![product.as_str()],
        )
        .await?;
    if done == 0 {
        return Ok(Outcome::Refused(Rejection::NotFound));
    }
    conn.run(
        "DELETE FROM cart_items WHERE product_id = $1",
        args![product.as_str()],
    )
    .await?;
    catalog.0.remove(product);
    Ok(Outcome::Applied(Effect::Product(product.clone())))
}

// ---- reads, and the one write outside the writer --------------------------------------------

pub(crate) async fn product(db: &Reader, id: &str) -> Result<Option<Product>, StoreError> {
    let row = db
        .row(
            concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id = $1"
            ),
            args![id],
        )
        .await?;
    row.as_ref().map(rows::product).transpose()
}

pub(crate) async fn product_by_sku(db: &Reader, sku: &str) -> Result<Option<Product>, StoreError> {
    let row = db
        .row(
            concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE sku = $1"
            ),
            args![sku],
        )
        .await?;
    row.as_ref().map(rows::product).transpose()
}

pub(crate) async fn products(db: &Reader, page: Page) -> Result<Paged<Product>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                product_columns!(),
                " FROM products ORDER BY id LIMIT $1 OFFSET $2"
            ),
            args![figure(page.limit), figure(page.offset)],
        )
        .await?;
    let total = rows::count(
        db.row("SELECT COUNT(*) AS n FROM products", args![])
            .await?,
    )?;
    Ok(Paged {
        items: rows.iter().map(rows::product).collect::<Result<_, _>>()?,
        total,
    })
}

/// Changes a product's fields; [`StoreError::AlreadyExists`] when the new SKU is taken.
pub(crate) async fn update_product(
    db: &Reader,
    id: &ProductId,
    patch: &ProductPatch,
    now: Timestamp,
) -> Result<Option<Product>, StoreError> {
    let price = patch.price.as_ref();
    let updated = db
        .run(
            "UPDATE products SET sku = COALESCE(CAST($2 AS TEXT), sku), \
             name = COALESCE(CAST($3 AS TEXT), name), \
             price_amount = COALESCE(CAST($4 AS BIGINT), price_amount), \
             currency = COALESCE(CAST($5 AS TEXT), currency), \
             includes_tax = COALESCE(CAST($6 AS BIGINT), includes_tax), updated_at = $7 \
             WHERE id = $1",
            args![
                id.as_str(),
                &patch.sku,
                &patch.name,
                price.map(|p| p.amount.amount_minor()),
                price.map(|p| p.amount.currency().as_str().to_owned()),
                price.map(|p| i64::from(p.includes_tax)),
                now.micros()
            ],
        )
        .await;
    let done = match updated {
        Err(StoreError::RaceLost(_)) => return Err(StoreError::AlreadyExists),
        other => other?,
    };
    if done == 0 {
        return Ok(None);
    }
    product(db, id.as_str()).await
}
