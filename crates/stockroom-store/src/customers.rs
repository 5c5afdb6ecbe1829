//! Customers (Elastic Path's customer resource): single statements outside the writer, as
//! product updates are — they touch no stock and no other row. The email is unique (the
//! database's constraint decides a race); the password is kept only as an argon2 hash, made
//! by the caller.

use stockroom_domain::Timestamp;

use crate::error::StoreError;
use crate::exec::{args, Reader, Row};
use crate::model::*;

const COLUMNS: &str = "id, name, email, password_hash, created_at, updated_at";

fn customer_of(r: &Row) -> Result<Customer, StoreError> {
    Ok(Customer {
        id: r.col("id")?,
        name: r.col("name")?,
        email: r.col("email")?,
        password_hash: r.col("password_hash")?,
        created_at: Timestamp(r.col("created_at")?),
        updated_at: Timestamp(r.col("updated_at")?),
    })
}

/// A taken email is [`StoreError::AlreadyExists`].
fn taken(e: StoreError) -> StoreError {
    match e {
        StoreError::RaceLost(_) => StoreError::AlreadyExists,
        other => other,
    }
}

pub(crate) async fn create(db: &Reader, c: &Customer) -> Result<(), StoreError> {
    let done = db
        .run(
            "INSERT INTO customers (id, name, email, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
            args![
                &c.id,
                &c.name,
                &c.email,
                &c.password_hash,
                c.created_at.micros()
            ],
        )
        .await
        .map_err(taken)?;
    match done {
        0 => Err(StoreError::AlreadyExists),
        _ => Ok(()),
    }
}

pub(crate) async fn get(db: &Reader, id: &str) -> Result<Option<Customer>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE id = $1");
    db.row(&sql, args![id])
        .await?
        .as_ref()
        .map(customer_of)
        .transpose()
}

pub(crate) async fn by_email(db: &Reader, email: &str) -> Result<Option<Customer>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM customers WHERE email = $1");
    db.row(&sql, args![email])
        .await?
        .as_ref()
        .map(customer_of)
        .transpose()
}

pub(crate) async fn list(db: &Reader, page: Page) -> Result<Paged<Customer>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM customers ORDER BY created_at, id LIMIT $1 OFFSET $2");
    let rows = db
        .rows(&sql, args![figure(page.limit), figure(page.offset)])
        .await?;
    let total: i64 = db
        .row("SELECT COUNT(*) AS n FROM customers", args![])
        .await?
        .map(|r| r.col("n"))
        .transpose()?
        .unwrap_or(0);
    Ok(Paged {
        items: rows.iter().map(customer_of).collect::<Result<_, _>>()?,
        total: u64::try_from(total).unwrap_or(0),
    })
}

pub(crate) async fn update(
    db: &Reader,
    id: &str,
    patch: &CustomerPatch,
    now: Timestamp,
) -> Result<Option<Customer>, StoreError> {
    let done = db
        .run(
            "UPDATE customers SET name = COALESCE(CAST($2 AS TEXT), name), \
             email = COALESCE(CAST($3 AS TEXT), email), \
             password_hash = COALESCE(CAST($4 AS TEXT), password_hash), updated_at = $5 \
             WHERE id = $1",
            args![
                id,
                &patch.name,
                &patch.email,
                &patch.password_hash,
                now.micros()
            ],
        )
        .await
        .map_err(taken)?;
    if done == 0 {
        return Ok(None);
    }
    get(db, id).await
}

pub(crate) async fn delete(db: &Reader, id: &str) -> Result<bool, StoreError> {
    Ok(db
        .run("DELETE FROM customers WHERE id = $1", args![id])
        .await?
        > 0)
}

fn figure(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
