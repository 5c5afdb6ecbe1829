//! Retention of unpaid orders (issue 12 finding 5): orders that were checked out and never
//! paid hold no stock and no history names them, yet anonymous shoppers can make many. They
//! may be removed once old enough; paid orders (and every order a payment was ever tried for)
//! are kept.

use stockroom_domain::Timestamp;

use crate::api::Store;
use crate::error::StoreError;
use crate::model::{Command, Outcome, WriteRequest};

/// Orders removed per round of [`purge_unpaid_orders`].
const PURGE_BATCH: u64 = 500;

/// Removes every order never paid (payment `unpaid`, no payment transaction at all) made
/// before `before`, with its items, each through the writer ([`Command::PurgeUnpaid`], which
/// checks again under the order's lock, so an order being paid meanwhile is kept); returns how
/// many it removed. Releases nothing: such an order never held stock.
pub async fn purge_unpaid_orders(store: &dyn Store, before: Timestamp) -> Result<u64, StoreError> {
    let mut removed = 0;
    loop {
        let ids = store.unpaid_orders_before(before, PURGE_BATCH).await?;
        let mut progressed = false;
        for order_id in &ids {
            let answer = store
                .execute(WriteRequest::new(Command::PurgeUnpaid {
                    order_id: order_id.clone(),
                    created_before: before,
                }))
                .await?;
            if matches!(answer.outcome, Outcome::Applied(_)) {
                removed += 1;
                progressed = true;
            }
        }
        if (ids.len() as u64) < PURGE_BATCH || !progressed {
            return Ok(removed);
        }
    }
}
