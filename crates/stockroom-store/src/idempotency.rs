//! Idempotency keys inside a batch: the stored answers of the keys the batch's requests carry,
//! the answers it gives under new keys, and how an answer is kept and rebuilt.

use std::collections::{BTreeMap, HashMap};

use stockroom_domain::ProductId;

use crate::batch_rows::{bulk, KeyRef, KeyRow};
use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{args, Conn, Row, Stmt};
use crate::model::*;
use crate::rows::{self, history_columns};

/// (scope, key) → (fingerprint, encoded outcome).
type Stored = HashMap<(String, String), (String, String)>;

/// The batch's idempotency keys.
#[derive(Default)]
pub(crate) struct Keys {
    stored: Stored,
    /// Answers given in this batch, in key order (the order they are written in).
    fresh: BTreeMap<(String, String), (String, String)>,
}

/// The keys to look up for `requests`, as `Dialect::read_keys`'s parameter (`None`: none).
pub(crate) fn key_refs(requests: &[&WriteRequest]) -> Option<String> {
    let refs: Vec<KeyRef<'_>> = requests
        .iter()
        .filter_map(|r| r.idempotency.as_ref())
        .map(|k| KeyRef {
            scope: &k.scope,
            key: &k.key,
        })
        .collect();
    (!refs.is_empty()).then(|| serde_json::to_string(&refs).unwrap_or_default())
}

/// What a request's key says before it is applied.
pub(crate) enum Seen {
    /// No answer under this key yet: apply the request.
    New,
    /// The same request was answered before: this is its answer, encoded.
    Answered(String),
    /// The key was used for a different request.
    Mismatch,
}

impl Keys {
    /// The rows of `Dialect::read_keys`.
    pub fn read(rows: &[Row]) -> Result<Keys, StoreError> {
        let mut stored = Stored::new();
        for row in rows {
            stored.insert(
                (row.col("scope")?, row.col("key")?),
                (row.col("fingerprint")?, row.col("outcome")?),
            );
        }
        Ok(Keys {
            stored,
            fresh: BTreeMap::new(),
        })
    }

    pub fn seen(&self, key: &IdempotencyKey) -> Seen {
        let id = (key.scope.clone(), key.key.clone());
        match self.stored.get(&id).or_else(|| self.fresh.get(&id)) {
            None => Seen::New,
            Some((fingerprint, _)) if *fingerprint != key.fingerprint => Seen::Mismatch,
            Some((_, outcome)) => Seen::Answered(outcome.clone()),
        }
    }

    /// Keeps the answer given under a new key.
    pub fn answered(&mut self, key: &IdempotencyKey, outcome: &Outcome) {
        self.fresh.insert(
            (key.scope.clone(), key.key.clone()),
            (key.fingerprint.clone(), encode(outcome)),
        );
    }

    /// The statement that stores the batch's new keys.
    pub fn write_back(&self, dialect: &Dialect, now: i64) -> Result<Option<Stmt>, StoreError> {
        let rows: Vec<KeyRow> = self
            .fresh
            .iter()
            .map(|((scope, key), (fingerprint, outcome))| KeyRow {
                scope: scope.clone(),
                key: key.clone(),
                fingerprint: fingerprint.clone(),
                outcome: outcome.clone(),
            })
            .collect();
        bulk(dialect.bulk.insert_keys, &rows, Some(now))
    }
}

/// How an outcome is kept under its idempotency key: a reference to what it made, or the
/// refusal's code.
fn encode(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Applied(Effect::Entry(entry)) => format!("entry:{}", entry.id),
        Outcome::Applied(Effect::Product(id)) => format!("product:{id}"),
        Outcome::Applied(Effect::Cart(id)) => format!("cart:{id}"),
        Outcome::Applied(Effect::Order(id)) => format!("order:{id}"),
        Outcome::Applied(Effect::Location(id)) => format!("location:{id}"),
        Outcome::Applied(Effect::Stock(id)) => format!("stock:{id}"),
        Outcome::Applied(Effect::Payment {
            order_id,
            payment_id,
        }) => format!("payment:{order_id}/{payment_id}"),
        Outcome::Refused(rejection) => format!("refused:{}", rejection.code()),
    }
}

/// The first answer given under an idempotency key, rebuilt from what was kept. A history
/// entry is looked up among the batch's own `entries` first, then in the database.
pub(crate) async fn replay(
    conn: Conn<'_>,
    entries: &[HistoryEntry],
    outcome: &str,
) -> Result<Answer, StoreError> {
    let unreadable = || StoreError::Internal(format!("unreadable stored outcome {outcome:?}"));
    let (kind, id) = outcome.split_once(':').ok_or_else(unreadable)?;
    let product = |id: &str| ProductId::parse(id).map_err(|_| unreadable());
    let effect = match kind {
        "entry" => Effect::Entry(match entries.iter().find(|e| e.id == id) {
            Some(entry) => entry.clone(),
            None => stored_entry(conn, id).await?.ok_or_else(unreadable)?,
        }),
        "product" => Effect::Product(product(id)?),
        "cart" => Effect::Cart(id.to_owned()),
        "order" => Effect::Order(id.to_owned()),
        "location" => Effect::Location(id.to_owned()),
        "stock" => Effect::Stock(product(id)?),
        "payment" => {
            let (order_id, payment_id) = id.split_once('/').ok_or_else(unreadable)?;
            Effect::Payment {
                order_id: order_id.to_owned(),
                payment_id: payment_id.to_owned(),
            }
        }
        "refused" => {
            let rejection = Rejection::from_code(id).ok_or_else(unreadable)?;
            return Ok(Answer {
                outcome: Outcome::Refused(rejection),
                replayed: true,
            });
        }
        _ => return Err(unreadable()),
    };
    Ok(Answer {
        outcome: Outcome::Applied(effect),
        replayed: true,
    })
}

async fn stored_entry(conn: Conn<'_>, id: &str) -> Result<Option<HistoryEntry>, StoreError> {
    let row = conn
        .row(
            concat!("SELECT ", history_columns!(), " FROM history WHERE id = $1"),
            args![id],
        )
        .await?;
    row.as_ref().map(rows::history_entry).transpose()
}
