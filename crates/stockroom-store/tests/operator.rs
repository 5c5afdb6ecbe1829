//! The operators' reads (`OperatorStore`): the dashboard's stock overview with its filters and
//! keyset paging, the chart's series, and the bulk reads of `stockroom export`, on SQLite and
//! PostgreSQL.

use std::sync::Arc;

use stockroom_domain::{
    Action, Adjustment, Clock, Currency, Money, Price, ProductId, Quantity, Timestamp,
};
use stockroom_store::testing::{fresh_database, Backend};
use stockroom_store::{
    Command, LevelFilter, Location, OpenOptions, OperatorStore, Outcome, Product, SqlStore,
    StockQuery, Store, WriteRequest, NO_LOCATION,
};

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_secs(1_800_000_000)
    }
}

fn id(s: &str) -> ProductId {
    ProductId::parse(s).expect("an id")
}

fn q(n: i64) -> Quantity {
    Quantity::new(n).expect("a quantity")
}

async fn apply(store: &SqlStore, command: Command) {
    let answer = store
        .execute(WriteRequest::new(command.clone()))
        .await
        .expect("a write");
    assert!(
        matches!(answer.outcome, Outcome::Applied(_)),
        "{command:?}: {answer:?}"
    );
}

/// Products: `mug-1` (Blue mug, 3 available), `mug-2` (Red mug, 0 available: all allocated),
/// `pan` (Pan, 50 at no location and 4 at wh-a), `bare` (no catalog record, 8).
async fn seeded(backend: Backend, dir: &std::path::Path) -> Option<Arc<SqlStore>> {
    let url = fresh_database(backend, dir).await?;
    let store = SqlStore::open(&url, OpenOptions::default(), Arc::new(FixedClock))
        .await
        .expect("open");
    apply(
        &store,
        Command::CreateLocation(Location {
            id: "loc-a".into(),
            slug: "wh-a".into(),
            name: "Warehouse A".into(),
            external_ref: None,
            description: None,
            address: Vec::new(),
            geolocation: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }),
    )
    .await;
    for (pid, sku, name) in [
        ("mug-1", "MUG-B", "Blue Mug"),
        ("mug-2", "MUG-R", "Red Mug"),
        ("pan", "PAN-1", "Pan"),
    ] {
        apply(
            &store,
            Command::CreateProduct(Product {
                id: id(pid),
                sku: sku.into(),
                name: name.into(),
                price: Price {
                    amount: Money::new(100, Currency::parse("GBP").expect("a code"))
                        .expect("in range"),
                    includes_tax: false,
                },
                created_at: Timestamp(0),
                updated_at: Timestamp(0),
            }),
        )
        .await;
    }
    for (pid, n) in [("mug-1", 3), ("mug-2", 2), ("pan", 50), ("bare", 8)] {
        apply(
            &store,
            Command::Create {
                product: id(pid),
                records: vec![(NO_LOCATION.into(), q(n).into())],
            },
        )
        .await;
    }
    apply(
        &store,
        Command::SetLocations {
            product: id("pan"),
            changes: vec![("wh-a".into(), Some(q(4).into()))],
        },
    )
    .await;
    apply(
        &store,
        Command::Transact {
            product: id("mug-2"),
            location: NO_LOCATION.into(),
            adjustment: Adjustment::of(Action::Allocate, q(2)),
            order_id: None,
            reason: None,
        },
    )
    .await;
    Some(store)
}

async fn ids(store: &SqlStore, query: StockQuery, limit: u64) -> (Vec<String>, u64) {
    let page = store.stock_overview(&query, limit).await.expect("overview");
    (
        page.items
            .iter()
            .map(|r| r.product_id.to_string())
            .collect(),
        page.total,
    )
}

#[tokio::test]
async fn the_overview_filters_searches_and_pages_on_sqlite() {
    the_overview_filters_searches_and_pages(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_overview_filters_searches_and_pages_on_postgres() {
    the_overview_filters_searches_and_pages(Backend::Postgres).await;
}

async fn the_overview_filters_searches_and_pages(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let Some(store) = seeded(backend, dir.path()).await else {
        return;
    };
    let all = StockQuery::default();
    assert_eq!(
        ids(&store, all.clone(), 10).await,
        (
            vec!["bare".into(), "mug-1".into(), "mug-2".into(), "pan".into()],
            4
        )
    );
    let page = store.stock_overview(&all, 10).await.expect("overview");
    let pan = page
        .items
        .iter()
        .find(|r| r.product_id.as_str() == "pan")
        .expect("pan");
    assert_eq!(
        (pan.total, pan.allocated, pan.records, pan.name.as_str()),
        (54, 0, 2, "Pan")
    );
    let bare = &page.items[0];
    assert_eq!(
        (bare.sku.as_str(), bare.name.as_str()),
        ("", ""),
        "no catalog record"
    );

    let search = |s: &str| StockQuery {
        search: s.into(),
        ..StockQuery::default()
    };
    assert_eq!(
        ids(&store, search("mug"), 10).await.0,
        ["mug-1", "mug-2"],
        "by id and name"
    );
    assert_eq!(
        ids(&store, search("mug-r"), 10).await.0,
        ["mug-2"],
        "by SKU, any case"
    );
    assert_eq!(
        ids(&store, search("blue"), 10).await.0,
        ["mug-1"],
        "by name"
    );
    assert_eq!(
        ids(&store, search("%"), 10).await.1,
        4,
        "a wildcard is taken literally (dropped)"
    );
    assert_eq!(
        ids(&store, search("nothing"), 10).await,
        (Vec::<String>::new(), 0)
    );

    let level = |l: LevelFilter| StockQuery {
        level: l,
        ..StockQuery::default()
    };
    assert_eq!(
        ids(&store, level(LevelFilter::Low(5)), 10).await.0,
        ["mug-1"],
        "low: 1 to 5 available"
    );
    assert_eq!(
        ids(&store, level(LevelFilter::Low(8)), 10).await.0,
        ["bare", "mug-1"]
    );
    assert_eq!(
        ids(&store, level(LevelFilter::Out), 10).await.0,
        ["mug-2"],
        "out: none available"
    );

    let at = StockQuery {
        location: Some("wh-a".into()),
        ..StockQuery::default()
    };
    let page = store.stock_overview(&at, 10).await.expect("overview");
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (page.items[0].total, page.items[0].records),
        (4, 1),
        "the location's own figures"
    );
    let low_there = StockQuery {
        location: Some("wh-a".into()),
        level: LevelFilter::Low(5),
        ..StockQuery::default()
    };
    assert_eq!(
        ids(&store, low_there, 10).await.0,
        ["pan"],
        "low at the location, not in sum"
    );

    let (first, total) = ids(&store, all.clone(), 2).await;
    assert_eq!(
        (first.as_slice(), total),
        (["bare".to_owned(), "mug-1".to_owned()].as_slice(), 4)
    );
    let next = StockQuery {
        after: Some(id("mug-1")),
        ..all
    };
    assert_eq!(
        ids(&store, next, 2).await,
        (vec!["mug-2".into(), "pan".into()], 4),
        "keyset paging"
    );
}

#[tokio::test]
async fn the_series_and_bulk_reads_cover_every_record_and_entry_on_sqlite() {
    the_series_and_bulk_reads_cover_every_record_and_entry(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_series_and_bulk_reads_cover_every_record_and_entry_on_postgres() {
    the_series_and_bulk_reads_cover_every_record_and_entry(Backend::Postgres).await;
}

async fn the_series_and_bulk_reads_cover_every_record_and_entry(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let Some(store) = seeded(backend, dir.path()).await else {
        return;
    };
    for _ in 0..5 {
        apply(
            &store,
            Command::Transact {
                product: id("pan"),
                location: NO_LOCATION.into(),
                adjustment: Adjustment::of(Action::Increment, q(1)),
                order_id: None,
                reason: None,
            },
        )
        .await;
    }
    // pan: create (no location), create at wh-a, five increments. The last 3 entries, and
    // before them the latest entry of each location (the wh-a create, the second increment).
    let series = store
        .history_series(&id("pan"), None, 3)
        .await
        .expect("series");
    let seen: Vec<(String, u64)> = series
        .iter()
        .map(|e| (e.location.clone(), e.after.total()))
        .collect();
    let expected: Vec<(String, u64)> = vec![
        ("wh-a".into(), 4),
        ("".into(), 52),
        ("".into(), 53),
        ("".into(), 54),
        ("".into(), 55),
    ];
    assert_eq!(seen, expected);
    let at_a = store
        .history_series(&id("pan"), Some("wh-a"), 10)
        .await
        .expect("series");
    assert_eq!(at_a.len(), 1);

    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .stock_records_after(after.as_ref(), 2)
            .await
            .expect("records");
        let Some(last) = page.last() else { break };
        after = Some((last.product_id.clone(), last.location.clone()));
        records.extend(
            page.into_iter()
                .map(|r| format!("{}@{}", r.product_id, r.location)),
        );
    }
    assert_eq!(
        records,
        ["bare@", "mug-1@", "mug-2@", "pan@", "pan@wh-a"],
        "every record once, in key order"
    );

    let mut seq = 0;
    let mut entries = 0;
    loop {
        let page = store.history_after(seq, 3).await.expect("history");
        let Some(last) = page.last() else { break };
        assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
        seq = last.seq;
        entries += page.len();
    }
    let verified = store.verify().await.expect("verify");
    assert_eq!(entries as u64, verified.entries_checked, "every entry once");
}
