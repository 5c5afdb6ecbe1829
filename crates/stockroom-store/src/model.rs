//! The records the store reads and writes, and the requests it takes.

use stockroom_domain::order::{OrderError, OrderState, PaymentMethod};
use stockroom_domain::{
    Action, Adjustment, ProductId, Quantity, Refusal, Role, Stock, StockLevel, Timestamp,
};
pub use stockroom_domain::{Currency, Money, Price};

/// The slug of the location that holds a stock record; empty for stock that uses no
/// locations (classic stock).
pub const NO_LOCATION: &str = "";

/// One stock record: a product's stock at one location (or at none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockRecord {
    pub product_id: ProductId,
    /// The location's slug, or [`NO_LOCATION`].
    pub location: String,
    pub stock: Stock,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// All of a product's stock: the sums over its records, and the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductStock {
    pub product_id: ProductId,
    pub total: u64,
    pub allocated: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Every record, the one with no location first if there is one, then by slug.
    pub records: Vec<StockRecord>,
}

impl ProductStock {
    /// Groups records (ordered by product) into one entry per product.
    pub fn group(records: Vec<StockRecord>) -> Vec<ProductStock> {
        let mut out: Vec<ProductStock> = Vec::new();
        for r in records {
            match out.last_mut() {
                Some(p) if p.product_id == r.product_id => {
                    p.total += r.stock.total();
                    p.allocated += r.stock.allocated();
                    p.created_at = p.created_at.min(r.created_at);
                    p.updated_at = p.updated_at.max(r.updated_at);
                    p.records.push(r);
                }
                _ => out.push(ProductStock {
                    product_id: r.product_id.clone(),
                    total: r.stock.total(),
                    allocated: r.stock.allocated(),
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                    records: vec![r],
                }),
            }
        }
        out
    }

    pub fn available(&self) -> u64 {
        self.total - self.allocated
    }

    /// The record at one location (or at none).
    pub fn at(&self, location: &str) -> Option<&StockRecord> {
        self.records.iter().find(|r| r.location == location)
    }
}

/// A place that holds stock (Elastic Path's `inventory_location`).
#[derive(Clone, Debug, PartialEq)]
pub struct Location {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub external_ref: Option<String>,
    pub description: Option<String>,
    pub address: Vec<String>,
    pub geolocation: Option<(f64, f64)>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One immutable history entry, with the figures after the change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub id: String,
    pub product_id: ProductId,
    /// The slug of the location changed, or [`NO_LOCATION`].
    pub location: String,
    pub action: Action,
    pub quantity: u64,
    pub after: Stock,
    pub order_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: Timestamp,
}

/// A write, as the writer takes it.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start managing stock for a product, with one record per location given (the location
    /// [`NO_LOCATION`] for classic stock): refused if the product has stock already.
    Create {
        product: ProductId,
        records: Vec<(String, StockLevel)>,
    },
    /// One action on an existing record (increment, decrement, allocate, deallocate, set, ship).
    Transact {
        product: ProductId,
        location: String,
        adjustment: Adjustment,
        order_id: Option<String>,
        reason: Option<String>,
    },
    /// Stop managing stock for a product (every record): refused while units are allocated.
    Delete { product: ProductId },
    /// Change a product's records per location, all at once: `Some(available)` sets what is
    /// available there (creating the record if needed), `None` removes the record (refused
    /// while it has allocated units).
    SetLocations {
        product: ProductId,
        changes: Vec<(String, Option<StockLevel>)>,
    },
    /// Add a location: refused if its slug is taken.
    CreateLocation(Location),
    /// Remove a location: refused while it holds stock.
    DeleteLocation { id: String },
    /// Add a product to the catalog: refused if its id or SKU is taken.
    CreateProduct(Product),
    /// Add a product and start managing its stock at 0 (the legacy API's `manage_stock`),
    /// both or neither: refused if its id or SKU is taken or it has stock already.
    CreateProductWithStock(Product),
    /// Add items to a cart (creating it): each line's product must have the quantity asked
    /// available (this request's quantity only); a line for a product already in the cart adds
    /// to it. All or nothing.
    AddToCart {
        cart_id: String,
        lines: Vec<CartLine>,
        /// Custom items added with them: each a line of its own, never stock-managed.
        custom: Vec<CustomItem>,
    },
    /// Set a cart item's quantity, checking it is available.
    UpdateCartItem {
        cart_id: String,
        item_id: String,
        quantity: Quantity,
    },
    /// Remove one item from a cart.
    DeleteCartItem { cart_id: String, item_id: String },
    /// Remove a cart and its items.
    DeleteCart { cart_id: String },
    /// Create an empty cart with a name and a description (its id is new: refused if taken).
    CreateCart {
        cart_id: String,
        name: String,
        description: String,
        /// The customer whose token created it, if any.
        customer_id: Option<String>,
    },
    /// Change a cart's name or description (`None` keeps it): refused if there is no cart.
    UpdateCart {
        cart_id: String,
        name: Option<String>,
        description: Option<String>,
    },
    /// Remove every item of a cart, keeping the cart: refused if there is no cart.
    EmptyCart { cart_id: String },
    /// Associate a cart with a customer (Elastic Path's cart–customer relationship): refused
    /// if there is no cart.
    SetCartCustomer {
        cart_id: String,
        customer_id: String,
    },
    /// Set the quantities of several items at once, all or none: each item must be in the cart
    /// and its product must have the quantity asked available (as for one item); a quantity of
    /// 0 removes the item (Elastic Path's bulk update).
    UpdateCartItems {
        cart_id: String,
        items: Vec<(String, StockLevel)>,
    },
    /// Remove a product from the catalog, and from every cart that holds it.
    DeleteProduct { product: ProductId },
    /// Turn a cart into an order: its items priced from the catalog as it is now, after a final
    /// check that stock covers every line (summed per record). Nothing is allocated.
    Checkout(NewOrder),
    /// Allocate every line of an order at once (its items summed per record) and record a
    /// pending payment attempt for the order's total; with `settled`, record its outcome in
    /// the same step (the manual gateway, which cannot fail).
    Pay {
        order_id: String,
        payment: NewPayment,
        settled: bool,
        /// Whether the caller may pay through the payment's gateway now. Refused
        /// ([`Rejection::GatewayDisabled`]) only once the request's idempotency key is known to
        /// be new: a replay of a payment made while the gateway was enabled still answers what
        /// it answered then.
        gateway_enabled: bool,
    },
    /// Record the outcome of a pending attempt, exactly once: on failure its allocation is
    /// released.
    Settle {
        order_id: String,
        payment_id: String,
        approved: bool,
        failure: Option<String>,
    },
    /// Capture an authorized payment.
    Capture {
        order_id: String,
        authorization_id: String,
        capture_id: String,
    },
    /// Mark a paid order shipped: its allocation becomes `ship` entries.
    Ship { order_id: String },
    /// Cancel an order, releasing its allocation if it holds one.
    Cancel { order_id: String },
    /// Change an order's details (`order_number`, `external_ref`, shipping address) and, with
    /// `then`, ship or cancel it in the same step: every change is applied, or none.
    UpdateOrder {
        order_id: String,
        details: OrderDetails,
        then: Option<OrderChange>,
    },
    /// Void (cancel) an authorization that was not captured: its allocation is released,
    /// exactly once, and the order is unpaid again. `overdue_before`: only if the
    /// authorization was made before that instant (the sweep of authorizations never
    /// captured; a capture meanwhile makes it a refusal).
    Void {
        order_id: String,
        authorization_id: String,
        overdue_before: Option<Timestamp>,
    },
    /// Remove an order that was never paid (payment `unpaid`, no payment transaction at all,
    /// so it never held stock) and that no history entry names, created before
    /// `created_before`, with its items. Anything else is refused and kept.
    PurgeUnpaid {
        order_id: String,
        created_before: Timestamp,
    },
    /// Record `amount` (minor units; `None`: all that is left) given back for a paid
    /// transaction, as a new `refund` transaction. Moves no stock; never more than was paid.
    Refund {
        order_id: String,
        transaction_id: String,
        refund_id: String,
        amount: Option<i64>,
    },
}

/// What a command is routed to a writer lane by ([`Command::lane`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaneKey<'a> {
    /// The lane of this product's stock.
    Product(&'a str),
    /// The lane of cart writes and checkouts.
    Carts,
    /// The lane of payments and the rest.
    Orders,
}

/// A line to add to a cart. The batch reads the product's catalog record (its currency) itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartLine {
    pub product: ProductId,
    /// Where the line's stock is taken from, or [`NO_LOCATION`].
    pub location: String,
    pub quantity: Quantity,
}

/// An item sold beside the catalog's products (Elastic Path's `custom_item`): a name, SKU and
/// price of its own, never stock-managed, each its own cart line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomItem {
    pub name: String,
    pub sku: String,
    pub price: Price,
    pub quantity: Quantity,
}

/// One line of a multi-line write: a product and a quantity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub product: ProductId,
    pub location: String,
    pub quantity: Quantity,
}

impl Command {
    /// The products whose stock records (at every location) this command changes and names
    /// itself; the writer locks them up front. The stock of an order's items is locked through
    /// [`Command::order_id`].
    pub fn products(&self) -> Vec<&ProductId> {
        match self {
            Command::Create { product, .. }
            | Command::Transact { product, .. }
            | Command::Delete { product }
            | Command::SetLocations { product, .. } => vec![product],
            Command::CreateProductWithStock(p) => vec![&p.id],
            _ => Vec::new(),
        }
    }

    /// The products whose stock this command only checks (adding to a cart reserves nothing):
    /// read without a lock. The stock of a checked-out cart's items is read through
    /// [`Command::cart_id`].
    pub fn checked_products(&self) -> Vec<&ProductId> {
        match self {
            Command::AddToCart { lines, .. } => lines.iter().map(|l| &l.product).collect(),
            _ => Vec::new(),
        }
    }

    /// Which writer lane the command goes to. Commands of one lane gather into one batch, so a
    /// flash sale's writes form large batches on one lane instead of small ones queueing on one
    /// row lock from every lane: stock writes go by product; the order flow's cart writes and
    /// checkouts (which lock no stock) share one lane, and its payments and other stock changes
    /// (whose products the batch reads) another.
    pub fn lane(&self) -> LaneKey<'_> {
        match (self.products().first(), self.cart_id()) {
            (Some(product), _) => LaneKey::Product(product.as_str()),
            (None, Some(_)) => LaneKey::Carts,
            (None, None) => LaneKey::Orders,
        }
    }

    /// The order this command changes, if any: locked, with its items' stock.
    pub fn order_id(&self) -> Option<&str> {
        match self {
            Command::Pay { order_id, .. }
            | Command::Settle { order_id, .. }
            | Command::Capture { order_id, .. }
            | Command::Ship { order_id }
            | Command::Cancel { order_id }
            | Command::UpdateOrder { order_id, .. }
            | Command::Void { order_id, .. }
            | Command::PurgeUnpaid { order_id, .. }
            | Command::Refund { order_id, .. } => Some(order_id),
            _ => None,
        }
    }

    /// The cart this command reads or changes, if any: locked, and its items read.
    pub fn cart_id(&self) -> Option<&str> {
        match self {
            Command::AddToCart { cart_id, .. }
            | Command::UpdateCartItem { cart_id, .. }
            | Command::DeleteCartItem { cart_id, .. }
            | Command::DeleteCart { cart_id }
            | Command::CreateCart { cart_id, .. }
            | Command::UpdateCart { cart_id, .. }
            | Command::EmptyCart { cart_id }
            | Command::SetCartCustomer { cart_id, .. }
            | Command::UpdateCartItems { cart_id, .. } => Some(cart_id),
            Command::Checkout(order) => Some(&order.cart_id),
            _ => None,
        }
    }

    /// Whether the stock of every product in the command's cart is read too (checkout and item
    /// updates check it; nothing is reserved, so it is read without a lock).
    pub fn checks_cart_stock(&self) -> bool {
        matches!(
            self,
            Command::Checkout(_) | Command::UpdateCartItem { .. } | Command::UpdateCartItems { .. }
        )
    }

    /// The location slugs this command names, whose existence the batch reads up front.
    pub fn slugs(&self) -> Vec<&str> {
        let named: Vec<&str> = match self {
            Command::Create { records, .. } => records.iter().map(|(l, _)| l.as_str()).collect(),
            Command::SetLocations { changes, .. } => {
                changes.iter().map(|(l, _)| l.as_str()).collect()
            }
            Command::AddToCart { lines, .. } => lines.iter().map(|l| l.location.as_str()).collect(),
            _ => Vec::new(),
        };
        named.into_iter().filter(|l| *l != NO_LOCATION).collect()
    }

    /// Whether applying this command runs statements of its own inside the batch (reads or
    /// writes the batch does not keep in memory). The batch writes the rows it has kept back
    /// before such a command, so that its statements see every earlier job's writes.
    pub fn runs_statements(&self) -> bool {
        matches!(
            self,
            Command::CreateProduct(_)
                | Command::CreateProductWithStock(_)
                | Command::DeleteProduct { .. }
                | Command::CreateLocation(_)
                | Command::DeleteLocation { .. }
                | Command::Settle { .. }
                | Command::Capture { .. }
                | Command::Ship { .. }
                | Command::Cancel { .. }
                | Command::UpdateOrder { .. }
                | Command::Void { .. }
                | Command::PurgeUnpaid { .. }
                | Command::Refund { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    pub price: Price,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Changes to a product; `None` keeps a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProductPatch {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub price: Option<Price>,
}

/// A cart item with what the catalog says of its product now (`None`: no product record). A
/// custom item's `product` is its own name, SKU and price (its `product_id` is its own id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CartItem {
    pub id: String,
    pub product_id: ProductId,
    pub location: String,
    pub quantity: u64,
    pub product: Option<Product>,
    /// A custom item (never stock-managed).
    pub custom: bool,
    /// Whether the product has a stock record.
    pub managed: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A customer (Elastic Path's customer resource); the password only as an argon2 hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub name: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Changes to a customer; `None` keeps a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomerPatch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub password_hash: Option<String>,
}

/// The name of a cart made by its first item (Elastic Path's default).
pub const DEFAULT_CART_NAME: &str = "Cart";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cart {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The customer the cart is associated with, if any.
    pub customer_id: Option<String>,
    pub items: Vec<CartItem>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An order line, priced as at checkout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderItem {
    pub id: String,
    /// A custom item's own id, for a custom item.
    pub product_id: ProductId,
    /// A custom item: never allocated or shipped.
    pub custom: bool,
    pub location: String,
    pub name: String,
    pub sku: String,
    pub quantity: Quantity,
    pub unit_price: Price,
}

/// What checkout needs besides the cart's items, which it reads and prices itself: the new
/// order's id, and its customer and addresses (JSON objects, kept as given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub id: String,
    pub cart_id: String,
    /// The customer the order is for (a customer token's, else the cart's, if any).
    pub customer_id: Option<String>,
    pub customer: String,
    pub billing_address: String,
    pub shipping_address: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub cart_id: String,
    /// The customer the order is for (`relationships.customer`), if any.
    pub customer_id: Option<String>,
    pub state: OrderState,
    pub customer: String,
    pub billing_address: String,
    pub shipping_address: String,
    /// Set by an administrator ([`Command::UpdateOrder`]); `None`: not set.
    pub order_number: Option<String>,
    pub external_ref: Option<String>,
    pub total: Money,
    /// Minor units taken by completed purchases and captures, before refunds.
    pub paid_gross: i64,
    /// Minor units given back by completed refunds.
    pub refunded: i64,
    pub items: Vec<OrderItem>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Filters on the order list; every field is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only this customer's orders.
    pub customer_id: Option<String>,
    pub status: Option<stockroom_domain::order::Status>,
    pub payment: Option<stockroom_domain::order::Payment>,
    pub shipping: Option<stockroom_domain::order::Shipping>,
    /// Further terms, all of which an order must meet.
    pub terms: Vec<OrderFilter>,
    pub sort: OrderSort,
}

/// A term of the order list's filter beyond status, payment and shipping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderFilter {
    /// A text field equal to the value, or (`Like`) matching it.
    Text {
        field: OrderText,
        matching: TextMatch,
        value: String,
    },
    /// The total (minor units) compared with a value.
    Total(Compare, i64),
    /// A timestamp compared with an instant.
    Time(OrderTime, Compare, Timestamp),
    /// An item of this product.
    ProductId(String),
    /// An item of this SKU.
    ProductSku(String),
}

/// The order text fields a filter may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderText {
    /// `customer.name`
    Name,
    /// `customer.email`
    Email,
    ExternalRef,
    OrderNumber,
    Currency,
    /// `shipping_address.postcode`
    ShippingPostcode,
    /// `billing_address.postcode`
    BillingPostcode,
}

/// How a text term matches: exactly, or as a pattern where `*` stands for any text
/// (ignoring ASCII case).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextMatch {
    Eq,
    Like,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Compare {
    pub fn sql(self) -> &'static str {
        match self {
            Compare::Eq => "=",
            Compare::Gt => ">",
            Compare::Ge => ">=",
            Compare::Lt => "<",
            Compare::Le => "<=",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OrderTime {
    #[default]
    CreatedAt,
    UpdatedAt,
}

/// The order of the order list: by creation (the default, newest first) or last update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderSort {
    pub by: OrderTime,
    pub ascending: bool,
}

/// Details of an order an administrator may change: `None` keeps a field, `Some(None)`
/// clears it (the shipping address cannot be cleared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderDetails {
    pub order_number: Option<Option<String>>,
    pub external_ref: Option<Option<String>>,
    /// A JSON object, kept as given.
    pub shipping_address: Option<String>,
}

impl OrderDetails {
    pub fn is_empty(&self) -> bool {
        self.order_number.is_none()
            && self.external_ref.is_none()
            && self.shipping_address.is_none()
    }
}

/// A change of an order's state that [`Command::UpdateOrder`] may make with its details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderChange {
    Ship,
    Cancel,
}

/// A payment attempt as `Pay` records it. Its amount is the order's total and its lines the
/// order's items summed per record, both read by the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPayment {
    pub id: String,
    pub gateway: String,
    pub method: PaymentMethod,
    /// When an attempt whose outcome was never recorded is released.
    pub expires_at: Timestamp,
}

/// Spelled in the database and in answers as its lowercase name.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vmeta])* $variant),* }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)* _ => None }
            }
        }
    };
}

stored_enum!(PaymentStatus {
    Pending = "pending",
    Complete = "complete",
    Failed = "failed",
    /// An authorization voided before it was captured (its allocation released).
    Cancelled = "cancelled",
});

stored_enum!(AllocationState {
    /// The transaction allocates nothing (a capture, or an order of unmanaged products).
    None = "none",
    Held = "held",
    Shipped = "shipped",
    Released = "released",
});

stored_enum!(
    /// What a payment transaction is.
    TransactionType {
        Purchase = "purchase",
        Authorize = "authorize",
        Capture = "capture",
        /// Money given back for a purchase or capture; moves no stock.
        Refund = "refund",
    }
);

impl From<PaymentMethod> for TransactionType {
    fn from(method: PaymentMethod) -> Self {
        match method {
            PaymentMethod::Purchase => TransactionType::Purchase,
            PaymentMethod::Authorize => TransactionType::Authorize,
        }
    }
}

/// A payment transaction: a purchase, authorize or capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentTx {
    pub id: String,
    pub order_id: String,
    pub gateway: String,
    pub transaction_type: TransactionType,
    pub status: PaymentStatus,
    pub amount: Money,
    pub lines: Vec<Line>,
    pub allocation: AllocationState,
    pub failure: Option<String>,
    pub expires_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An `Idempotency-Key`, scoped to the route it was sent to, with a fingerprint of the request
/// so that the same key with a different request is told apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq)]
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
    /// The order flow's stock check failed: add to cart, checkout or pay (400 `Insufficient
    /// stock`, naming no product and no quantity).
    OutOfStock,
    /// A product's id or SKU is taken.
    ProductTaken,
    /// The cart would exceed a limit (lines, or a line's quantity).
    CartLimit,
    /// A cart holds one currency.
    CurrencyMismatch,
    /// The order flow's state machine refused the transition (409).
    Order(OrderError),
    /// The product's stock is held at locations: the request must name one (400).
    LocationRequired,
    /// A location's slug is taken, or it still holds stock (409).
    LocationInUse,
    /// Checkout of a cart with no items (400).
    CartEmpty,
    /// An order's total would not fit (400).
    OrderTotalTooLarge,
    /// An order would have more lines or units than `limits::ORDER_LINES_MAX` /
    /// `limits::ORDER_UNITS_MAX` (400).
    OrderTooLarge,
    /// A payment through a gateway that is not enabled (400 `data.gateway`).
    GatewayDisabled,
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
            Rejection::OutOfStock => "out_of_stock",
            Rejection::ProductTaken => "product_taken",
            Rejection::CartLimit => "cart_limit",
            Rejection::CurrencyMismatch => "currency_mismatch",
            Rejection::Order(OrderError::Cancelled) => "order_cancelled",
            Rejection::Order(OrderError::AlreadyPaid) => "order_already_paid",
            Rejection::Order(OrderError::BeingPaid) => "order_being_paid",
            Rejection::Order(OrderError::NotAuthorized) => "order_not_authorized",
            Rejection::Order(OrderError::NotPaid) => "order_not_paid",
            Rejection::Order(OrderError::Shipped) => "order_shipped",
            Rejection::Order(OrderError::NotRefundable) => "order_not_refundable",
            Rejection::LocationRequired => "location_required",
            Rejection::LocationInUse => "location_in_use",
            Rejection::CartEmpty => "cart_empty",
            Rejection::OrderTotalTooLarge => "order_total_too_large",
            Rejection::OrderTooLarge => "order_too_large",
            Rejection::GatewayDisabled => "gateway_disabled",
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
            Rejection::OutOfStock,
            Rejection::ProductTaken,
            Rejection::CartLimit,
            Rejection::CurrencyMismatch,
            Rejection::Order(OrderError::Cancelled),
            Rejection::Order(OrderError::AlreadyPaid),
            Rejection::Order(OrderError::BeingPaid),
            Rejection::Order(OrderError::NotAuthorized),
            Rejection::Order(OrderError::NotPaid),
            Rejection::Order(OrderError::Shipped),
            Rejection::Order(OrderError::NotRefundable),
            Rejection::LocationRequired,
            Rejection::LocationInUse,
            Rejection::CartEmpty,
            Rejection::OrderTotalTooLarge,
            Rejection::OrderTooLarge,
            Rejection::GatewayDisabled,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

/// What an applied write made or changed. Order-flow effects name the resource; callers read
/// it back for their answer (so a replayed answer shows the resource as it is now).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A stock write's history entry.
    Entry(HistoryEntry),
    Product(ProductId),
    Cart(String),
    Order(String),
    Payment {
        order_id: String,
        payment_id: String,
    },
    Location(String),
    /// A change to a product's stock as a whole (several records at once).
    Stock(ProductId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied(Effect),
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
    /// Entries at this location (slug).
    pub location: Option<String>,
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

/// A new id for a row Stockroom creates (history entry, order, item, payment, location…): a
/// UUIDv7, whose leading 48 bits are the time in milliseconds. New rows therefore append to
/// their tables' B-trees and indexes instead of landing on random pages — with random (v4) ids
/// every insert dirtied a page of its own, and a flash sale's inserts slowed down as the tables
/// grew. The other 74 bits are random (no counter: ids made in the same millisecond are not
/// one apart), so an order id stays unguessable; what an id does tell is when it was made.
pub fn new_id() -> String {
    uuid::Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext)).to_string()
}

#[cfg(test)]
mod tests {
    use super::new_id;

    /// Ids are time-ordered UUIDv7 whose other bits are random: ids made in one go are unique
    /// and are not a counter apart (an order id must stay unguessable from another one).
    #[test]
    fn new_ids_are_v7_and_not_a_counter_apart() {
        let ids: Vec<uuid::Uuid> = (0..1000)
            .map(|_| uuid::Uuid::parse_str(&new_id()).expect("a UUID"))
            .collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Bits 32..80 hold a v7 counter when there is one (version bits included: equal for
        // all); two ids of one millisecond a counter apart are close there.
        let middle = |id: &uuid::Uuid| (id.as_u128() >> 32) & ((1 << 48) - 1);
        let millis = |id: &uuid::Uuid| id.as_u128() >> 80;
        let adjacent = ids
            .windows(2)
            .filter(|w| millis(&w[0]) == millis(&w[1]))
            .filter(|w| middle(&w[1]).abs_diff(middle(&w[0])) < 1 << 16)
            .count();
        assert!(
            adjacent < 5,
            "{adjacent} of 999 neighbours are a counter apart"
        );
    }
}
