//! Locations (Elastic Path's multi-location inventory) and the writes that change a product's
//! records at several locations at once.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};
use stockroom_domain::{Action, ProductId, Quantity, Stock, Timestamp};

use crate::error::StoreError;
use crate::exec::{args, Get};
use crate::model::*;
use crate::writer::{figure, Batch};

macro_rules! location_columns {
    () => {
        "id, slug, name, external_ref, description, address, lat, lon, created_at, updated_at"
    };
}

fn location_row(row: &AnyRow) -> Result<Location, StoreError> {
    let address: String = row.try_get("address")?;
    let lat: Option<f64> = row.try_get("lat")?;
    let lon: Option<f64> = row.try_get("lon")?;
    Ok(Location {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        external_ref: row.try_get("external_ref")?,
        description: row.try_get("description")?,
        address: serde_json::from_str(&address)
            .map_err(|e| StoreError::Internal(format!("stored address: {e}")))?,
        geolocation: lat.zip(lon),
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

pub(crate) async fn locations(pool: &AnyPool, page: Page) -> Result<Paged<Location>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        location_columns!(),
        " FROM locations WHERE id <> '' ORDER BY slug LIMIT $1 OFFSET $2"
    ))
    .bind(figure(page.limit))
    .bind(figure(page.offset))
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM locations WHERE id <> ''")
        .fetch_one(pool)
        .await?;
    Ok(Paged {
        items: rows.iter().map(location_row).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

pub(crate) async fn location(pool: &AnyPool, id: &str) -> Result<Option<Location>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        location_columns!(),
        " FROM locations WHERE id = $1 AND id <> ''"
    ))
    .bind(id.to_owned())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(location_row).transpose()
}

pub(crate) async fn location_by_slug(
    pool: &AnyPool,
    slug: &str,
) -> Result<Option<Location>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        location_columns!(),
        " FROM locations WHERE slug = $1 AND id <> ''"
    ))
    .bind(slug.to_owned())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(location_row).transpose()
}

/// Replaces a location's fields. Its slug may change only while it holds no stock (so history
/// and records keep naming one place): `StoreError::Conflict` otherwise, or if the slug is taken.
pub(crate) async fn update_location(
    pool: &AnyPool,
    location: &Location,
) -> Result<Option<Location>, StoreError> {
    let done = sqlx::query(
        "UPDATE locations SET slug = $2, name = $3, external_ref = $4, description = $5, \
         address = $6, lat = CASE WHEN $10 = 1 THEN $7 END, lon = CASE WHEN $10 = 1 THEN $8 END, \
         updated_at = $9 \
         WHERE id = $1 AND id <> '' AND (slug = $2 OR NOT EXISTS \
         (SELECT 1 FROM stock WHERE stock.location = locations.slug))",
    )
    .bind(location.id.clone())
    .bind(location.slug.clone())
    .bind(location.name.clone())
    .bind(location.external_ref.clone())
    .bind(location.description.clone())
    .bind(serde_json::to_string(&location.address).unwrap_or_else(|_| "[]".into()))
    .bind(point(location).0)
    .bind(point(location).1)
    .bind(location.updated_at.micros())
    .bind(point(location).2)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return match self::location(pool, &location.id).await? {
            Some(_) => Err(StoreError::Conflict),
            None => Ok(None),
        };
    }
    self::location(pool, &location.id).await
}

/// A location's point as always-present numbers and a flag: sqlx's `Any` driver declares a
/// missing `f64` with another type, and PostgreSQL then refuses a later real number on the
/// same prepared statement ("incorrect binary data format"), so no `Option<f64>` is ever bound.
fn point(l: &Location) -> (f64, f64, i64) {
    match l.geolocation {
        Some((lat, lon)) => (lat, lon, 1),
        None => (0.0, 0.0, 0),
    }
}

/// Whether a location with this slug exists (always, for no location).
pub(crate) async fn exists(batch: &mut Batch<'_>, slug: &str) -> Result<bool, StoreError> {
    if slug == NO_LOCATION {
        return Ok(true);
    }
    let row = batch
        .fetch_optional("SELECT id FROM locations WHERE slug = $1", args![slug])
        .await?;
    Ok(row.is_some())
}

pub(crate) async fn execute(
    batch: &mut Batch<'_>,
    command: &Command,
) -> Result<Outcome, StoreError> {
    Ok(match command {
        Command::CreateLocation(l) => {
            let done = batch.execute("INSERT INTO locations (id, slug, name, external_ref, description, address, lat, \
                 lon, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, \
                 CASE WHEN $10 = 1 THEN $7 END, CASE WHEN $10 = 1 THEN $8 END, $9, $9) \
                 ON CONFLICT DO NOTHING", args![&l.id, &l.slug, &l.name, &l.external_ref, &l.description, serde_json::to_string(&l.address).unwrap_or_else(|_| "[]".into()), point(l).0, point(l).1, batch.now.micros(), point(l).2])
            .await?;
            if done == 0 {
                Outcome::Refused(Rejection::LocationInUse)
            } else {
                Outcome::Applied(Effect::Location(l.id.clone()))
            }
        }
        Command::DeleteLocation { id } => {
            let row = batch
                .fetch_optional(
                    "SELECT slug FROM locations WHERE id = $1 AND id <> ''",
                    args![id],
                )
                .await?;
            let Some(row) = row else {
                return Ok(Outcome::Refused(Rejection::NotFound));
            };
            let slug: String = row.col("slug")?;
            let held: i64 = batch
                .fetch_optional(
                    "SELECT COUNT(*) AS n FROM stock WHERE location = $1",
                    args![&slug],
                )
                .await?
                .map(|row| row.col("n"))
                .transpose()?
                .unwrap_or(0);
            if held > 0 || batch.holds_stock_at(&slug) {
                return Ok(Outcome::Refused(Rejection::LocationInUse));
            }
            // A record created at this location by another instance meanwhile makes this
            // fail on the foreign key: the batch is re-run and then sees it.
            batch
                .execute("DELETE FROM locations WHERE id = $1", args![id])
                .await?;
            Outcome::Applied(Effect::Location(id.clone()))
        }
        _ => return Err(StoreError::Internal("not a location command".into())),
    })
}

/// A step of [`set_locations`]: what to write at one location.
struct Step {
    location: String,
    action: Action,
    quantity: u64,
    after: Option<Stock>,
}

/// Elastic Path's per-location update of a product's stock: all changes, or none.
pub(crate) async fn set_locations(
    batch: &mut Batch<'_>,
    product: &ProductId,
    changes: &[(String, Option<Quantity>)],
) -> Result<Outcome, StoreError> {
    use Outcome::Refused;
    if !batch.managed(product) {
        return Ok(Refused(Rejection::NotFound));
    }
    for (location, _) in changes {
        if !exists(batch, location).await? {
            return Ok(Refused(Rejection::NotFound));
        }
    }
    let mut steps = Vec::with_capacity(changes.len());
    for (location, change) in changes {
        let step = match (batch.stock(product, location)?, change) {
            (Some(stock), Some(available)) => {
                let total = stock.allocated() + available.get();
                let Ok(q) = Quantity::new(i64::try_from(total).unwrap_or(-1)) else {
                    return Ok(Refused(Rejection::Stock(
                        stockroom_domain::Refusal::TotalTooLarge,
                    )));
                };
                match stock.apply(Action::Set, q) {
                    Ok(after) => Step {
                        location: location.clone(),
                        action: Action::Set,
                        quantity: total,
                        after: Some(after),
                    },
                    Err(refusal) => return Ok(Refused(Rejection::Stock(refusal))),
                }
            }
            (None, Some(available)) => Step {
                location: location.clone(),
                action: Action::Create,
                quantity: available.get(),
                after: Some(Stock::created(*available)),
            },
            (Some(stock), None) if stock.allocated() > 0 => {
                return Ok(Refused(Rejection::HasAllocations))
            }
            (Some(stock), None) => Step {
                location: location.clone(),
                action: Action::Delete,
                quantity: stock.total(),
                after: None,
            },
            (None, None) => continue,
        };
        steps.push(step);
    }
    for s in steps {
        batch.replace(product, &s.location, s.action, s.quantity, s.after);
    }
    Ok(Outcome::Applied(Effect::Stock(product.clone())))
}
