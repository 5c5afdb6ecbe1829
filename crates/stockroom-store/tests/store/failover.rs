//! Bounded waits on PostgreSQL (issue 17): a database that stops answering — a stalled path,
//! a lock that is not released, a statement or transaction past the server's timeouts — is
//! "unavailable" within the store's deadline, never a hang and never a storage error, and a
//! write whose outcome was unknown is applied exactly once by its retry with the same key.

use std::time::{Duration, Instant};

use stockroom_domain::{Action, Adjustment};
use stockroom_store::testing::{Backend, StallProxy};
use stockroom_store::{
    Command, HistoryQuery, IdempotencyKey, OpenOptions, Outcome, Page, SqlStore, Store, StoreError,
    WriteRequest, NO_LOCATION,
};

use crate::support::{clock, database, product, units};

const DEADLINE: Duration = Duration::from_millis(400);
/// The deadline, plus room for a busy machine; far below a hang.
const ANSWER_WITHIN: Duration = Duration::from_millis(2500);

async fn open_bounded(url: &str) -> std::sync::Arc<SqlStore> {
    let options = OpenOptions {
        statement_timeout: DEADLINE,
        acquire_timeout: DEADLINE,
        write_lanes: 2,
        pool_size: 2,
        ..OpenOptions::default()
    };
    SqlStore::open(url, options, clock())
        .await
        .expect("the store opens")
}

fn increment(id: &str, n: i64, key: &str) -> WriteRequest {
    WriteRequest {
        command: Command::Transact {
            product: product(id),
            location: NO_LOCATION.into(),
            adjustment: Adjustment::of(Action::Increment, units(n)),
            order_id: None,
            reason: None,
        },
        idempotency: Some(IdempotencyKey {
            scope: "POST /v2/inventories/hot/transactions admin".into(),
            key: key.into(),
            fingerprint: format!("increment {n}"),
        }),
    }
}

/// `call`'s answer; a failure, not a hang, if there is none within 30 s.
async fn answered<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("an answer, not a hang")
}

async fn create(store: &SqlStore, id: &str, n: i64) {
    let created = store
        .execute(WriteRequest::new(Command::Create {
            product: product(id),
            records: vec![(NO_LOCATION.into(), units(n).into())],
        }))
        .await
        .expect("created");
    assert!(matches!(created.outcome, Outcome::Applied(_)));
}

/// Retries `request` until it is answered (as a client retrying with its key would); panics if
/// it is still unavailable after `within`.
async fn retried(store: &SqlStore, request: &WriteRequest, within: Duration) -> Outcome {
    let give_up = Instant::now() + within;
    loop {
        match store.execute(request.clone()).await {
            Ok(answer) => return answer.outcome,
            Err(StoreError::Unavailable(_)) if Instant::now() < give_up => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("a retry after recovery: {other:?}"),
        }
    }
}

async fn increments(store: &SqlStore, id: &str) -> u64 {
    let query = HistoryQuery {
        action: Some(Action::Increment),
        ..HistoryQuery::default()
    };
    let page = Page {
        limit: 100,
        offset: 0,
    };
    store
        .history(&product(id), &query, page)
        .await
        .expect("history")
        .total
}

/// The path to the database stalls (bytes dropped, nothing closed): a write, a read and the
/// readiness check are each answered "unavailable" within the deadline instead of hanging;
/// once the path is back the store serves again by itself, and the write retried with its
/// key is applied exactly once whatever became of the first attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_path_is_unavailable_within_the_deadline_and_recovers_on_postgres() {
    let Some((_dir, url)) = database(Backend::Postgres).await else {
        return;
    };
    let proxy = StallProxy::start(&url).await.expect("a proxy");
    let store = open_bounded(&proxy.url).await;
    create(&store, "hot", 10).await;
    store.ping().await.expect("ready before the stall");

    proxy.stall();
    let write = increment("hot", 3, "k-stalled");
    let started = Instant::now();
    let answer = answered(store.execute(write.clone())).await;
    assert!(
        matches!(answer, Err(StoreError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(started.elapsed() < ANSWER_WITHIN, "{:?}", started.elapsed());
    let started = Instant::now();
    let read = answered(store.stock(&product("hot"))).await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    assert!(started.elapsed() < ANSWER_WITHIN, "{:?}", started.elapsed());
    let started = Instant::now();
    let ready = answered(store.ping()).await;
    assert!(
        matches!(ready, Err(StoreError::Unavailable(_))),
        "{ready:?}"
    );
    assert!(started.elapsed() < ANSWER_WITHIN, "{:?}", started.elapsed());

    proxy.flow();
    let outcome = retried(&store, &write, Duration::from_secs(10)).await;
    assert!(matches!(outcome, Outcome::Applied(_)), "{outcome:?}");
    store.ping().await.expect("ready after the stall");
    let stock = store
        .stock(&product("hot"))
        .await
        .expect("a read")
        .expect("the stock");
    assert_eq!(stock.total, 13, "the increment applied exactly once");
    assert_eq!(increments(&store, "hot").await, 1);
    let report = store.verify().await.expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// Another session holds the stock record's lock and never lets go: the write waiting for it
/// is answered "unavailable" within the deadline (the server's `statement_timeout` and the
/// writer's own deadline), the writer is free again for other products meanwhile, and the
/// retry with the same key after the lock is released applies once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_on_a_lock_that_is_never_released_is_unavailable_in_time_on_postgres() {
    let Some((_dir, url)) = database(Backend::Postgres).await else {
        return;
    };
    let name = format!("stockroom_lock_{}", uuid::Uuid::new_v4().simple());
    let store = open_bounded(&format!("{url}&application_name={name}")).await;
    create(&store, "held", 5).await;
    create(&store, "free", 5).await;
    let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("a connection");
    let connection = tokio::spawn(connection);
    holder
        .batch_execute("BEGIN; SELECT 1 FROM stock WHERE product_id = 'held' FOR UPDATE")
        .await
        .expect("the lock");

    let write = increment("held", 2, "k-locked");
    let started = Instant::now();
    let answer = answered(store.execute(write.clone())).await;
    assert!(
        matches!(answer, Err(StoreError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(started.elapsed() < ANSWER_WITHIN, "{:?}", started.elapsed());
    let other = store
        .execute(increment("free", 1, "k-free"))
        .await
        .expect("another product is written meanwhile");
    assert!(matches!(other.outcome, Outcome::Applied(_)));
    // The server gave up the lock wait too (the session's `statement_timeout`): no session of
    // the store still waits for the lock, which the holder still has.
    let (watcher, watching) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("a connection");
    let watching = tokio::spawn(watching);
    let give_up = Instant::now() + ANSWER_WITHIN;
    loop {
        let waiting: i64 = watcher
            .query_one(
                "SELECT count(*) AS n FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .await
            .expect("activity")
            .get("n");
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < give_up,
            "a session still waits for the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(watcher);
    let _ = watching.await;

    holder.batch_execute("ROLLBACK").await.expect("released");
    drop(holder);
    let _ = connection.await;
    let outcome = retried(&store, &write, Duration::from_secs(10)).await;
    assert!(matches!(outcome, Outcome::Applied(_)), "{outcome:?}");
    let again = store.execute(write).await.expect("a replay");
    assert!(matches!(again.outcome, Outcome::Applied(_)));
    let stock = store
        .stock(&product("held"))
        .await
        .expect("a read")
        .expect("the stock");
    assert_eq!(stock.total, 7, "applied exactly once");
    assert_eq!(increments(&store, "held").await, 1);
}

/// The server's own timeouts end a statement or a transaction left idle, and the store calls
/// both "unavailable" (503, try again), never a storage error (500).
#[tokio::test]
async fn the_servers_statement_and_idle_transaction_timeouts_are_unavailable_on_postgres() {
    let Some((_dir, url)) = database(Backend::Postgres).await else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("a connection");
    let connection = tokio::spawn(connection);
    let cancelled = client
        .batch_execute("SET statement_timeout = 50; SELECT pg_sleep(2)")
        .await
        .expect_err("cancelled by statement_timeout");
    let e = StoreError::from(cancelled);
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    client
        .batch_execute("SET idle_in_transaction_session_timeout = 50; BEGIN")
        .await
        .expect("a transaction");
    // The subject of the test: the transaction is left idle past the server's timeout.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let ended = client
        .batch_execute("SELECT 1")
        .await
        .expect_err("the session was ended");
    let e = StoreError::from(ended);
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    drop(client);
    let _ = connection.await;
}
