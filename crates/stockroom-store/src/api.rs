//! The [`Store`] trait: all that the HTTP layer and the CLI need from storage.

use async_trait::async_trait;
use stockroom_domain::{ProductId, Timestamp};

use crate::error::StoreError;
use crate::events::EventStore;
use crate::model::*;
use crate::operator::OperatorStore;
use crate::verify::VerifyReport;

/// All that the HTTP layer and the CLI need from storage. Each method is atomic on its own.
#[async_trait]
pub trait Store: OperatorStore + EventStore + Send + Sync + 'static {
    /// Applies one write (create, transact, delete) through the group-commit writer, honouring
    /// its idempotency key. `Ok` carries the outcome, applied or refused; `Err` means the
    /// outcome is not known to have happened and nothing was acknowledged.
    async fn execute(&self, request: WriteRequest) -> Result<Answer, StoreError>;

    /// A product's stock (every location), if it has any.
    async fn stock(&self, product: &ProductId) -> Result<Option<ProductStock>, StoreError>;
    /// Products with stock, by id; with `location`, only those with a record there.
    async fn stocks(
        &self,
        page: Page,
        location: Option<&str>,
    ) -> Result<Paged<ProductStock>, StoreError>;
    /// The stock of those ids that have any, in the order asked.
    async fn stocks_by_ids(&self, ids: &[ProductId]) -> Result<Vec<ProductStock>, StoreError>;

    async fn locations(&self, page: Page) -> Result<Paged<Location>, StoreError>;
    async fn location(&self, id: &str) -> Result<Option<Location>, StoreError>;
    async fn location_by_slug(&self, slug: &str) -> Result<Option<Location>, StoreError>;
    /// Replaces a location's fields; [`StoreError::AlreadyExists`] if the new slug is taken, or the
    /// slug changes while the location holds stock.
    async fn update_location(&self, location: &Location) -> Result<Option<Location>, StoreError>;

    /// A product's history, newest first.
    async fn history(
        &self,
        product: &ProductId,
        query: &HistoryQuery,
        page: Page,
    ) -> Result<Paged<HistoryEntry>, StoreError>;
    async fn history_entry(
        &self,
        product: &ProductId,
        id: &str,
    ) -> Result<Option<HistoryEntry>, StoreError>;

    /// Replays every history entry and compares it with every stock record.
    async fn verify(&self) -> Result<VerifyReport, StoreError>;

    /// Adds a credential; [`StoreError::AlreadyExists`] if the client id is taken.
    async fn insert_credential(&self, credential: &Credential) -> Result<(), StoreError>;
    /// Adds the credential, or replaces the secret and role of the one with its client id.
    async fn upsert_credential(&self, credential: &Credential) -> Result<(), StoreError>;
    async fn credential(&self, client_id: &str) -> Result<Option<Credential>, StoreError>;
    async fn credential_count(&self) -> Result<u64, StoreError>;

    /// The value of a setting, writing `candidate` first if it has none (the first writer wins,
    /// also across instances).
    async fn setting_or_insert(&self, name: &str, candidate: &str) -> Result<String, StoreError>;

    /// Every credential (at most `limits::CREDENTIALS_MAX`), by client id.
    async fn credentials(&self) -> Result<Vec<Credential>, StoreError>;
    /// Removes a credential; whether there was one.
    async fn delete_credential(&self, client_id: &str) -> Result<bool, StoreError>;
    /// The value of a setting, if it has one.
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Sets a setting, replacing any value it had.
    async fn set_setting(&self, name: &str, value: &str) -> Result<(), StoreError>;

    /// Whether the database is ready for this instance's writes (readiness): it answers within
    /// a second and, on PostgreSQL, is a writable primary, not a standby.
    async fn ping(&self) -> Result<(), StoreError>;

    // The order flow's reads, and the writes that touch no stock.
    async fn product(&self, id: &str) -> Result<Option<Product>, StoreError>;
    async fn product_by_sku(&self, sku: &str) -> Result<Option<Product>, StoreError>;
    async fn products(&self, page: Page) -> Result<Paged<Product>, StoreError>;
    /// [`StoreError::AlreadyExists`] when the new SKU is taken.
    async fn update_product(
        &self,
        id: &ProductId,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> Result<Option<Product>, StoreError>;
    /// Removes a product and its cart lines (through the writer); `false` if there is none.
    async fn delete_product(&self, id: &ProductId) -> Result<bool, StoreError>;
    async fn cart(&self, id: &str) -> Result<Option<Cart>, StoreError>;
    /// Removes a cart item (through the writer); `false` if there is none.
    async fn delete_cart_item(&self, cart_id: &str, item_id: &str) -> Result<bool, StoreError>;
    /// Removes a cart and its items (through the writer); `false` if there is none.
    async fn delete_cart(&self, cart_id: &str) -> Result<bool, StoreError>;
    async fn order(&self, id: &str) -> Result<Option<Order>, StoreError>;
    /// Newest first.
    async fn orders(&self, query: &OrderQuery, page: Page) -> Result<Paged<Order>, StoreError>;
    async fn payments(&self, order_id: &str) -> Result<Vec<PaymentTx>, StoreError>;
    async fn payment(&self, order_id: &str, id: &str) -> Result<Option<PaymentTx>, StoreError>;
    /// A new customer: [`StoreError::AlreadyExists`] when the email is taken.
    async fn create_customer(&self, customer: &Customer) -> Result<(), StoreError>;
    async fn customer(&self, id: &str) -> Result<Option<Customer>, StoreError>;
    async fn customer_by_email(&self, email: &str) -> Result<Option<Customer>, StoreError>;
    async fn customers(&self, page: Page) -> Result<Paged<Customer>, StoreError>;
    /// `None` if there is no such customer; [`StoreError::AlreadyExists`] when the new email
    /// is taken.
    async fn update_customer(
        &self,
        id: &str,
        patch: &CustomerPatch,
        now: Timestamp,
    ) -> Result<Option<Customer>, StoreError>;
    async fn delete_customer(&self, id: &str) -> Result<bool, StoreError>;
    /// A customer's carts, most recently changed first.
    async fn customer_carts(
        &self,
        customer_id: &str,
        page: Page,
    ) -> Result<Paged<Cart>, StoreError>;
    /// Deletes the carts (and their items) last changed before `idle_before`, except any a
    /// write is changing at that moment; returns how many.
    async fn purge_carts(&self, idle_before: Timestamp) -> Result<u64, StoreError>;
    /// Forgets idempotency keys stored before `before`; returns how many.
    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64, StoreError>;
    /// Authorizations made before `before` that were never captured nor voided (their order
    /// still `authorized`), oldest first: what the sweep voids ([`Command::Void`]).
    async fn overdue_authorizations(
        &self,
        before: Timestamp,
        limit: u64,
    ) -> Result<Vec<PaymentTx>, StoreError>;
    /// Ids of orders never paid (no payment transaction at all) made before `before`, oldest
    /// first: what [`Command::PurgeUnpaid`] removes.
    async fn unpaid_orders_before(
        &self,
        before: Timestamp,
        limit: u64,
    ) -> Result<Vec<String>, StoreError>;
    /// Pending payment attempts whose outcome is overdue, oldest first.
    async fn expired_payments(
        &self,
        now: Timestamp,
        limit: u64,
    ) -> Result<Vec<PaymentTx>, StoreError>;
}
