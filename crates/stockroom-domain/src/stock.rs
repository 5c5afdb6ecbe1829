//! Stock records and the actions that change them (SPEC §1).

use std::fmt;
use std::str::FromStr;

use crate::limits::{QUANTITY_MAX, QUANTITY_MIN, STOCK_TOTAL_MAX};

/// A quantity in a request: a whole number from 1 to 1,000,000,000.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("quantity must be a whole number from {QUANTITY_MIN} to {QUANTITY_MAX}")]
pub struct QuantityError;

impl Quantity {
    pub fn new(n: i64) -> Result<Self, QuantityError> {
        let n = u64::try_from(n).map_err(|_| QuantityError)?;
        if (QUANTITY_MIN..=QUANTITY_MAX).contains(&n) {
            Ok(Quantity(n))
        } else {
            Err(QuantityError)
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

/// A stock level given directly — the quantity of `create`, `set`, a location's `available`:
/// a whole number from 0 to 1,000,000,000 (SPEC §1: unlike a transaction's quantity, it may be
/// zero, as when an ERP marks a product sold out). The default is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StockLevel(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a stock level must be a whole number from 0 to {QUANTITY_MAX}")]
pub struct StockLevelError;

impl StockLevel {
    pub fn new(n: i64) -> Result<Self, StockLevelError> {
        match u64::try_from(n) {
            Ok(n) if n <= QUANTITY_MAX => Ok(StockLevel(n)),
            _ => Err(StockLevelError),
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<Quantity> for StockLevel {
    fn from(q: Quantity) -> Self {
        StockLevel(q.get())
    }
}

/// An action with its quantity, as an administrator posts it or a history entry records it:
/// `create` and `set` take a [`StockLevel`] (0 allowed, SPEC §1), every other action a
/// [`Quantity`] (from 1). The fields are private, so a zero can only go with a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Adjustment {
    action: Action,
    quantity: u64,
}

impl Adjustment {
    /// An action with a quantity of 1 or more: always valid.
    pub fn of(action: Action, q: Quantity) -> Self {
        Adjustment {
            action,
            quantity: q.get(),
        }
    }

    /// Setting the total to a level, which may be zero.
    pub fn set(level: StockLevel) -> Self {
        Adjustment {
            action: Action::Set,
            quantity: level.get(),
        }
    }

    /// An action with a level as sent: zero only for `create` and `set`.
    pub fn new(action: Action, level: StockLevel) -> Result<Self, QuantityError> {
        match action {
            Action::Create | Action::Set => Ok(Adjustment {
                action,
                quantity: level.get(),
            }),
            // A level is at most QUANTITY_MAX, so a nonzero one is a quantity.
            _ if level.get() >= QUANTITY_MIN => Ok(Adjustment {
                action,
                quantity: level.get(),
            }),
            _ => Err(QuantityError),
        }
    }

    pub fn action(self) -> Action {
        self.action
    }

    pub fn quantity(self) -> u64 {
        self.quantity
    }
}

/// What a history entry records. The first five may be posted by an administrator; `create` is
/// written when stock is created, `ship` by the order flow, and `delete` when stock stops being
/// managed (a Stockroom addition, so that replaying the history knows the record is gone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Create,
    Increment,
    Decrement,
    Allocate,
    Deallocate,
    Set,
    Ship,
    Delete,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Create,
        Action::Increment,
        Action::Decrement,
        Action::Allocate,
        Action::Deallocate,
        Action::Set,
        Action::Ship,
        Action::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Increment => "increment",
            Action::Decrement => "decrement",
            Action::Allocate => "allocate",
            Action::Deallocate => "deallocate",
            Action::Set => "set",
            Action::Ship => "ship",
            Action::Delete => "delete",
        }
    }

    /// Whether an administrator may post this action as a stock transaction.
    pub fn is_postable(self) -> bool {
        matches!(
            self,
            Action::Increment
                | Action::Decrement
                | Action::Allocate
                | Action::Deallocate
                | Action::Set
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown action")]
pub struct UnknownAction;

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(UnknownAction)
    }
}

/// Why an action was refused. A refused action changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not enough available stock")]
    InsufficientAvailable,
    #[error("not enough allocated stock")]
    InsufficientAllocated,
    #[error("the new total would be below the allocated quantity")]
    BelowAllocated,
    #[error("the total would exceed the largest total a record may hold")]
    TotalTooLarge,
    #[error("this action cannot be applied to an existing stock record")]
    NotApplicable,
}

/// A stock record's figures. `0 <= held <= allocated <= total <= STOCK_TOTAL_MAX` always
/// holds: the fields are private and every constructor and transition checks it.
///
/// `held` is the part of `allocated` that orders hold (allocated at payment, resolved by
/// shipping or release). An administrator's `deallocate` can release only the rest, so an
/// order's allocation can never be taken from under it and is always resolved exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Stock {
    total: u64,
    allocated: u64,
    held: u64,
}

/// Who changes stock: an administrator posting a transaction, or the order flow for an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Manual,
    Order,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stock figures break an invariant: total {total}, allocated {allocated}")]
pub struct InvariantViolation {
    pub total: i64,
    pub allocated: i64,
}

impl Stock {
    /// Figures read back from storage; refuses any that break an invariant.
    pub fn from_figures(total: i64, allocated: i64) -> Result<Self, InvariantViolation> {
        let err = InvariantViolation { total, allocated };
        let t = u64::try_from(total).map_err(|_| err)?;
        let a = u64::try_from(allocated).map_err(|_| err)?;
        if a > t || t > STOCK_TOTAL_MAX {
            return Err(err);
        }
        Ok(Stock {
            total: t,
            allocated: a,
            held: 0,
        })
    }

    /// Figures as a stock record stores them, with the units orders hold.
    pub fn from_stored(total: i64, allocated: i64, held: i64) -> Result<Self, InvariantViolation> {
        let stock = Stock::from_figures(total, allocated)?;
        match u64::try_from(held) {
            Ok(h) if h <= stock.allocated => Ok(Stock { held: h, ..stock }),
            _ => Err(InvariantViolation { total, allocated }),
        }
    }

    /// A new record holding `q` units (possibly none).
    pub fn created(q: impl Into<StockLevel>) -> Self {
        Stock {
            total: q.into().get(),
            allocated: 0,
            held: 0,
        }
    }

    /// Allocated units that orders hold.
    pub fn held(&self) -> u64 {
        self.held
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    pub fn available(&self) -> u64 {
        self.total - self.allocated
    }

    /// Applies an administrator's action to an existing record, returning the figures after it.
    pub fn apply(self, action: Action, q: Quantity) -> Result<Stock, Refusal> {
        self.apply_as(Origin::Manual, action, q)
    }

    /// Applies an action of the order flow: allocating for an order, and shipping or releasing
    /// what orders hold.
    pub fn apply_for_order(self, action: Action, q: Quantity) -> Result<Stock, Refusal> {
        self.apply_as(Origin::Order, action, q)
    }

    pub fn apply_as(self, origin: Origin, action: Action, q: Quantity) -> Result<Stock, Refusal> {
        self.adjust(origin, Adjustment::of(action, q))
    }

    /// Applies an action with its quantity; only `set` may be zero, which [`Adjustment`]
    /// guarantees.
    pub fn adjust(self, origin: Origin, adjustment: Adjustment) -> Result<Stock, Refusal> {
        let (action, q) = (adjustment.action, adjustment.quantity);
        let held = self.held;
        if origin == Origin::Order {
            let (total, allocated, held) = match action {
                Action::Allocate if self.available() >= q => {
                    (self.total, self.allocated + q, held + q)
                }
                Action::Allocate => return Err(Refusal::InsufficientAvailable),
                Action::Deallocate if held >= q => (self.total, self.allocated - q, held - q),
                Action::Ship if held >= q => (self.total - q, self.allocated - q, held - q),
                Action::Deallocate | Action::Ship => return Err(Refusal::InsufficientAllocated),
                _ => return Err(Refusal::NotApplicable),
            };
            return Ok(Stock {
                total,
                allocated,
                held,
            });
        }
        // By hand, only allocations that no order holds can be released or shipped.
        let free = self.allocated - held;
        let (total, allocated) = match action {
            Action::Increment => {
                let total = self.total + q;
                if total > STOCK_TOTAL_MAX {
                    return Err(Refusal::TotalTooLarge);
                }
                (total, self.allocated)
            }
            Action::Decrement => {
                if self.available() < q {
                    return Err(Refusal::InsufficientAvailable);
                }
                (self.total - q, self.allocated)
            }
            Action::Allocate => {
                if self.available() < q {
                    return Err(Refusal::InsufficientAvailable);
                }
                (self.total, self.allocated + q)
            }
            Action::Deallocate => {
                if free < q {
                    return Err(Refusal::InsufficientAllocated);
                }
                (self.total, self.allocated - q)
            }
            Action::Set => {
                if q < self.allocated {
                    return Err(Refusal::BelowAllocated);
                }
                (q, self.allocated)
            }
            Action::Ship => {
                if free < q {
                    return Err(Refusal::InsufficientAllocated);
                }
                (self.total - q, self.allocated - q)
            }
            Action::Create | Action::Delete => return Err(Refusal::NotApplicable),
        };
        Ok(Stock {
            total,
            allocated,
            held,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("{action} entry for a record that does not exist")]
    NoRecord { action: Action },
    #[error("create entry for a record that already exists")]
    AlreadyExists,
    #[error("entry quantity {0} is not a valid quantity")]
    BadQuantity(i64),
    #[error("{action} {quantity} could not have been applied: {refusal}")]
    Refused {
        action: Action,
        quantity: i64,
        refusal: Refusal,
    },
}

/// One step of replaying the history: the record before an entry (or none), the entry's action,
/// quantity and origin (entries with an order id come from the order flow), and the record after
/// it (none once deleted).
pub fn replay_step(
    before: Option<Stock>,
    action: Action,
    quantity: i64,
    origin: Origin,
) -> Result<Option<Stock>, ReplayError> {
    match (before, action) {
        (None, Action::Create) => Ok(Some(Stock::created(
            StockLevel::new(quantity).map_err(|_| ReplayError::BadQuantity(quantity))?,
        ))),
        (Some(_), Action::Create) => Err(ReplayError::AlreadyExists),
        (Some(_), Action::Delete) => Ok(None),
        (None, action) => Err(ReplayError::NoRecord { action }),
        (Some(stock), action) => {
            let adjustment = StockLevel::new(quantity)
                .ok()
                .and_then(|level| Adjustment::new(action, level).ok())
                .ok_or(ReplayError::BadQuantity(quantity))?;
            stock
                .adjust(origin, adjustment)
                .map(Some)
                .map_err(|refusal| ReplayError::Refused {
                    action,
                    quantity,
                    refusal,
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(n: i64) -> Quantity {
        Quantity::new(n).expect("valid quantity")
    }

    #[test]
    fn quantities_outside_one_to_a_billion_are_refused() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-1).is_err());
        assert!(Quantity::new(1_000_000_001).is_err());
        assert!(Quantity::new(1_000_000_000_000).is_err());
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(
            Quantity::new(1_000_000_000).map(Quantity::get),
            Ok(1_000_000_000)
        );
    }

    #[test]
    fn stock_levels_run_from_zero_to_a_billion() {
        assert_eq!(StockLevel::new(0).map(StockLevel::get), Ok(0));
        assert_eq!(
            StockLevel::new(1_000_000_000).map(StockLevel::get),
            Ok(1_000_000_000)
        );
        assert_eq!(StockLevel::new(-1), Err(StockLevelError));
        assert_eq!(StockLevel::new(1_000_000_001), Err(StockLevelError));
    }

    #[test]
    fn only_create_and_set_take_a_zero_level() {
        let zero = StockLevel::new(0).expect("a level");
        assert_eq!(
            Adjustment::new(Action::Set, zero).map(Adjustment::quantity),
            Ok(0)
        );
        assert!(Adjustment::new(Action::Create, zero).is_ok());
        for action in [
            Action::Increment,
            Action::Decrement,
            Action::Allocate,
            Action::Deallocate,
            Action::Ship,
        ] {
            assert_eq!(Adjustment::new(action, zero), Err(QuantityError));
        }
        assert_eq!(Stock::created(zero).total(), 0);
    }

    #[test]
    fn setting_zero_empties_the_record_down_to_what_is_allocated() {
        let s = Stock::created(q(10));
        let zero = Adjustment::set(StockLevel::new(0).expect("a level"));
        let s0 = s.adjust(Origin::Manual, zero).expect("set 0");
        assert_eq!((s0.total(), s0.allocated()), (0, 0));
        let held = s.apply(Action::Allocate, q(3)).expect("allocate");
        assert_eq!(
            held.adjust(Origin::Manual, zero),
            Err(Refusal::BelowAllocated)
        );
        assert_eq!(
            replay_step(Some(s), Action::Set, 0, Origin::Manual),
            Ok(Some(s0))
        );
        assert_eq!(
            replay_step(None, Action::Create, 0, Origin::Manual).map(|s| s.map(|s| s.total())),
            Ok(Some(0))
        );
    }

    #[test]
    fn each_action_moves_the_figures_as_spec_says() {
        let s = Stock::created(q(10));
        let s = s.apply(Action::Allocate, q(4)).expect("allocate");
        assert_eq!((s.total(), s.allocated(), s.available()), (10, 4, 6));
        let s = s.apply(Action::Increment, q(5)).expect("increment");
        assert_eq!((s.total(), s.allocated(), s.available()), (15, 4, 11));
        let s = s.apply(Action::Decrement, q(11)).expect("decrement");
        assert_eq!((s.total(), s.allocated(), s.available()), (4, 4, 0));
        assert_eq!(
            s.apply(Action::Decrement, q(1)),
            Err(Refusal::InsufficientAvailable)
        );
        assert_eq!(
            s.apply(Action::Allocate, q(1)),
            Err(Refusal::InsufficientAvailable)
        );
        assert_eq!(s.apply(Action::Set, q(3)), Err(Refusal::BelowAllocated));
        let s = s.apply(Action::Set, q(9)).expect("set");
        assert_eq!((s.total(), s.allocated(), s.available()), (9, 4, 5));
        let s = s.apply(Action::Ship, q(3)).expect("ship");
        assert_eq!((s.total(), s.allocated(), s.available()), (6, 1, 5));
        assert_eq!(
            s.apply(Action::Deallocate, q(2)),
            Err(Refusal::InsufficientAllocated)
        );
        assert_eq!(
            s.apply(Action::Ship, q(2)),
            Err(Refusal::InsufficientAllocated)
        );
        let s = s.apply(Action::Deallocate, q(1)).expect("deallocate");
        assert_eq!((s.total(), s.allocated(), s.available()), (6, 0, 6));
    }

    #[test]
    fn what_orders_hold_cannot_be_released_by_hand() {
        let s = Stock::created(q(10))
            .apply_for_order(Action::Allocate, q(4))
            .expect("order allocates");
        let s = s.apply(Action::Allocate, q(2)).expect("admin allocates");
        assert_eq!((s.allocated(), s.held()), (6, 4));
        assert_eq!(
            s.apply(Action::Deallocate, q(3)),
            Err(Refusal::InsufficientAllocated),
            "only the 2 allocated by hand may be released by hand"
        );
        let s = s
            .apply(Action::Deallocate, q(2))
            .expect("admin releases its own");
        assert_eq!(
            s.apply_for_order(Action::Deallocate, q(5)),
            Err(Refusal::InsufficientAllocated)
        );
        let s = s.apply_for_order(Action::Ship, q(3)).expect("ship");
        assert_eq!((s.total(), s.allocated(), s.held()), (7, 1, 1));
        let s = s
            .apply_for_order(Action::Deallocate, q(1))
            .expect("release");
        assert_eq!((s.total(), s.allocated(), s.held()), (7, 0, 0));
        assert_eq!(
            s.apply_for_order(Action::Increment, q(1)),
            Err(Refusal::NotApplicable)
        );
        assert!(Stock::from_stored(5, 3, 4).is_err(), "held above allocated");
        assert_eq!(Stock::from_stored(5, 3, 2).map(|s| s.held()), Ok(2));
    }

    #[test]
    fn totals_cannot_grow_past_the_limit() {
        let s = Stock::from_figures(STOCK_TOTAL_MAX as i64 - 1, 0).expect("figures");
        assert!(s.apply(Action::Increment, q(1)).is_ok());
        assert_eq!(
            s.apply(Action::Increment, q(2)),
            Err(Refusal::TotalTooLarge)
        );
    }

    #[test]
    fn figures_that_break_an_invariant_are_refused() {
        assert!(Stock::from_figures(5, 6).is_err());
        assert!(Stock::from_figures(-1, 0).is_err());
        assert!(Stock::from_figures(5, -1).is_err());
        assert!(Stock::from_figures(5, 5).is_ok());
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("refund".parse::<Action>().is_err());
    }

    /// The reference model: plain signed integers and the rules of SPEC §1 written the
    /// obvious way, to check the real arithmetic against.
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Model {
        total: i128,
        allocated: i128,
    }

    impl Model {
        fn apply(self, action: Action, q: i128) -> Option<Model> {
            let (t, a) = (self.total, self.allocated);
            let next = match action {
                Action::Increment => Model {
                    total: t + q,
                    allocated: a,
                },
                Action::Decrement => Model {
                    total: t - q,
                    allocated: a,
                },
                Action::Allocate => Model {
                    total: t,
                    allocated: a + q,
                },
                Action::Deallocate => Model {
                    total: t,
                    allocated: a - q,
                },
                Action::Set => Model {
                    total: q,
                    allocated: a,
                },
                Action::Ship => Model {
                    total: t - q,
                    allocated: a - q,
                },
                Action::Create | Action::Delete => return None,
            };
            let ok = next.allocated >= 0
                && next.allocated <= next.total
                && next.total <= STOCK_TOTAL_MAX as i128;
            ok.then_some(next)
        }
    }

    fn changing_action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(Action::Increment),
            Just(Action::Decrement),
            Just(Action::Allocate),
            Just(Action::Deallocate),
            Just(Action::Set),
            Just(Action::Ship),
        ]
    }

    fn quantity() -> impl Strategy<Value = i64> {
        prop_oneof![1i64..20, 1i64..=1_000_000_000]
    }

    proptest! {
        #[test]
        fn any_sequence_of_actions_agrees_with_the_model_and_replays(
            start in quantity(),
            steps in proptest::collection::vec((changing_action(), quantity()), 0..200)
        ) {
            let mut stock = Stock::created(q(start));
            let mut model = Model { total: start as i128, allocated: 0 };
            let mut history = vec![(Action::Create, start)];
            for (action, n) in steps {
                let before = stock;
                match (stock.apply(action, q(n)), model.apply(action, n as i128)) {
                    (Ok(after), Some(expected)) => {
                        prop_assert_eq!(after.total() as i128, expected.total);
                        prop_assert_eq!(after.allocated() as i128, expected.allocated);
                        stock = after;
                        model = expected;
                        history.push((action, n));
                    }
                    (Err(_), None) => prop_assert_eq!(stock, before, "a refusal changed nothing"),
                    (real, expected) => prop_assert!(false, "real {:?} but model {:?}", real, expected),
                }
                prop_assert!(stock.allocated() <= stock.total());
                prop_assert_eq!(stock.available() + stock.allocated(), stock.total());
            }
            let mut replayed = None;
            for (action, n) in history {
                replayed = replay_step(replayed, action, n, Origin::Manual).expect("history replays");
            }
            prop_assert_eq!(replayed, Some(stock));
        }
    }

    #[test]
    fn replay_refuses_impossible_histories() {
        assert_eq!(
            replay_step(None, Action::Allocate, 1, Origin::Manual),
            Err(ReplayError::NoRecord {
                action: Action::Allocate
            })
        );
        let s = Some(Stock::created(q(1)));
        assert_eq!(
            replay_step(s, Action::Create, 1, Origin::Manual),
            Err(ReplayError::AlreadyExists)
        );
        assert!(matches!(
            replay_step(s, Action::Allocate, 2, Origin::Manual),
            Err(ReplayError::Refused { .. })
        ));
        assert_eq!(replay_step(s, Action::Delete, 1, Origin::Manual), Ok(None));
        assert_eq!(
            replay_step(s, Action::Allocate, 0, Origin::Manual),
            Err(ReplayError::BadQuantity(0))
        );
    }
}
