//! Stockroom's domain: stock arithmetic, the actions that change stock, identifiers and the
//! limits every request is held to.
//!
//! This crate does no I/O, reads no clock and knows nothing of JSON or SQL. Every invariant of
//! SPEC §1 is enforced here, in Rust, and a second time by the database's CHECK constraints.

pub mod clock;
pub mod ids;
pub mod limits;
pub mod money;
pub mod order;
pub mod stock;

pub use clock::{Clock, Timestamp};
pub use ids::{CartId, IdError, ProductId, Slug};
pub use money::{Currency, Money, MoneyError, Price};
pub use stock::{
    replay_step, Action, Adjustment, InvariantViolation, Origin, Quantity, QuantityError, Refusal,
    ReplayError, Stock, StockLevel, StockLevelError, UnknownAction,
};

/// Who a token speaks for (SPEC §3, "Who may do what").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Client credentials: may do everything.
    Admin,
    /// An implicit token: may read stock, use carts, check out, pay, and read an order by id.
    Shopper,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Shopper => "shopper",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "shopper" => Some(Role::Shopper),
            _ => None,
        }
    }
}
