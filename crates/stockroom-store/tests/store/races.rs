//! Races with real concurrency and exact counts: two store instances over one PostgreSQL
//! database, each with several writer lanes.

use std::collections::BTreeMap;
use std::sync::Arc;

use stockroom_domain::order::PaymentMethod;
use stockroom_domain::{Action, Adjustment, Timestamp};
use stockroom_store::testing::{run_on, Backend};
use stockroom_store::{
    CartLine, Command, HistoryQuery, NewOrder, NewPayment, OpenOptions, Outcome, Page, Rejection,
    SqlStore, Store, StoreError, WriteRequest, NO_LOCATION,
};

use crate::support::{clock, database, open, product, units};

async fn write(store: &SqlStore, command: Command) -> Result<Outcome, StoreError> {
    store
        .execute(WriteRequest::new(command))
        .await
        .map(|a| a.outcome)
}

fn add(cart: &str, lines: &[(&str, i64)]) -> Command {
    Command::AddToCart {
        cart_id: cart.into(),
        lines: lines
            .iter()
            .map(|(p, n)| CartLine {
                product: product(p),
                location: NO_LOCATION.into(),
                quantity: units(*n),
            })
            .collect(),
        custom: Vec::new(),
    }
}

fn create(id: &str, n: i64) -> Command {
    Command::Create {
        product: product(id),
        records: vec![(NO_LOCATION.into(), units(n).into())],
    }
}

/// Two instances adding to one cart at once: the cart is locked in each batch, so the second
/// sees the first's units and lines and its limits hold — one add is applied, the other
/// refused (never a constraint violation, never an error).
#[tokio::test]
async fn two_instances_adding_to_one_cart_never_pass_its_limits_on_postgres() {
    let Some((_dir, url)) = database(Backend::Postgres).await else {
        return;
    };
    let (a, b) = (open(&url).await, open(&url).await);
    write(&a, create("big", 1_000_000_000))
        .await
        .expect("stock");
    for t in 0..30 {
        let cart = format!("units-{t}");
        let (x, y) = tokio::join!(
            write(&a, add(&cart, &[("big", 600_000_000)])),
            write(&b, add(&cart, &[("big", 600_000_000)])),
        );
        let mut outcomes = [x.expect("no error"), y.expect("no error")];
        outcomes.sort_by_key(|o| matches!(o, Outcome::Refused(_)));
        assert!(matches!(outcomes[0], Outcome::Applied(_)), "{outcomes:?}");
        assert_eq!(outcomes[1], Outcome::Refused(Rejection::CartLimit));
        let found = a.cart(&cart).await.expect("a read").expect("the cart");
        assert_eq!(found.items[0].quantity, 600_000_000);
    }
    // Lines of products with no stock (not stock-managed): only the line count limits them.
    for t in 0..10 {
        let cart = format!("lines-{t}");
        let names: Vec<String> = (0..96).map(|i| format!("line-{i}")).collect();
        let lines: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        assert!(matches!(
            write(&a, add(&cart, &lines)).await.expect("96 lines"),
            Outcome::Applied(_)
        ));
        let (x, y) = tokio::join!(
            write(&a, add(&cart, &[("x-1", 1), ("x-2", 1), ("x-3", 1)])),
            write(&b, add(&cart, &[("y-1", 1), ("y-2", 1), ("y-3", 1)])),
        );
        let refused = [x.expect("no error"), y.expect("no error")]
            .into_iter()
            .filter(|o| *o == Outcome::Refused(Rejection::CartLimit))
            .count();
        assert_eq!(refused, 1, "one of the two adds fits");
        let found = a.cart(&cart).await.expect("a read").expect("the cart");
        assert_eq!(found.items.len(), 99);
    }
}

fn level(n: i64) -> stockroom_domain::StockLevel {
    stockroom_domain::StockLevel::new(n).expect("a level")
}

fn bulk(cart: &str, items: &[(&str, i64)]) -> Command {
    Command::UpdateCartItems {
        cart_id: cart.into(),
        items: items
            .iter()
            .map(|(i, n)| ((*i).to_owned(), level(*n)))
            .collect(),
    }
}

/// The quantity of each of a cart's items, by product.
async fn quantities(store: &SqlStore, cart: &str) -> BTreeMap<String, u64> {
    let found = store.cart(cart).await.expect("a read").expect("the cart");
    found
        .items
        .iter()
        .map(|i| (i.product_id.as_str().to_owned(), i.quantity))
        .collect()
}

/// Two instances updating one cart's items in bulk at once: each update is applied whole, so
/// the cart ends exactly as one of them left it (never one item from each); and an update one
/// of whose items asks for more than is available is refused whole, whatever the other does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_updating_one_cart_in_bulk_apply_each_whole_on_postgres() {
    let Some((_dir, url)) = database(Backend::Postgres).await else {
        return;
    };
    let (a, b) = (open(&url).await, open(&url).await);
    write(&a, create("mug", 10)).await.expect("stock");
    write(&a, create("pan", 2)).await.expect("stock");
    for t in 0..30 {
        // Both fit: both applied, in some order; the cart is one of the two, whole.
        let cart = format!("bulk-{t}");
        let [mug, pan] = cart_of(&a, &cart).await;
        let (x, y) = tokio::join!(
            write(&a, bulk(&cart, &[(&mug, 4), (&pan, 2)])),
            write(&b, bulk(&cart, &[(&mug, 7), (&pan, 1)])),
        );
        assert!(matches!(x.expect("no error"), Outcome::Applied(_)));
        assert!(matches!(y.expect("no error"), Outcome::Applied(_)));
        let now = quantities(&a, &cart).await;
        let first = BTreeMap::from([("mug".to_owned(), 4), ("pan".to_owned(), 2)]);
        let second = BTreeMap::from([("mug".to_owned(), 7), ("pan".to_owned(), 1)]);
        assert!(
            now == first || now == second,
            "a mix of two updates: {now:?}"
        );
        // One asks for 3 pans (2 available): refused whole, the other applied.
        let cart = format!("refused-{t}");
        let [mug, pan] = cart_of(&a, &cart).await;
        let (x, y) = tokio::join!(
            write(&a, bulk(&cart, &[(&mug, 5)])),
            write(&b, bulk(&cart, &[(&mug, 9), (&pan, 3)])),
        );
        assert!(matches!(x.expect("no error"), Outcome::Applied(_)));
        assert_eq!(
            y.expect("no error"),
            Outcome::Refused(Rejection::OutOfStock)
        );
        let expected = BTreeMap::from([("mug".to_owned(), 5), ("pan".to_owned(), 1)]);
        assert_eq!(quantities(&a, &cart).await, expected);
    }
}

/// A cart holding one mug and one pan: the two items' ids.
async fn cart_of(store: &SqlStore, cart: &str) -> [String; 2] {
    let outcome = write(store, add(cart, &[("mug", 1), ("pan", 1)]))
        .await
        .expect("add");
    assert!(matches!(outcome, Outcome::Applied(_)));
    let found = store.cart(cart).await.expect("a read").expect("the cart");
    ["mug", "pan"].map(|p| {
        found
            .items
            .iter()
            .find(|i| i.product_id.as_str() == p)
            .map(|i| i.id.clone())
            .expect("an item")
    })
}

/// A tiny deterministic generator: each client's choices are fixed by its number.
fn picks(seed: u64, round: u64, products: u64) -> [u64; 3] {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(round * 1_442_695_040_888_963_407 + 1);
    [0, 1, 2].map(|_| {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 29;
        x % products
    })
}

/// One shopper: for each round, a cart of three picks (one unit each), checkout, and payment.
/// Returns the units of each paid order, per product.
async fn shopper(store: Arc<SqlStore>, client: u64, rounds: u64) -> Vec<BTreeMap<String, u64>> {
    let mut paid = Vec::new();
    for round in 0..rounds {
        let cart = format!("cart-{client}-{round}");
        let names: Vec<String> = picks(client, round, PRODUCTS)
            .iter()
            .map(|i| format!("p-{i}"))
            .collect();
        let lines: Vec<(&str, i64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let outcome = write(&store, add(&cart, &lines)).await.expect("no error");
        if !matches!(outcome, Outcome::Applied(_)) {
            continue;
        }
        let order = format!("order-{client}-{round}");
        let checkout = Command::Checkout(NewOrder {
            id: order.clone(),
            cart_id: cart,
            customer_id: None,
            customer: "{}".into(),
            billing_address: "{}".into(),
            shipping_address: "{}".into(),
        });
        if !matches!(
            write(&store, checkout).await.expect("no error"),
            Outcome::Applied(_)
        ) {
            continue;
        }
        let pay = Command::Pay {
            order_id: order,
            payment: NewPayment {
                id: format!("payment-{client}-{round}"),
                gateway: "manual".into(),
                method: PaymentMethod::Purchase,
                expires_at: Timestamp(0),
            },
            settled: true,
            gateway_enabled: true,
        };
        match write(&store, pay).await.expect("no error") {
            Outcome::Applied(_) => {
                let mut units = BTreeMap::new();
                for name in names {
                    *units.entry(name).or_default() += 1;
                }
                paid.push(units);
            }
            Outcome::Refused(Rejection::OutOfStock) => {}
            other => panic!("a payment answered {other:?}"),
        }
    }
    paid
}

const PRODUCTS: u64 = 12;
const STOCK_EACH: i64 = 25;

/// Many shoppers on two instances, each with several lanes, paying for three-line orders over
/// a dozen products: exactly the paid units are allocated, never more than is in stock, one
/// `allocate` entry per paid order and product, and no error (no deadlock) reaches anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_race_across_lanes_and_instances_allocates_exactly_what_was_paid_on_postgres() {
    let Some((_dir, url)) = database(Backend::Postgres).await else {
        return;
    };
    let options = OpenOptions {
        write_lanes: 4,
        ..OpenOptions::default()
    };
    let a = SqlStore::open(&url, options.clone(), clock())
        .await
        .expect("a");
    let b = SqlStore::open(&url, options, clock()).await.expect("b");
    for i in 0..PRODUCTS {
        write(&a, create(&format!("p-{i}"), STOCK_EACH))
            .await
            .expect("stock");
    }
    let shoppers = (0..32u64).map(|client| {
        let store = if client % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        tokio::spawn(shopper(store, client, 12))
    });
    let mut paid: BTreeMap<String, u64> = BTreeMap::new();
    let mut lines = 0u64;
    for shopper in futures::future::join_all(shoppers).await {
        for order in shopper.expect("a shopper finished") {
            lines += order.len() as u64;
            for (name, n) in order {
                *paid.entry(name).or_default() += n;
            }
        }
    }
    let mut entries = 0u64;
    for i in 0..PRODUCTS {
        let name = format!("p-{i}");
        let id = product(&name);
        let stock = a.stock(&id).await.expect("a read").expect("stock");
        assert_eq!(stock.total, STOCK_EACH as u64);
        assert_eq!(
            stock.allocated,
            paid.get(&name).copied().unwrap_or(0),
            "{name}"
        );
        let query = HistoryQuery {
            action: Some(Action::Allocate),
            ..HistoryQuery::default()
        };
        let page = Page {
            limit: 1,
            offset: 0,
        };
        entries += a.history(&id, &query, page).await.expect("history").total;
    }
    assert_eq!(
        entries, lines,
        "one allocate entry per paid order and product"
    );
    assert!(lines > 0, "some orders were paid");
    let report = a.verify().await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// Connections terminated under load (as when PostgreSQL restarts): every failure a caller
/// sees says "unavailable" (a 503 with Retry-After), none is a storage error, and the store
/// serves again afterwards; every acknowledged increment is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_unavailable_never_internal_on_postgres() {
    let Some((_dir, url)) = database(Backend::Postgres).await else {
        return;
    };
    let name = format!("stockroom_kill_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{url}&application_name={name}");
    let store = open(&url).await;
    write(&store, create("hot", 1)).await.expect("stock");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (url, name, stop) = (url.clone(), name.clone(), stop.clone());
        tokio::spawn(async move {
            let kill = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = '{name}'"
            );
            let mut kills = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(40)).await;
                run_on(&url.replace(&name, "stockroom_killer"), &kill)
                    .await
                    .expect("terminate");
                kills += 1;
            }
            kills
        })
    };
    let increment = || Command::Transact {
        product: product("hot"),
        location: NO_LOCATION.into(),
        adjustment: Adjustment::of(Action::Increment, units(1)),
        order_id: None,
        reason: None,
    };
    let clients = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let (mut ok, mut unavailable) = (0u64, 0u64);
            for _ in 0..150 {
                match write(&store, increment()).await {
                    Ok(Outcome::Applied(_)) => ok += 1,
                    Err(StoreError::Unavailable(_)) => unavailable += 1,
                    other => panic!("under terminated connections: {other:?}"),
                }
                match store.stock(&product("hot")).await {
                    Ok(_) | Err(StoreError::Unavailable(_)) => {}
                    other => panic!("a read under terminated connections: {other:?}"),
                }
            }
            (ok, unavailable)
        })
    });
    let counts: Vec<(u64, u64)> = futures::future::join_all(clients)
        .await
        .into_iter()
        .map(|c| c.expect("a client finished"))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let kills = killer.await.expect("the killer finished");
    assert!(kills > 0);
    let ok: u64 = counts.iter().map(|c| c.0).sum();
    let unavailable: u64 = counts.iter().map(|c| c.1).sum();
    // Serves again once the terminations stop: a connection killed while idle in a pool is
    // found closed by the attempt that takes it (answered "unavailable", as a client would be,
    // and retried as a client would), never handed out again.
    let mut attempts = 0;
    let total = loop {
        attempts += 1;
        let served = async {
            write(&store, increment()).await?;
            let stock = store.stock(&product("hot")).await?;
            Ok::<_, StoreError>(stock.expect("stock").total)
        };
        match served.await {
            Ok(total) => break total,
            Err(StoreError::Unavailable(e)) if attempts < 5 => eprintln!("retrying: {e}"),
            Err(e) => panic!("does not serve again: {e:?}"),
        }
    };
    let acknowledged_after = attempts;
    // One unit at the start, and the ones after. An increment answered "unavailable" may have
    // committed (its commit's answer was lost).
    assert!(
        (ok + 2..=ok + 1 + acknowledged_after + unavailable).contains(&total),
        "{total} units for {ok} acknowledged and {unavailable} unavailable increments"
    );
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}
