//! The store against a reference model: random sequences of writes, on SQLite and PostgreSQL,
//! compared after every step (TigerBeetle's workload + auditor, in small).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use stockroom_domain::{Action, Adjustment, Clock, ProductId, StockLevel, Timestamp};
use stockroom_store::testing::{fresh_database, Backend};
use stockroom_store::{
    Command, Effect, OpenOptions, Outcome, Rejection, SqlStore, Store, WriteRequest,
};

struct FixedClock;
impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_secs(1_800_000_000)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Create(i64),
    Transact(Action, i64),
    Delete,
}

fn op() -> impl Strategy<Value = Op> {
    let action = prop_oneof![
        Just(Action::Increment),
        Just(Action::Decrement),
        Just(Action::Allocate),
        Just(Action::Deallocate),
        Just(Action::Set),
        Just(Action::Ship),
    ];
    // Create and set may be 0 (SPEC §1); every other action's quantity starts at 1.
    prop_oneof![
        1 => (0i64..30).prop_map(Op::Create),
        10 => (action, 1i64..30).prop_map(|(a, q)| Op::Transact(a, q)),
        2 => (0i64..3).prop_map(|q| Op::Transact(Action::Set, q)),
        1 => Just(Op::Delete),
    ]
}

/// The model: `None` when not managed, else (total, allocated), by the obvious rules.
fn model_step(state: Option<(i64, i64)>, op: &Op) -> Result<Option<(i64, i64)>, Rejection> {
    use stockroom_domain::Refusal::*;
    match (state, op) {
        (None, Op::Create(q)) => Ok(Some((*q, 0))),
        (Some(_), Op::Create(_)) => Err(Rejection::AlreadyExists),
        (None, _) => Err(Rejection::NotFound),
        (Some((_, a)), Op::Delete) if a > 0 => Err(Rejection::HasAllocations),
        (Some(_), Op::Delete) => Ok(None),
        (Some((t, a)), Op::Transact(action, q)) => {
            let (t2, a2) = match action {
                Action::Increment => (t + q, a),
                Action::Decrement => (t - q, a),
                Action::Allocate => (t, a + q),
                Action::Deallocate => (t, a - q),
                Action::Set => (*q, a),
                _ => (t - q, a - q),
            };
            if a2 < 0 {
                Err(Rejection::Stock(InsufficientAllocated))
            } else if a2 > t2 {
                Err(Rejection::Stock(if *action == Action::Set {
                    BelowAllocated
                } else {
                    InsufficientAvailable
                }))
            } else {
                Ok(Some((t2, a2)))
            }
        }
    }
}

fn command(product: &ProductId, op: &Op) -> Command {
    let level = |n: i64| StockLevel::new(n).expect("a level");
    match op {
        Op::Create(n) => Command::Create {
            product: product.clone(),
            records: vec![(String::new(), level(*n))],
        },
        Op::Transact(action, n) => Command::Transact {
            product: product.clone(),
            location: String::new(),
            adjustment: Adjustment::new(*action, level(*n)).expect("an adjustment"),
            order_id: None,
            reason: None,
        },
        Op::Delete => Command::Delete {
            product: product.clone(),
        },
    }
}

fn random_sequences_agree_with_the_model(backend: Backend) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let Some(url) = rt.block_on(fresh_database(backend, dir.path())) else {
        return;
    };
    let store: Arc<SqlStore> = rt
        .block_on(SqlStore::open(
            &url,
            OpenOptions::default(),
            Arc::new(FixedClock),
        ))
        .expect("open");
    let next = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        rt.block_on(async {
            let product =
                ProductId::parse(&format!("m{}", next.fetch_add(1, Ordering::SeqCst))).expect("id");
            let mut model: Option<(i64, i64)> = None;
            let mut entries = 0u64;
            for op in &ops {
                let answer = store
                    .execute(WriteRequest::new(command(&product, op)))
                    .await
                    .expect("execute");
                match (model_step(model, op), answer.outcome) {
                    (Ok(next), Outcome::Applied(Effect::Entry(entry))) => {
                        let (t, a) = next.unwrap_or((0, 0));
                        prop_assert_eq!(
                            (entry.after.total() as i64, entry.after.allocated() as i64),
                            (t, a)
                        );
                        model = next;
                        entries += 1;
                    }
                    (Err(expected), Outcome::Refused(got)) => prop_assert_eq!(expected, got),
                    (expected, got) => {
                        return Err(TestCaseError::fail(format!(
                            "{op:?}: model {expected:?}, store {got:?}"
                        )))
                    }
                }
                let record = store.stock(&product).await.expect("read");
                let figures = record.map(|r| (r.total as i64, r.allocated as i64));
                prop_assert_eq!(figures, model, "after {:?}", op);
            }
            let history = store
                .history(
                    &product,
                    &Default::default(),
                    stockroom_store::Page {
                        limit: 1,
                        offset: 0,
                    },
                )
                .await
                .expect("history");
            prop_assert_eq!(
                history.total,
                entries,
                "one entry per applied write, none per refusal"
            );
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let report = rt.block_on(store.verify()).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.entries_checked > 0);
}

#[test]
fn random_sequences_agree_with_the_model_on_sqlite() {
    random_sequences_agree_with_the_model(Backend::Sqlite);
}

#[test]
fn random_sequences_agree_with_the_model_on_postgres() {
    random_sequences_agree_with_the_model(Backend::Postgres);
}

async fn open(backend: Backend, dir: &std::path::Path) -> Option<Arc<SqlStore>> {
    let url = fresh_database(backend, dir).await?;
    Some(
        SqlStore::open(&url, OpenOptions::default(), Arc::new(FixedClock))
            .await
            .expect("open"),
    )
}

fn credential(id: &str, hash: &str) -> stockroom_store::Credential {
    stockroom_store::Credential {
        client_id: id.into(),
        name: id.into(),
        role: stockroom_domain::Role::Admin,
        secret_hash: hash.into(),
        created_at: Timestamp::from_secs(1),
    }
}

async fn credentials_are_listed_and_removed_and_settings_replaced(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let Some(store) = open(backend, dir.path()).await else {
        return;
    };
    for id in ["b", "a"] {
        store
            .insert_credential(&credential(id, "h"))
            .await
            .expect("insert");
    }
    let ids: Vec<String> = store
        .credentials()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    assert_eq!(ids, ["a", "b"], "every credential, by client id");
    assert!(store.delete_credential("a").await.expect("delete"));
    assert!(!store.delete_credential("a").await.expect("delete"), "gone");
    assert_eq!(store.credentials().await.expect("list").len(), 1);

    assert_eq!(store.setting("k").await.expect("read"), None);
    store.set_setting("k", "one").await.expect("set");
    store.set_setting("k", "two").await.expect("replace");
    assert_eq!(
        store.setting("k").await.expect("read").as_deref(),
        Some("two")
    );
    assert_eq!(
        store.setting_or_insert("k", "three").await.expect("read"),
        "two"
    );
}

#[tokio::test]
async fn credentials_are_listed_and_removed_and_settings_replaced_on_sqlite() {
    credentials_are_listed_and_removed_and_settings_replaced(Backend::Sqlite).await;
}

#[tokio::test]
async fn credentials_are_listed_and_removed_and_settings_replaced_on_postgres() {
    credentials_are_listed_and_removed_and_settings_replaced(Backend::Postgres).await;
}

/// The database holds the token signing key: a new one, its WAL and shared-memory files, and
/// its backups are readable by their owner only.
#[cfg(unix)]
#[tokio::test]
async fn a_new_sqlite_database_its_companions_and_its_backups_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let store = open(Backend::Sqlite, dir.path()).await.expect("sqlite");
    // A write makes SQLite create the -wal and -shm files.
    store.set_setting("k", "v").await.expect("write");
    let db = store.database_file().expect("a file").to_owned();
    let backup = dir.path().join("backup.db");
    store
        .backup_to(backup.to_str().expect("utf-8"))
        .await
        .expect("backup");
    for path in [
        db.clone(),
        db.with_extension("db-wal"),
        db.with_extension("db-shm"),
        backup,
    ] {
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{} is {:o}", path.display(), mode);
    }
    assert!(stockroom_store::security::files_open_to_others(&db).is_empty());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let open = stockroom_store::security::files_open_to_others(&db);
    assert_eq!(
        open,
        vec![(db.clone(), 0o644)],
        "a readable file is reported"
    );
}
