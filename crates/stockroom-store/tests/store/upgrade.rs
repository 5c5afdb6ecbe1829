//! A database made by the release before refinery (its migrations recorded by sqlx in
//! `_sqlx_migrations`) opens, passes `verify`, and takes writes.

use stockroom_domain::order::{Payment, Shipping};
use stockroom_store::testing::{run_on, Backend};
use stockroom_store::{Command, Effect, IdempotencyKey, Outcome, Store, WriteRequest};

use crate::support::{database, open, product};

/// Rows as that release wrote them: a stock record and its history (a manual change, and an
/// order's allocation held by its paid purchase), a product, a cart, the order and its item,
/// and an idempotency record.
const DATA: &str = r#"
INSERT INTO stock (product_id, location, total, allocated, held, created_at, updated_at)
VALUES ('mug', '', 8, 2, 2, 1, 3);
INSERT INTO history (id, product_id, location, action, quantity, total, allocated, order_id,
                     reason, created_at)
VALUES ('h1', 'mug', '', 'create', 10, 10, 0, NULL, NULL, 1),
       ('h2', 'mug', '', 'decrement', 2, 8, 0, NULL, 'broken', 2),
       ('h3', 'mug', '', 'allocate', 2, 8, 2, 'o1', NULL, 3);
INSERT INTO products (id, sku, name, price_amount, currency, includes_tax, created_at, updated_at)
VALUES ('mug', 'MUG-1', 'Mug', 1299, 'USD', 0, 1, 1);
INSERT INTO carts (id, created_at, updated_at) VALUES ('c1', 1, 1);
INSERT INTO cart_items (id, cart_id, product_id, location, quantity, created_at, updated_at)
VALUES ('ci1', 'c1', 'mug', '', 2, 1, 1);
INSERT INTO orders (id, cart_id, status, payment, shipping, paying, customer, billing_address,
                    shipping_address, total_amount, currency, created_at, updated_at)
VALUES ('o1', 'c1', 'complete', 'paid', 'unfulfilled', NULL, '{}', '{}', '{}', 2598, 'USD', 2, 3);
INSERT INTO order_items (id, order_id, position, product_id, location, name, sku, quantity,
                         unit_amount, currency, includes_tax)
VALUES ('oi1', 'o1', 0, 'mug', '', 'Mug', 'MUG-1', 2, 1299, 'USD', 0);
INSERT INTO payments (id, order_id, position, gateway, transaction_type, status, amount, currency,
                      lines, allocation, failure, expires_at, created_at, updated_at)
VALUES ('p1', 'o1', 1, 'manual', 'purchase', 'complete', 2598, 'USD',
        '[{"product_id":"mug","location":"","quantity":2}]', 'held', NULL, 0, 3, 3);
INSERT INTO idempotency (scope, key, fingerprint, outcome, created_at)
VALUES ('POST /v2/inventories/mug/transactions', 'k1', 'f1', 'entry:h2', 2);
"#;

/// sqlx's record of the two migrations, as sqlx 0.8 creates it on SQLite.
const SQLX_SQLITE: &str = "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, \
     description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
     success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL); \
     INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
     VALUES (1, 'init', TRUE, X'00', 1), (2, 'orders', TRUE, X'00', 1);";

/// The same on PostgreSQL.
const SQLX_POSTGRES: &str = "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, \
     description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), \
     success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL); \
     INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
     VALUES (1, 'init', TRUE, '\\x00', 1), (2, 'orders', TRUE, '\\x00', 1);";

/// The previous release's database: its two migrations (the files are never edited once
/// released, so these are its very statements), sqlx's record of them, and its rows.
async fn previous_release_database(backend: Backend, url: &str) {
    let migrations = match backend {
        Backend::Sqlite => [
            include_str!("../../migrations/sqlite/V1__init.sql"),
            include_str!("../../migrations/sqlite/V2__orders.sql"),
            SQLX_SQLITE,
        ],
        Backend::Postgres => [
            include_str!("../../migrations/postgres/V1__init.sql"),
            include_str!("../../migrations/postgres/V2__orders.sql"),
            SQLX_POSTGRES,
        ],
    };
    let script = format!(
        "{}\n{}\n{}\n{DATA}",
        migrations[0], migrations[1], migrations[2]
    );
    match backend {
        Backend::Sqlite => {
            let path = url.trim_start_matches("sqlite://");
            let conn = rusqlite::Connection::open(path).expect("a new file");
            conn.execute_batch(&script)
                .expect("the previous release's schema");
        }
        Backend::Postgres => run_on(url, &script)
            .await
            .expect("the previous release's schema"),
    }
}

async fn a_database_made_by_the_previous_release_opens_and_passes_verify(backend: Backend) {
    let Some((_dir, url)) = database(backend).await else {
        return;
    };
    previous_release_database(backend, &url).await;
    let store = open(&url).await;
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.records_checked, report.entries_checked), (1, 3));

    let order = store.order("o1").await.expect("a read").expect("o1");
    assert_eq!(order.state.payment, Payment::Paid);
    assert_eq!(order.total.amount_minor(), 2598);
    let cart = store.cart("c1").await.expect("a read").expect("c1");
    assert_eq!(cart.items.len(), 1);

    // Its held allocation ships, through the new writer.
    let shipped = store
        .execute(WriteRequest::new(Command::Ship {
            order_id: "o1".into(),
        }))
        .await
        .expect("a write");
    assert!(
        matches!(shipped.outcome, Outcome::Applied(_)),
        "{shipped:?}"
    );
    let order = store.order("o1").await.expect("a read").expect("o1");
    assert_eq!(order.state.shipping, Shipping::Fulfilled);
    let stock = store
        .stock(&product("mug"))
        .await
        .expect("a read")
        .expect("stock");
    assert_eq!((stock.total, stock.allocated), (6, 0));
    // Its idempotency record still answers a repeated request with the first answer.
    let repeated = store
        .execute(WriteRequest {
            command: Command::Delete {
                product: product("mug"),
            },
            idempotency: Some(IdempotencyKey {
                scope: "POST /v2/inventories/mug/transactions".into(),
                key: "k1".into(),
                fingerprint: "f1".into(),
            }),
        })
        .await
        .expect("a write");
    assert!(repeated.replayed);
    assert!(
        matches!(&repeated.outcome, Outcome::Applied(Effect::Entry(e)) if e.id == "h2"),
        "{repeated:?}"
    );
    drop(store);

    // Opening it again finds every migration recorded (by refinery now) and changes nothing.
    let store = open(&url).await;
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.entries_checked, 4);
}

#[tokio::test]
async fn a_database_made_by_the_previous_release_opens_and_passes_verify_on_sqlite() {
    a_database_made_by_the_previous_release_opens_and_passes_verify(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_database_made_by_the_previous_release_opens_and_passes_verify_on_postgres() {
    a_database_made_by_the_previous_release_opens_and_passes_verify(Backend::Postgres).await;
}
