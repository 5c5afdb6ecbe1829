//! The transactional outbox (`EventStore`), on SQLite and PostgreSQL: jobs are committed with
//! the changes they report and only then, only for enabled integrations that observe them; the
//! dispatcher's claim hands out each stream's oldest job only, never one leased to someone
//! else, and again once a lease runs out; concurrent claimers never hold one job at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use stockroom_domain::{Action, Adjustment, Clock, ProductId, Quantity, Timestamp};
use stockroom_store::testing::{fresh_database, Backend};
use stockroom_store::{
    After, Attempt, Command, EventStore, Finished, Integration, IntegrationType, JobStatus,
    OpenOptions, Outcome, SqlStore, Store, WriteRequest, INTEGRATIONS_MAX, NO_LOCATION,
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

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Sqlite).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { super::$name(super::Backend::Postgres).await; })*
        }
    };
}

on_both!(
    jobs_are_written_with_the_changes_they_report,
    refused_writes_and_disabled_or_unobserving_integrations_get_no_jobs,
    each_stream_leaves_in_order_and_a_retry_holds_it_back,
    a_lapsed_lease_hands_the_job_out_again,
    concurrent_claimers_never_hold_one_job_at_once,
    integrations_are_capped,
    a_run_is_leased_whole_in_order_and_its_rest_given_back,
    a_run_stops_before_a_job_still_leased,
    a_run_is_recorded_in_one_write,
);

async fn open(backend: Backend, dir: &std::path::Path) -> Option<Arc<SqlStore>> {
    let url = fresh_database(backend, dir).await?;
    Some(
        SqlStore::open(&url, OpenOptions::default(), Arc::new(FixedClock))
            .await
            .expect("open"),
    )
}

fn integration(id: &str, enabled: bool, observes: &[&str]) -> Integration {
    Integration {
        id: id.into(),
        name: format!("integration {id}"),
        description: String::new(),
        enabled,
        integration_type: IntegrationType::Webhook,
        observes: observes.iter().map(|s| (*s).to_owned()).collect(),
        configuration: r#"{"url":"http://127.0.0.1:9/"}"#.into(),
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    }
}

async fn apply(store: &SqlStore, command: Command) -> bool {
    let answer = store
        .execute(WriteRequest::new(command))
        .await
        .expect("a write");
    matches!(answer.outcome, Outcome::Applied(_))
}

fn create(product: &str, n: i64) -> Command {
    Command::Create {
        product: id(product),
        records: vec![(NO_LOCATION.into(), q(n).into())],
    }
}

fn transact(product: &str, action: Action, n: i64) -> Command {
    Command::Transact {
        product: id(product),
        location: NO_LOCATION.into(),
        adjustment: Adjustment::of(action, q(n)),
        reason: None,
        order_id: None,
    }
}

/// A webhook `hook` observing stock transactions, and `product`'s stock created (10) and
/// incremented `increments` times: a stream of `increments + 1` pending jobs.
async fn observe_history(store: &SqlStore, product: &str, increments: usize) {
    let hook = integration("hook", true, &["stock-transaction.created"]);
    assert!(store.create_integration(&hook).await.expect("created"));
    assert!(apply(store, create(product, 10)).await);
    for _ in 0..increments {
        assert!(apply(store, transact(product, Action::Increment, 1)).await);
    }
}

fn ok() -> Attempt {
    Attempt {
        succeeded: true,
        status_code: Some(200),
        body: String::new(),
        error_detail: String::new(),
    }
}

const T: i64 = 1_900_000_000_000_000;

async fn jobs_are_written_with_the_changes_they_report(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    assert!(store
        .create_integration(&integration("hook", true, &["stock-transaction.created"]))
        .await
        .expect("created"));
    assert!(apply(&store, create("p", 10)).await);
    assert!(apply(&store, transact("p", Action::Allocate, 3)).await);
    assert!(apply(&store, transact("p", Action::Increment, 2)).await);
    let history = store
        .history(
            &id("p"),
            &Default::default(),
            stockroom_store::Page {
                limit: 100,
                offset: 0,
            },
        )
        .await
        .expect("history");
    let mut entries: Vec<String> = history.items.iter().map(|e| e.id.clone()).collect();
    entries.reverse(); // oldest first
    let jobs = store.integration_jobs("hook", 100).await.expect("jobs");
    let mut reported: Vec<String> = jobs.iter().map(|j| j.resource_id.clone()).collect();
    reported.reverse();
    assert_eq!(
        reported, entries,
        "one job per history entry, in history order"
    );
    for job in &jobs {
        assert_eq!(job.triggered_by, "stock-transaction.created");
        assert_eq!(job.stream, "product:p");
        assert_eq!(job.status, JobStatus::Pending);
        let entry = store
            .history_entry_by_id(&job.resource_id)
            .await
            .expect("a read")
            .expect("the entry");
        assert_eq!(entry.product_id, id("p"));
    }
}

async fn refused_writes_and_disabled_or_unobserving_integrations_get_no_jobs(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    for i in [
        integration("on", true, &["stock-transaction.created"]),
        integration("off", false, &["stock-transaction.created"]),
        integration("orders", true, &["order.created", "order.paid"]),
    ] {
        assert!(store.create_integration(&i).await.expect("created"));
    }
    assert!(apply(&store, create("p", 5)).await);
    // Refused: more than is there. No history entry, no job.
    assert!(!apply(&store, transact("p", Action::Allocate, 6)).await);
    assert!(!apply(&store, create("p", 1)).await);
    let count = |id: &'static str| {
        let store = store.clone();
        async move { store.integration_jobs(id, 100).await.expect("jobs").len() }
    };
    assert_eq!(count("on").await, 1);
    assert_eq!(count("off").await, 0);
    assert_eq!(count("orders").await, 0);
    // Disabled after the fact: its pending jobs are not handed out.
    let mut on = store.integration("on").await.expect("a read").expect("on");
    on.enabled = false;
    assert!(store.update_integration(&on).await.expect("updated"));
    let claimed = store
        .claim_jobs("me", Timestamp(T), Timestamp(T + 1_000_000), 10)
        .await
        .expect("claim");
    assert!(claimed.is_empty(), "{claimed:?}");
    // Removing an integration removes its jobs.
    assert!(store.delete_integration("on").await.expect("deleted"));
    assert_eq!(count("on").await, 0);
}

async fn each_stream_leaves_in_order_and_a_retry_holds_it_back(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    let hook = integration("hook", true, &["stock-transaction.created"]);
    assert!(store.create_integration(&hook).await.expect("created"));
    for p in ["a", "b"] {
        assert!(apply(&store, create(p, 10)).await);
        assert!(apply(&store, transact(p, Action::Increment, 1)).await);
    }
    let lease = Timestamp(T + 60_000_000);
    // Only the head of each stream: a's first and b's first.
    let first = store
        .claim_jobs("me", Timestamp(T), lease, 10)
        .await
        .expect("claim");
    let streams: Vec<&str> = first.iter().map(|j| j.stream.as_str()).collect();
    assert_eq!(streams, ["product:a", "product:b"]);
    assert!(first.iter().all(|j| j.attempts == 1));
    // Nothing more while they are leased.
    assert!(store
        .claim_jobs("me", Timestamp(T), lease, 10)
        .await
        .expect("claim")
        .is_empty());
    // a's head is delivered; b's head fails and is to be retried in 10 s.
    let (a, b) = (&first[0], &first[1]);
    assert!(store
        .finish_job(a, "me", &ok(), After::Delivered, Timestamp(T))
        .await
        .expect("done"));
    let failure = Attempt {
        succeeded: false,
        status_code: Some(500),
        body: "no".into(),
        error_detail: "Received a status code outside of 2xx range".into(),
    };
    let retry = Timestamp(T + 10_000_000);
    assert!(store
        .finish_job(b, "me", &failure, After::RetryAt(retry), Timestamp(T))
        .await
        .expect("done"));
    // Now a's second is due; b's second waits behind b's head, which waits for its retry.
    let second = store
        .claim_jobs("me", Timestamp(T + 1), lease, 10)
        .await
        .expect("claim");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].stream, "product:a");
    assert!(second[0].seq > a.seq);
    let later = store
        .claim_jobs("me", retry, Timestamp(retry.micros() + 60_000_000), 10)
        .await
        .expect("claim");
    assert_eq!(later.len(), 1);
    assert_eq!(
        later[0].seq, b.seq,
        "the retry is the same job (same event id)"
    );
    assert_eq!(later[0].attempts, 2);
    // Both attempts of b are in its logs, newest first.
    let logs = store
        .integration_logs(Some("hook"), Some(b.seq), 10)
        .await
        .expect("logs");
    assert_eq!(logs.len(), 1);
    assert!(!logs[0].outcome.succeeded);
    assert_eq!(logs[0].outcome.status_code, Some(500));
    // Failing for good releases the stream.
    assert!(store
        .finish_job(&later[0], "me", &failure, After::Failed, retry)
        .await
        .expect("done"));
    let next = store
        .claim_jobs("me", retry, Timestamp(retry.micros() + 60_000_000), 10)
        .await
        .expect("claim");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].stream, "product:b");
    let jobs = store.integration_jobs("hook", 10).await.expect("jobs");
    let failed: Vec<i64> = jobs
        .iter()
        .filter(|j| j.status == JobStatus::Failed)
        .map(|j| j.seq)
        .collect();
    assert_eq!(failed, [b.seq]);
    // Pruning removes finished jobs only, once old enough.
    assert_eq!(store.prune_jobs(Timestamp(T)).await.expect("prune"), 0);
    assert_eq!(
        store
            .prune_jobs(Timestamp(retry.micros() + 1))
            .await
            .expect("prune"),
        2
    );
}

async fn a_lapsed_lease_hands_the_job_out_again(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    let hook = integration("hook", true, &["stock-transaction.created"]);
    assert!(store.create_integration(&hook).await.expect("created"));
    assert!(apply(&store, create("p", 1)).await);
    let first = store
        .claim_jobs("crashed", Timestamp(T), Timestamp(T + 5_000_000), 10)
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    // Another claimer before the lease runs out gets nothing; after, the same job.
    let early = store
        .claim_jobs(
            "other",
            Timestamp(T + 4_999_999),
            Timestamp(T + 9_000_000),
            10,
        )
        .await
        .expect("claim");
    assert!(early.is_empty());
    let again = store
        .claim_jobs(
            "other",
            Timestamp(T + 5_000_000),
            Timestamp(T + 9_000_000),
            10,
        )
        .await
        .expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].seq, first[0].seq);
    assert_eq!(again[0].attempts, 2);
    // The crashed holder's late record does not count: the lease is the other's now.
    assert!(!store
        .finish_job(
            &first[0],
            "crashed",
            &ok(),
            After::Delivered,
            Timestamp(T + 5_000_001)
        )
        .await
        .expect("a record"));
    assert!(store
        .finish_job(
            &again[0],
            "other",
            &ok(),
            After::Delivered,
            Timestamp(T + 5_000_001)
        )
        .await
        .expect("a record"));
}

async fn concurrent_claimers_never_hold_one_job_at_once(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    let hook = integration("hook", true, &["stock-transaction.created"]);
    assert!(store.create_integration(&hook).await.expect("created"));
    const PRODUCTS: usize = 8;
    const STEPS: usize = 12;
    for p in 0..PRODUCTS {
        assert!(apply(&store, create(&format!("p{p}"), 1)).await);
        for _ in 1..STEPS {
            assert!(apply(&store, transact(&format!("p{p}"), Action::Increment, 1)).await);
        }
    }
    let total = PRODUCTS * STEPS;
    // Four claimers race until every job is delivered; each records what it held, in the
    // order it finished.
    let finished = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..4 {
        let (store, finished) = (store.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let owner = format!("claimer-{c}");
            let mut idle = 0;
            while idle < 200 {
                let jobs = store
                    .claim_jobs(&owner, Timestamp(T), Timestamp(T + 600_000_000), 3)
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    idle += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle = 0;
                for job in jobs {
                    // Recorded before the job is finished: nobody else can hold it now.
                    finished
                        .lock()
                        .expect("lock")
                        .push((job.stream.clone(), job.seq));
                    assert!(store
                        .finish_job(&job, &owner, &ok(), After::Delivered, Timestamp(T))
                        .await
                        .expect("a record"));
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a claimer");
    }
    let finished = finished.lock().expect("lock").clone();
    let seqs: HashSet<i64> = finished.iter().map(|(_, s)| *s).collect();
    assert_eq!(finished.len(), total, "each job handed out exactly once");
    assert_eq!(seqs.len(), total);
    let mut per_stream: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (stream, seq) in &finished {
        per_stream.entry(stream).or_default().push(*seq);
    }
    assert_eq!(per_stream.len(), PRODUCTS);
    for (stream, seqs) in per_stream {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{stream} out of order: {seqs:?}"
        );
    }
    let jobs = store.integration_jobs("hook", 1000).await.expect("jobs");
    assert!(jobs
        .iter()
        .all(|j| j.status == JobStatus::Delivered && j.attempts == 1));
}

async fn integrations_are_capped(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    for n in 0..INTEGRATIONS_MAX {
        let i = integration(&format!("i{n}"), true, &["order.paid"]);
        assert!(store.create_integration(&i).await.expect("created"));
    }
    let one_more = integration("extra", true, &["order.paid"]);
    assert!(!store.create_integration(&one_more).await.expect("refused"));
    assert_eq!(
        store.integrations().await.expect("a list").len() as u64,
        INTEGRATIONS_MAX
    );
}

/// `claim_runs`: a free stream's head with the pending jobs after it, in order, under one
/// lease; nobody else gets any job of a leased run; what its holder gives back goes out again
/// in order with the attempt the claim counted undone; `max` cuts runs to a prefix.
async fn a_run_is_leased_whole_in_order_and_its_rest_given_back(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    observe_history(&store, "a", 4).await;
    assert!(apply(&store, create("b", 10)).await);
    let mut a_seqs: Vec<i64> = store
        .integration_jobs("hook", 100)
        .await
        .expect("jobs")
        .iter()
        .filter(|j| j.stream == "product:a")
        .map(|j| j.seq)
        .collect();
    a_seqs.sort_unstable();
    assert_eq!(a_seqs.len(), 5);
    let lease = Timestamp(T + 60_000_000);
    // Runs of at most 3: a's three oldest and b's one.
    let first = store
        .claim_runs("me", Timestamp(T), lease, 10, 3)
        .await
        .expect("claim");
    let a_run: Vec<i64> = first
        .iter()
        .filter(|j| j.stream == "product:a")
        .map(|j| j.seq)
        .collect();
    assert_eq!(a_run, a_seqs[..3]);
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|j| j.attempts == 1));
    // Nothing of a leased run (nor the jobs behind it) goes to anyone else.
    assert!(store
        .claim_runs("other", Timestamp(T), lease, 10, 10)
        .await
        .expect("claim")
        .is_empty());
    // a's head is delivered, its second fails to be recorded as such: the rest is given back.
    let a_jobs: Vec<_> = first.iter().filter(|j| j.stream == "product:a").collect();
    assert!(store
        .finish_job(a_jobs[0], "me", &ok(), After::Delivered, Timestamp(T))
        .await
        .expect("done"));
    let rest: Vec<_> = a_jobs[1..].iter().map(|j| (*j).clone()).collect();
    assert_eq!(store.release_jobs(&rest, "other").await.expect("none"), 0);
    assert_eq!(store.release_jobs(&rest, "me").await.expect("given"), 2);
    // Someone else now gets a's four remaining jobs in order, each at its first attempt; b's
    // is still leased.
    let second = store
        .claim_runs("other", Timestamp(T + 1), lease, 10, 10)
        .await
        .expect("claim");
    let seqs: Vec<i64> = second.iter().map(|j| j.seq).collect();
    assert_eq!(seqs, a_seqs[1..]);
    assert!(second.iter().all(|j| j.attempts == 1));
    // `max` cuts a run to its oldest jobs.
    assert_eq!(
        store.release_jobs(&second, "other").await.expect("given"),
        4
    );
    let cut = store
        .claim_runs("third", Timestamp(T + 2), lease, 2, 10)
        .await
        .expect("claim");
    let seqs: Vec<i64> = cut.iter().map(|j| j.seq).collect();
    assert_eq!(seqs, a_seqs[1..3]);
}

/// A holder that recorded its head's failure and died before giving the rest of its run back
/// leaves those jobs leased: a new run from the head stops before them, and never takes a job
/// behind them (it would overtake them).
async fn a_run_stops_before_a_job_still_leased(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    let hook = integration("hook", true, &["stock-transaction.created"]);
    assert!(store.create_integration(&hook).await.expect("created"));
    assert!(apply(&store, create("a", 10)).await);
    assert!(apply(&store, transact("a", Action::Increment, 1)).await);
    let lease = Timestamp(T + 60_000_000);
    let run = store
        .claim_runs("died", Timestamp(T), lease, 10, 10)
        .await
        .expect("claim");
    assert_eq!(run.len(), 2);
    // Its head failed (retry at once) and it died before giving the second back.
    assert!(store
        .finish_job(
            &run[0],
            "died",
            &ok(),
            After::RetryAt(Timestamp(T)),
            Timestamp(T)
        )
        .await
        .expect("done"));
    // A third job comes, free.
    assert!(apply(&store, transact("a", Action::Increment, 1)).await);
    let again = store
        .claim_runs("other", Timestamp(T + 1), lease, 10, 10)
        .await
        .expect("claim");
    let seqs: Vec<i64> = again.iter().map(|j| j.seq).collect();
    assert_eq!(
        seqs,
        [run[0].seq],
        "the head only, not the job behind the leased one"
    );
}

/// A run's attempts are recorded together: every attempt logged with its job's attempt number
/// and outcome, each job in the state its attempt left it; a record by someone who does not
/// hold the leases logs the attempts but changes no job.
async fn a_run_is_recorded_in_one_write(backend: Backend) {
    let dir = tempfile::tempdir().expect("a folder");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    observe_history(&store, "a", 3).await;
    let lease = Timestamp(T + 60_000_000);
    let run = store
        .claim_runs("me", Timestamp(T), lease, 10, 10)
        .await
        .expect("claim");
    assert_eq!(run.len(), 4);
    let failure = Attempt {
        succeeded: false,
        status_code: Some(503),
        body: "busy".into(),
        error_detail: "Received a status code outside of 2xx range".into(),
    };
    let retry = Timestamp(T + 5_000_000);
    let outcomes: Vec<Finished> = run
        .iter()
        .enumerate()
        .map(|(i, job)| Finished {
            job,
            attempt: if i < 3 { ok() } else { failure.clone() },
            after: if i < 3 {
                After::Delivered
            } else {
                After::RetryAt(retry)
            },
        })
        .collect();
    // Someone else's record: logged, but no job changes.
    assert_eq!(
        store
            .finish_jobs("other", &outcomes[..1], Timestamp(T))
            .await
            .expect("recorded"),
        0
    );
    assert_eq!(
        store
            .finish_jobs("me", &outcomes, Timestamp(T + 1))
            .await
            .expect("recorded"),
        4
    );
    let jobs: BTreeMap<i64, _> = store
        .integration_jobs("hook", 100)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| (j.seq, j))
        .collect();
    for (i, job) in run.iter().enumerate() {
        let want = if i < 3 {
            JobStatus::Delivered
        } else {
            JobStatus::Pending
        };
        assert_eq!(jobs[&job.seq].status, want, "job {i}");
    }
    let logs = store
        .integration_logs(Some("hook"), None, 100)
        .await
        .expect("logs");
    assert_eq!(logs.len(), 5);
    for (i, job) in run.iter().enumerate() {
        let mine: Vec<_> = logs
            .iter()
            .filter(|l| l.job_seq == job.seq && l.created_at == Timestamp(T + 1))
            .collect();
        assert_eq!(mine.len(), 1, "job {i}");
        assert_eq!(mine[0].attempt, 1);
        assert_eq!(mine[0].integration_id, "hook");
        if i < 3 {
            assert_eq!(mine[0].outcome, ok());
        } else {
            assert_eq!(mine[0].outcome, failure);
        }
    }
    // The failed job is due again at its retry time, and then only it (it heads its stream).
    assert!(store
        .claim_runs("me", Timestamp(T + 2), lease, 10, 10)
        .await
        .expect("claim")
        .is_empty());
    let again = store
        .claim_runs("me", retry, Timestamp(retry.micros() + 60_000_000), 10, 10)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|j| j.seq).collect::<Vec<_>>(),
        [run[3].seq]
    );
    assert_eq!(again[0].attempts, 2);
    // Nothing to record is nothing written.
    assert_eq!(
        store
            .finish_jobs("me", &[], Timestamp(T))
            .await
            .expect("none"),
        0
    );
}
