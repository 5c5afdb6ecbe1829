//! The records the store reads and writes, and the requests it takes.

use stockroom_domain::{Action, ProductId, Quantity, Refusal, Role, Stock, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockRecord {
    pub product_id: ProductId,
    pub stock: Stock,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One immutable history entry, with the figures after the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub id: String,
    pub product_id: ProductId,
    pub action: Action,
    pub quantity: u64,
    pub after: Stock,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

/// A write, as the writer takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Start managing stock for a product: refused if it is already managed.
    Create {
        product: ProductId,
        quantity: Quantity,
    },
    /// One action on an existing record (increment, decrement, allocate, deallocate, set, ship).
    Transact {
        product: ProductId,
        action: Action,
        quantity: Quantity,
        order_id: Option<String>,
        reason: Option<String>,
    },
    /// Stop managing stock for a product: refused while units are allocated.
    Delete { product: ProductId },
}

impl Command {
    pub fn product(&self) -> &ProductId {
        match self {
            Command::Create { product, .. }
            | Command::Transact { product, .. }
            | Command::Delete { product } => product,
        }
    }
}

/// An `Idempotency-Key`, scoped to the route it was sent to, with a fingerprint of the request
/// so that the same key with a different request is told apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRequest {
    pub command: Command,
    pub idempotency: Option<IdempotencyKey>,
}

impl WriteRequest {
    pub fn new(command: Command) -> Self {
        WriteRequest {
            command,
            idempotency: None,
        }
    }
}

/// Why a write was refused. A refused write changed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No stock record for that product.
    NotFound,
    /// Stock for that product is already managed.
    AlreadyExists,
    /// Stock with allocated units cannot be deleted.
    HasAllocations,
    /// The arithmetic refused it (422).
    Stock(Refusal),
}

impl Rejection {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Rejection::NotFound => "not_found",
            Rejection::AlreadyExists => "already_exists",
            Rejection::HasAllocations => "has_allocations",
            Rejection::Stock(Refusal::InsufficientAvailable) => "insufficient_available",
            Rejection::Stock(Refusal::InsufficientAllocated) => "insufficient_allocated",
            Rejection::Stock(Refusal::BelowAllocated) => "below_allocated",
            Rejection::Stock(Refusal::TotalTooLarge) => "total_too_large",
            Rejection::Stock(Refusal::NotApplicable) => "not_applicable",
        }
    }

    pub(crate) fn from_code(code: &str) -> Option<Self> {
        [
            Rejection::NotFound,
            Rejection::AlreadyExists,
            Rejection::HasAllocations,
            Rejection::Stock(Refusal::InsufficientAvailable),
            Rejection::Stock(Refusal::InsufficientAllocated),
            Rejection::Stock(Refusal::BelowAllocated),
            Rejection::Stock(Refusal::TotalTooLarge),
            Rejection::Stock(Refusal::NotApplicable),
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied(HistoryEntry),
    Refused(Rejection),
}

/// The answer to a write: its outcome, and whether it is the stored answer of an earlier
/// request with the same idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub outcome: Outcome,
    pub replayed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: u64,
}

/// Filters on a product's history; every bound is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    pub action: Option<Action>,
    /// Entries created at or after this instant.
    pub created_from: Option<Timestamp>,
    /// Entries created strictly before this instant.
    pub created_before: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub client_id: String,
    pub name: String,
    pub role: Role,
    /// A PHC string (argon2id); the secret itself is never stored.
    pub secret_hash: String,
    pub created_at: Timestamp,
}
