//! Setting stock levels (a record's total, and optionally its allocation) through the store's
//! ordinary commands — shared by the dashboard's "set" and `stockroom import`.
//!
//! A level may be 0 (SPEC §1): a new record is created at its level, 0 included, and an
//! existing one is `set` to it (refused while more units are allocated), so the history says
//! exactly what happened — one `create 0` or one `set 0`, never a passing phantom unit.
//!
//! A change is planned from the records as read and sent in [`PHASES`]: creations first, then
//! releases of allocations, then totals, then new allocations, so that each step is allowed by
//! the one before (a total below today's allocation needs the release first; an allocation
//! beyond today's total needs the new total first). Replanning from what the database holds
//! makes a rerun after a crash finish the job, and a second run change nothing.

use stockroom_domain::{Action, Adjustment, ProductId, Quantity, Stock, StockLevel};
use stockroom_store::{Command, ProductStock};

/// The order in which a plan's commands are sent; commands of one phase may run together.
pub const PHASES: usize = 4;
const CREATE: usize = 0;
const RELEASE: usize = 1;
const TOTAL: usize = 2;
const ALLOCATE: usize = 3;

/// What one record should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub location: String,
    pub total: StockLevel,
    /// Allocated units to reach (by hand: as manual allocations); `None` leaves them alone.
    pub allocated: Option<StockLevel>,
}

/// How a record fares under a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub created: u64,
    pub changed: u64,
    pub unchanged: u64,
}

/// The commands that bring a product's records to its targets, by phase.
#[derive(Debug, Default)]
pub struct Plan {
    pub phases: [Vec<Command>; PHASES],
    pub tally: Tally,
}

fn units(n: u64) -> Option<Quantity> {
    Quantity::new(i64::try_from(n).ok()?).ok()
}

fn transact(
    product: &ProductId,
    location: &str,
    adjustment: Adjustment,
    reason: Option<&str>,
) -> Command {
    Command::Transact {
        product: product.clone(),
        location: location.to_owned(),
        adjustment,
        order_id: None,
        reason: reason.map(str::to_owned),
    }
}

/// Plans one product's targets against its stock as read (`None`: not stock-managed).
pub fn plan(
    product: &ProductId,
    current: Option<&ProductStock>,
    targets: &[Target],
    reason: Option<&str>,
) -> Plan {
    let mut plan = Plan::default();
    let mut created = Vec::new();
    for t in targets {
        let now = current.and_then(|p| p.at(&t.location)).map(|r| r.stock);
        let (now, fresh) = match now {
            Some(stock) => (stock, false),
            None => {
                // New records start at the level (0 included), with nothing allocated.
                created.push((t.location.clone(), t.total));
                (Stock::created(t.total), true)
            }
        };
        let steps = record_steps(product, &t.location, now, t, reason);
        let touched = fresh || steps.iter().any(|(_, c)| c.is_some());
        for (phase, command) in steps {
            plan.phases[phase].extend(command);
        }
        match (fresh, touched) {
            (true, _) => plan.tally.created += 1,
            (false, true) => plan.tally.changed += 1,
            (false, false) => plan.tally.unchanged += 1,
        }
    }
    if !created.is_empty() {
        plan.phases[CREATE].push(match current {
            None => Command::Create {
                product: product.clone(),
                records: created,
            },
            Some(_) => Command::SetLocations {
                product: product.clone(),
                changes: created.into_iter().map(|(l, q)| (l, Some(q))).collect(),
            },
        });
    }
    plan
}

/// The steps that take one record from `now` to its target.
fn record_steps(
    product: &ProductId,
    location: &str,
    now: Stock,
    t: &Target,
    reason: Option<&str>,
) -> [(usize, Option<Command>); 3] {
    let want_allocated = t.allocated.map_or(now.allocated(), StockLevel::get);
    let release = now.allocated().checked_sub(want_allocated).and_then(units);
    let allocate = want_allocated.checked_sub(now.allocated()).and_then(units);
    let total = (t.total.get() != now.total())
        .then(|| transact(product, location, Adjustment::set(t.total), reason));
    let by = |action| move |q| transact(product, location, Adjustment::of(action, q), reason);
    [
        (RELEASE, release.map(by(Action::Deallocate))),
        (TOTAL, total),
        (ALLOCATE, allocate.map(by(Action::Allocate))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use stockroom_store::{StockRecord, NO_LOCATION};

    fn level(n: i64) -> StockLevel {
        StockLevel::new(n).expect("a level")
    }

    fn stock_of(product: &ProductId, records: &[(&str, Stock)]) -> ProductStock {
        let records = records
            .iter()
            .map(|(l, s)| StockRecord {
                product_id: product.clone(),
                location: (*l).to_owned(),
                stock: *s,
                created_at: stockroom_domain::Timestamp(0),
                updated_at: stockroom_domain::Timestamp(0),
            })
            .collect();
        ProductStock::group(records).remove(0)
    }

    fn q(n: i64) -> Quantity {
        Quantity::new(n).expect("a quantity")
    }

    fn tx(p: &ProductId, at: &str, action: Action, n: i64, reason: Option<&str>) -> Command {
        let adjustment = Adjustment::new(action, level(n)).expect("an adjustment");
        transact(p, at, adjustment, reason)
    }

    #[test]
    fn a_record_at_its_level_needs_nothing_and_others_are_set() {
        let p = ProductId::parse("p").expect("id");
        let stock = stock_of(&p, &[(NO_LOCATION, Stock::created(q(5)))]);
        let same = plan(
            &p,
            Some(&stock),
            &[Target {
                location: NO_LOCATION.into(),
                total: level(5),
                allocated: None,
            }],
            Some("import"),
        );
        assert_eq!(
            same.tally,
            Tally {
                unchanged: 1,
                ..Tally::default()
            }
        );
        assert!(same.phases.iter().all(Vec::is_empty));
        let set = plan(
            &p,
            Some(&stock),
            &[Target {
                location: NO_LOCATION.into(),
                total: level(9),
                allocated: None,
            }],
            Some("import"),
        );
        assert_eq!(set.tally.changed, 1);
        assert_eq!(
            set.phases[TOTAL],
            vec![tx(&p, NO_LOCATION, Action::Set, 9, Some("import"))]
        );
    }

    #[test]
    fn a_level_of_zero_is_a_set_to_zero_and_a_new_zero_record_is_created_at_zero() {
        let p = ProductId::parse("p").expect("id");
        let stock = stock_of(&p, &[(NO_LOCATION, Stock::created(q(5)))]);
        let zero = plan(
            &p,
            Some(&stock),
            &[Target {
                location: NO_LOCATION.into(),
                total: level(0),
                allocated: None,
            }],
            Some("r"),
        );
        assert_eq!(
            zero.phases[TOTAL],
            vec![tx(&p, NO_LOCATION, Action::Set, 0, Some("r"))]
        );
        let fresh = plan(
            &p,
            None,
            &[Target {
                location: NO_LOCATION.into(),
                total: level(0),
                allocated: None,
            }],
            Some("r"),
        );
        assert_eq!(
            fresh.phases[CREATE],
            vec![Command::Create {
                product: p.clone(),
                records: vec![(NO_LOCATION.into(), level(0))]
            }]
        );
        // No phantom unit: nothing else is sent.
        assert!(fresh.phases[RELEASE..].iter().all(Vec::is_empty));
        assert_eq!(fresh.tally.created, 1);
    }

    #[test]
    fn allocations_are_released_before_and_made_after_the_total() {
        let p = ProductId::parse("p").expect("id");
        let held = Stock::created(q(10))
            .apply(Action::Allocate, q(4))
            .expect("allocate");
        let stock = stock_of(&p, &[("wh", held)]);
        let down = plan(
            &p,
            Some(&stock),
            &[Target {
                location: "wh".into(),
                total: level(3),
                allocated: Some(level(1)),
            }],
            Some("r"),
        );
        assert_eq!(
            down.phases[RELEASE],
            vec![tx(&p, "wh", Action::Deallocate, 3, Some("r"))]
        );
        assert_eq!(
            down.phases[TOTAL],
            vec![tx(&p, "wh", Action::Set, 3, Some("r"))]
        );
        let new_place = plan(
            &p,
            Some(&stock),
            &[Target {
                location: "shop".into(),
                total: level(8),
                allocated: Some(level(2)),
            }],
            Some("r"),
        );
        assert_eq!(
            new_place.phases[CREATE],
            vec![Command::SetLocations {
                product: p.clone(),
                changes: vec![("shop".into(), Some(level(8)))]
            }]
        );
        assert_eq!(
            new_place.phases[ALLOCATE],
            vec![tx(&p, "shop", Action::Allocate, 2, Some("r"))]
        );
    }
}
