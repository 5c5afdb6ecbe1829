//! Locations (Elastic Path's multi-location inventory): the reads, the slugs a batch knows to
//! exist ([`Slugs`]), and the location commands.

use std::collections::BTreeSet;

use crate::error::StoreError;
use crate::exec::{args, Conn, Reader, Row};
use crate::model::*;
use crate::rows::{self, figure, location_columns};

/// The location slugs a batch named that exist, as the batch has left them.
#[derive(Default)]
pub(crate) struct Slugs(BTreeSet<String>);

impl Slugs {
    /// The rows of `Dialect::slugs_of`.
    pub fn read(rows: &[Row]) -> Result<Slugs, StoreError> {
        Ok(Slugs(
            rows.iter()
                .map(|r| r.col("slug"))
                .collect::<Result<_, _>>()?,
        ))
    }

    /// Whether a location with this slug exists (always, for no location).
    pub fn exists(&self, slug: &str) -> bool {
        slug == NO_LOCATION || self.0.contains(slug)
    }
}

fn address_json(l: &Location) -> String {
    serde_json::to_string(&l.address).unwrap_or_else(|_| "[]".into())
}

/// Applies a location command with statements of its own. `holds_stock` says whether the
/// batch has left a stock record at a slug (records it has not written yet included).
pub(crate) async fn apply_location_command(
    conn: Conn<'_>,
    now: i64,
    slugs: &mut Slugs,
    holds_stock: impl Fn(&str) -> bool,
    command: &Command,
) -> Result<Outcome, StoreError> {
    match command {
        Command::CreateLocation(l) => create(conn, now, slugs, l).await,
        Command::DeleteLocation { id } => delete(conn, slugs, holds_stock, id).await,
        _ => Err(StoreError::Internal("not a location command".into())),
    }
}

async fn create(
    conn: Conn<'_>,
    now: i64,
    slugs: &mut Slugs,
    l: &Location,
) -> Result<Outcome, StoreError> {
    let (lat, lon) = l.geolocation.unzip();
    let done = conn
        .run(
            "INSERT INTO locations (id, slug, name, external_ref, description, address, lat, \
             lon, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
             ON CONFLICT DO NOTHING",
            args![
                &l.id,
                &l.slug,
                &l.name,
                &l.external_ref,
                &l.description,
                address_json(l),
                lat,
                lon,
                now
            ],
        )
        .await?;
    if done == 0 {
        return Ok(Outcome::Refused(Rejection::LocationInUse));
    }
    slugs.0.insert(l.slug.clone());
    Ok(Outcome::Applied(Effect::Location(l.id.clone())))
}

async fn delete(
    conn: Conn<'_>,
    slugs: &mut Slugs,
    holds_stock: impl Fn(&str) -> bool,
    id: &str,
) -> Result<Outcome, StoreError> {
    let row = conn
        .row(
            "SELECT slug FROM locations WHERE id = $1 AND id <> ''",
            args![id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Outcome::Refused(Rejection::NotFound));
    };
    let slug: String = row.col("slug")?;
    let held = rows::count(
        conn.row(
            "SELECT COUNT(*) AS n FROM stock WHERE location = $1",
            args![&slug],
        )
        .await?,
    )?;
    if held > 0 || holds_stock(&slug) {
        return Ok(Outcome::Refused(Rejection::LocationInUse));
    }
    // A record created at this location by another instance meanwhile makes this fail on
    // the foreign key: the batch is re-run and then sees it.
    conn.run("DELETE FROM locations WHERE id = $1", args![id])
        .await?;
    slugs.0.remove(&slug);
    Ok(Outcome::Applied(Effect::Location(id.to_owned())))
}

// ---- reads, and the one write outside the writer --------------------------------------------

pub(crate) async fn locations(db: &Reader, page: Page) -> Result<Paged<Location>, StoreError> {
    let rows = db
        .rows(
            concat!(
                "SELECT ",
                location_columns!(),
                " FROM locations WHERE id <> '' ORDER BY slug LIMIT $1 OFFSET $2"
            ),
            args![figure(page.limit), figure(page.offset)],
        )
        .await?;
    let total = rows::count(
        db.row(
            "SELECT COUNT(*) AS n FROM locations WHERE id <> ''",
            args![],
        )
        .await?,
    )?;
    Ok(Paged {
        items: rows.iter().map(rows::location).collect::<Result<_, _>>()?,
        total,
    })
}

pub(crate) async fn location(db: &Reader, id: &str) -> Result<Option<Location>, StoreError> {
    let row = db
        .row(
            concat!(
                "SELECT ",
                location_columns!(),
                " FROM locations WHERE id = $1 AND id <> ''"
            ),
            args![id],
        )
        .await?;
    row.as_ref().map(rows::location).transpose()
}

pub(crate) async fn location_by_slug(
    db: &Reader,
    slug: &str,
) -> Result<Option<Location>, StoreError> {
    let row = db
        .row(
            concat!(
                "SELECT ",
                location_columns!(),
                " FROM locations WHERE slug = $1 AND id <> ''"
            ),
            args![slug],
        )
        .await?;
    row.as_ref().map(rows::location).transpose()
}

/// Replaces a location's fields. Its slug may change only while it holds no stock (so history
/// and records keep naming one place): [`StoreError::AlreadyExists`] otherwise, or if the slug
/// is taken.
pub(crate) async fn update_location(
    db: &Reader,
    location: &Location,
) -> Result<Option<Location>, StoreError> {
    let (lat, lon) = location.geolocation.unzip();
    let updated = db
        .run(
            "UPDATE locations SET slug = $2, name = $3, external_ref = $4, description = $5, \
             address = $6, lat = $7, lon = $8, updated_at = $9 \
             WHERE id = $1 AND id <> '' AND (slug = $2 OR NOT EXISTS \
             (SELECT 1 FROM stock WHERE stock.location = locations.slug))",
            args![
                &location.id,
                &location.slug,
                &location.name,
                &location.external_ref,
                &location.description,
                address_json(location),
                lat,
                lon,
                location.updated_at.micros()
            ],
        )
        .await;
    let done = match updated {
        // the new slug is taken
        Err(StoreError::RaceLost(_)) => return Err(StoreError::AlreadyExists),
        other => other?,
    };
    if done == 0 {
        return match self::location(db, &location.id).await? {
            Some(_) => Err(StoreError::AlreadyExists),
            None => Ok(None),
        };
    }
    self::location(db, &location.id).await
}
