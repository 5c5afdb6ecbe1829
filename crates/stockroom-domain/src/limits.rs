//! Every limit in one place, named with its unit last.

/// Smallest quantity a request may carry (SPEC §1).
pub const QUANTITY_MIN: u64 = 1;
/// Largest quantity a request may carry (SPEC §1).
pub const QUANTITY_MAX: u64 = 1_000_000_000;
/// Largest `total` a stock record may reach; an increment past it is refused, so no figure can
/// overflow (it is far below `i64::MAX`, the databases' integer type).
pub const STOCK_TOTAL_MAX: u64 = 1_000_000_000_000_000;
/// Longest product id, in bytes.
pub const PRODUCT_ID_LEN_MAX: usize = 64;
/// Longest free-text `reason` on a transaction, in bytes.
pub const REASON_LEN_MAX: usize = 512;
/// Longest `Idempotency-Key` header value, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;
/// Default and largest `page[limit]`, and largest `page[offset]` (Elastic Path's own limits).
pub const PAGE_LIMIT_DEFAULT: u64 = 25;
pub const PAGE_LIMIT_MAX: u64 = 100;
pub const PAGE_OFFSET_MAX: u64 = 10_000;
/// Most ids in one `POST /v2/inventories/multiple`.
pub const MULTIPLE_IDS_MAX: usize = 100;
/// Largest request body, in bytes.
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest client name of a credential, in bytes.
pub const CREDENTIAL_NAME_LEN_MAX: usize = 128;
/// Lifetime of an access token, in seconds (Elastic Path: one hour).
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// Most lines in one cart (and so in one order).
pub const CART_LINES_MAX: usize = 100;
/// Most lines of one order (checkout refuses a cart with more).
pub const ORDER_LINES_MAX: usize = CART_LINES_MAX;
/// Most units of one order, all lines together (checkout refuses more): one shopper cannot
/// take a whole stock in one order.
pub const ORDER_UNITS_MAX: u64 = 10_000;
/// Longest cart id, in bytes (SPEC §2: 1–64 characters).
pub const CART_ID_LEN_MAX: usize = 64;
/// Largest unit price, in minor units (ten billion of a currency's main unit).
pub const PRICE_AMOUNT_MAX: i64 = 1_000_000_000_000;
/// Largest amount of money (a line, an order total, a payment), in minor units, either sign.
/// Far below `i64::MAX`, so that adding two amounts can never overflow before it is checked.
pub const MONEY_AMOUNT_MAX: i64 = 1_000_000_000_000_000;
/// Longest product name and SKU, in bytes.
pub const PRODUCT_NAME_LEN_MAX: usize = 1024;
pub const PRODUCT_SKU_LEN_MAX: usize = 128;
/// Largest JSON of a customer or address kept with an order, in bytes.
pub const ORDER_PARTY_BYTES_MAX: usize = 4096;
/// Longest cart name, in characters (Elastic Path: 1 to 255), and description, in bytes.
pub const CART_NAME_LEN_MAX: usize = 255;
pub const CART_DESCRIPTION_LEN_MAX: usize = 1024;
/// How long a cart may go unchanged before it is purged, by default, in seconds (Elastic
/// Path's seven days).
pub const CART_EXPIRY_DEFAULT_SECS: u64 = 7 * 24 * 3600;
/// Longest cart item id in a request, in bytes (Stockroom's are 36).
pub const CART_ITEM_ID_LEN_MAX: usize = 64;
/// Most items in one add-to-cart request.
pub const CART_ADD_ITEMS_MAX: usize = 100;
/// How long an idempotency key is remembered, in seconds: a retry after that is a new request.
pub const IDEMPOTENCY_KEY_RETENTION_SECS: i64 = 24 * 3600;
/// Location limits (Elastic Path's multi-location spec): slug and name lengths, address lines.
pub const LOCATION_SLUG_LEN_MAX: usize = 128;
pub const LOCATION_NAME_LEN_MIN: usize = 3;
pub const LOCATION_NAME_LEN_MAX: usize = 1024;
pub const LOCATION_ADDRESS_LINES_MAX: usize = 8;
/// Longest address line, external reference and description, in bytes.
pub const LOCATION_TEXT_LEN_MAX: usize = 1024;
/// Most locations named in one stock create or update.
pub const LOCATIONS_PER_REQUEST_MAX: usize = 100;
/// Shortest client secret accepted from an operator (`STOCKROOM_CLIENT_SECRET`); generated ones
/// are 43 characters.
pub const CLIENT_SECRET_LEN_MIN: usize = 24;
/// Most credentials whose token keys each instance keeps in memory; credentials are made by
/// hand (`stockroom keys create`), so this is far above any real count.
pub const CREDENTIALS_MAX: u64 = 10_000;
/// How far ahead of this instance's clock a token's issue time may be (another instance's
/// clock may run ahead), in seconds.
pub const TOKEN_CLOCK_SKEW_SECS: i64 = 60;
