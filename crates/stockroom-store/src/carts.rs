//! Carts: the read, the carts a batch has locked ([`Carts`]), and the cart commands, all
//! applied in memory and written back with one statement per kind of change.

use std::collections::{BTreeMap, HashMap};

use stockroom_domain::limits::{CART_LINES_MAX, QUANTITY_MAX};
use stockroom_domain::{ProductId, Quantity, StockLevel, Timestamp};

use crate::batch_rows::{bulk, CartItemRow, CartRow, IdRow};
use crate::catalog::Catalog;
use crate::dialect::Dialect;
use crate::error::StoreError;
use crate::exec::{args, Reader, Row, Stmt};
use crate::locations::Slugs;
use crate::model::*;
use crate::rows::{self, figure, with_items};
use crate::stock::{Stocks, Wanted};

/// One line of a cart as the batch has it.
#[derive(Clone, Debug)]
pub(crate) struct CartLineState {
    pub id: String,
    pub product: ProductId,
    pub location: String,
    pub quantity: u64,
    /// A custom item's name, SKU and price (its `product` is its own id).
    pub custom: Option<CustomLine>,
    created_at: i64,
    /// Not yet written as it is now.
    changed: bool,
}

/// What a custom item carries instead of a catalog product.
#[derive(Clone, Debug)]
pub(crate) struct CustomLine {
    pub name: String,
    pub sku: String,
    pub price: Price,
}

impl CartLineState {
    /// The units this line wants of its product's stock: none for a custom item.
    fn wants(&self, quantity: u64) -> Option<((ProductId, String), u64)> {
        match self.custom {
            Some(_) => None,
            None => Some(((self.product.clone(), self.location.clone()), quantity)),
        }
    }
}

/// A custom item's columns as read, if the row is one.
fn custom_line(row: &Row) -> Result<Option<CustomLine>, StoreError> {
    if row.col::<i64>("custom")? == 0 {
        return Ok(None);
    }
    let text = |name: &str| -> Result<String, StoreError> {
        Ok(row.col::<Option<String>>(name)?.unwrap_or_default())
    };
    let amount = row.col::<Option<i64>>("custom_amount")?.unwrap_or(0);
    let currency = Currency::parse(&text("custom_currency")?)
        .map_err(|_| StoreError::Internal("bad currency of a custom item".into()))?;
    let amount = Money::new(amount, currency)
        .map_err(|_| StoreError::Internal("bad price of a custom item".into()))?;
    Ok(Some(CustomLine {
        name: text("custom_name")?,
        sku: text("custom_sku")?,
        price: Price {
            amount,
            includes_tax: row.col::<Option<i64>>("custom_includes_tax")?.unwrap_or(0) != 0,
        },
    }))
}

/// A cart as the batch has it.
#[derive(Debug)]
pub(crate) struct CartState {
    existed: bool,
    exists: bool,
    created_at: i64,
    name: String,
    description: String,
    customer_id: Option<String>,
    pub lines: Vec<CartLineState>,
    /// Lines of the stored cart the batch removed, not yet deleted.
    removed: Vec<String>,
    /// Changed since last written.
    touched: bool,
}

impl CartState {
    fn absent(now: i64) -> CartState {
        CartState {
            existed: false,
            exists: false,
            created_at: now,
            name: DEFAULT_CART_NAME.to_owned(),
            description: String::new(),
            customer_id: None,
            lines: Vec::new(),
            removed: Vec::new(),
            touched: false,
        }
    }

    /// The customer the cart is associated with.
    pub fn customer_id(&self) -> Option<&str> {
        self.customer_id.as_deref()
    }

    fn line_mut(&mut self, item_id: &str) -> Option<&mut CartLineState> {
        self.lines.iter_mut().find(|l| l.id == item_id)
    }
}

/// The carts a batch holds the locks of, as it has left them so far.
pub(crate) struct Carts {
    now: i64,
    carts: HashMap<String, CartState>,
}

impl Carts {
    /// The carts named in `ids`, from the rows of `Dialect::cart_items_of`.
    pub fn read<'a>(
        ids: impl IntoIterator<Item = &'a str>,
        rows: &[Row],
        now: Timestamp,
    ) -> Result<Carts, StoreError> {
        let now = now.micros();
        let mut carts: HashMap<String, CartState> = ids
            .into_iter()
            .map(|id| (id.to_owned(), CartState::absent(now)))
            .collect();
        for row in rows {
            let cart = carts
                .entry(row.col("cart_id")?)
                .or_insert_with(|| CartState::absent(now));
            cart.existed = true;
            cart.exists = true;
            cart.created_at = row.col("cart_created")?;
            cart.name = row.col("cart_name")?;
            cart.description = row.col("cart_description")?;
            cart.customer_id = row.col("cart_customer")?;
            if let Some(id) = row.col::<Option<String>>("item_id")? {
                cart.lines.push(CartLineState {
                    id,
                    product: rows::product_id(&row.col::<String>("product_id")?)?,
                    location: row.col("location")?,
                    quantity: u64::try_from(row.col::<i64>("quantity")?).unwrap_or(0),
                    custom: custom_line(row)?,
                    created_at: row.col("item_created")?,
                    changed: false,
                });
            }
        }
        Ok(Carts { now, carts })
    }

    /// A cart as the batch has it, if it exists.
    pub fn get(&self, id: &str) -> Result<Option<&CartState>, StoreError> {
        match self.carts.get(id) {
            Some(cart) => Ok(cart.exists.then_some(cart)),
            None => Err(StoreError::Internal(format!(
                "cart {id} was not locked by its batch"
            ))),
        }
    }

    fn get_mut(&mut self, id: &str) -> Result<&mut CartState, StoreError> {
        self.carts
            .get_mut(id)
            .ok_or_else(|| StoreError::Internal(format!("cart {id} was not locked by its batch")))
    }

    /// Forgets a product's lines (a statement of the batch deleted them).
    pub fn drop_product(&mut self, product: &ProductId) {
        for cart in self.carts.values_mut() {
            cart.lines.retain(|l| &l.product != product);
        }
    }

    /// The statements that write what changed since the last write, and the record that it
    /// has been written.
    pub fn write_back(&mut self, dialect: &Dialect) -> Result<Vec<Stmt>, StoreError> {
        let (mut removed, mut deleted, mut upserted, mut lines) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (id, cart) in &mut self.carts {
            removed.extend(cart.removed.drain(..).map(|id| IdRow { id }));
            if !std::mem::take(&mut cart.touched) {
                continue;
            }
            if !cart.exists {
                if cart.existed {
                    deleted.push(IdRow { id: id.clone() });
                }
                continue;
            }
            upserted.push(CartRow {
                id: id.clone(),
                name: cart.name.clone(),
                description: cart.description.clone(),
                customer_id: cart.customer_id.clone(),
                created_at: cart.created_at,
            });
            for line in cart.lines.iter_mut().filter(|l| l.changed) {
                line.changed = false;
                let custom = line.custom.as_ref();
                lines.push(CartItemRow {
                    id: line.id.clone(),
                    cart_id: id.clone(),
                    product_id: line.product.as_str().to_owned(),
                    location: line.location.clone(),
                    quantity: figure(line.quantity),
                    created_at: line.created_at,
                    custom: i64::from(custom.is_some()),
                    custom_name: custom.map(|c| c.name.clone()),
                    custom_sku: custom.map(|c| c.sku.clone()),
                    custom_amount: custom.map(|c| c.price.amount.amount_minor()),
                    custom_currency: custom.map(|c| c.price.amount.currency().as_str().to_owned()),
                    custom_includes_tax: custom.map(|c| i64::from(c.price.includes_tax)),
                });
            }
            cart.existed = true;
        }
        let bulk_sql = &dialect.bulk;
        let now = Some(self.now);
        Ok([
            bulk(bulk_sql.delete_cart_items, &removed, None)?,
            bulk(bulk_sql.delete_carts, &deleted, None)?,
            bulk(bulk_sql.upsert_carts, &upserted, now)?,
            bulk(bulk_sql.upsert_cart_items, &lines, now)?,
        ]
        .into_iter()
        .flatten()
        .collect())
    }
}

/// What the cart commands read besides the carts.
pub(crate) struct CartContext<'a> {
    pub stocks: &'a Stocks,
    pub catalog: &'a Catalog,
    pub slugs: &'a Slugs,
}

/// Applies a cart command to the batch's carts.
pub(crate) fn apply_cart_command(
    carts: &mut Carts,
    cx: &CartContext<'_>,
    command: &Command,
) -> Result<Outcome, StoreError> {
    let refused = |r| Ok(Outcome::Refused(r));
    let (cart_id, rejection) = match command {
        Command::AddToCart {
            cart_id,
            lines,
            custom,
        } => (cart_id, add(carts, cx, cart_id, lines, custom)?),
        Command::UpdateCartItem {
            cart_id,
            item_id,
            quantity,
        } => (cart_id, update(carts, cx, cart_id, item_id, *quantity)?),
        Command::DeleteCartItem { cart_id, item_id } => {
            (cart_id, delete_item(carts, cart_id, item_id)?)
        }
        Command::DeleteCart { cart_id } => (cart_id, delete(carts, cart_id)?),
        Command::CreateCart {
            cart_id,
            name,
            description,
            customer_id,
        } => (
            cart_id,
            create(carts, cart_id, (name, description), customer_id.as_deref())?,
        ),
        Command::UpdateCart {
            cart_id,
            name,
            description,
        } => (
            cart_id,
            rename(carts, cart_id, name.as_deref(), description.as_deref())?,
        ),
        Command::EmptyCart { cart_id } => (cart_id, empty(carts, cart_id)?),
        Command::SetCartCustomer {
            cart_id,
            customer_id,
        } => (cart_id, associate(carts, cart_id, customer_id)?),
        Command::UpdateCartItems { cart_id, items } => {
            (cart_id, update_many(carts, cx, cart_id, items)?)
        }
        _ => return Err(StoreError::Internal("not a cart command".into())),
    };
    match rejection {
        Some(r) => refused(r),
        None => Ok(Outcome::Applied(Effect::Cart(cart_id.clone()))),
    }
}

/// Adds lines to a cart (creating it): all of them, or (refused) none.
fn add(
    carts: &mut Carts,
    cx: &CartContext<'_>,
    cart_id: &str,
    lines: &[CartLine],
    custom: &[CustomItem],
) -> Result<Option<Rejection>, StoreError> {
    if lines.iter().any(|l| !cx.slugs.exists(&l.location)) {
        return Ok(Some(Rejection::NotFound));
    }
    let mut wanted = Wanted::new();
    for line in lines {
        *wanted
            .entry((line.product.clone(), line.location.clone()))
            .or_default() += line.quantity.get();
    }
    if let Some(rejection) = cx.stocks.short(&wanted)? {
        return Ok(Some(rejection));
    }
    let now = carts.now;
    let cart = carts.get_mut(cart_id)?;
    if let Some(rejection) = refusal_to_add(cart, cx.catalog, &wanted, custom) {
        return Ok(Some(rejection));
    }
    if !cart.exists {
        cart.exists = true;
        cart.created_at = now;
        DEFAULT_CART_NAME.clone_into(&mut cart.name);
        cart.description.clear();
        cart.customer_id = None;
    }
    for ((product, location), quantity) in wanted {
        add_units(cart, product, location, quantity, now);
    }
    for item in custom {
        add_custom(cart, item, now)?;
    }
    cart.touched = true;
    Ok(None)
}

/// A custom item is a line of its own; its product id is its own id.
fn add_custom(cart: &mut CartState, item: &CustomItem, now: i64) -> Result<(), StoreError> {
    let id = crate::model::new_id();
    let product = ProductId::parse(&id).map_err(|e| StoreError::Internal(e.to_string()))?;
    cart.lines.push(CartLineState {
        id,
        product,
        location: NO_LOCATION.to_owned(),
        quantity: item.quantity.get(),
        custom: Some(CustomLine {
            name: item.name.clone(),
            sku: item.sku.clone(),
            price: item.price,
        }),
        created_at: now,
        changed: true,
    });
    Ok(())
}

/// Why the cart cannot take these units: more than one currency, too many lines, or a line
/// over its limit.
fn refusal_to_add(
    cart: &CartState,
    catalog: &Catalog,
    wanted: &Wanted,
    custom: &[CustomItem],
) -> Option<Rejection> {
    let existing: &[CartLineState] = match cart.exists {
        true => &cart.lines,
        false => &[],
    };
    let held: BTreeMap<(&ProductId, &str), u64> = existing
        .iter()
        .map(|l| ((&l.product, l.location.as_str()), l.quantity))
        .collect();
    let custom_currencies = existing
        .iter()
        .filter_map(|l| l.custom.as_ref().map(|c| c.price.amount.currency()))
        .chain(custom.iter().map(|c| c.price.amount.currency()));
    let mut currencies: Vec<Currency> = wanted
        .keys()
        .map(|(p, _)| p)
        .chain(held.keys().map(|(p, _)| *p))
        .filter_map(|p| catalog.get(p).map(|p| p.price.amount.currency()))
        .chain(custom_currencies)
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    if currencies.len() > 1 {
        return Some(Rejection::CurrencyMismatch);
    }
    let held_of = |(p, l): &(ProductId, String)| held.get(&(p, l.as_str())).copied();
    let new_lines = wanted.keys().filter(|k| held_of(k).is_none()).count();
    let too_much = wanted
        .iter()
        .any(|(k, q)| held_of(k).unwrap_or(0) + q > QUANTITY_MAX);
    (held.len() + new_lines + custom.len() > CART_LINES_MAX || too_much)
        .then_some(Rejection::CartLimit)
}

fn add_units(cart: &mut CartState, product: ProductId, location: String, units: u64, now: i64) {
    match cart
        .lines
        .iter_mut()
        .find(|l| l.custom.is_none() && l.product == product && l.location == location)
    {
        Some(line) => {
            line.quantity += units;
            line.changed = true;
        }
        None => cart.lines.push(CartLineState {
            id: crate::model::new_id(),
            product,
            location,
            quantity: units,
            custom: None,
            created_at: now,
            changed: true,
        }),
    }
}

fn update(
    carts: &mut Carts,
    cx: &CartContext<'_>,
    cart_id: &str,
    item_id: &str,
    quantity: Quantity,
) -> Result<Option<Rejection>, StoreError> {
    let cart = carts.get_mut(cart_id)?;
    let exists = cart.exists;
    let Some(line) = cart.line_mut(item_id).filter(|_| exists) else {
        return Ok(Some(Rejection::NotFound));
    };
    let wanted: Wanted = line.wants(quantity.get()).into_iter().collect();
    if let Some(rejection) = cx.stocks.short(&wanted)? {
        return Ok(Some(rejection));
    }
    line.quantity = quantity.get();
    line.changed = true;
    cart.touched = true;
    Ok(None)
}

fn delete_item(
    carts: &mut Carts,
    cart_id: &str,
    item_id: &str,
) -> Result<Option<Rejection>, StoreError> {
    let cart = carts.get_mut(cart_id)?;
    let Some(i) = cart.lines.iter().position(|l| l.id == item_id) else {
        return Ok(Some(Rejection::NotFound));
    };
    let line = cart.lines.remove(i);
    cart.removed.push(line.id);
    cart.touched = true;
    Ok(None)
}

/// A new empty cart with its name and description.
fn create(
    carts: &mut Carts,
    cart_id: &str,
    (name, description): (&str, &str),
    customer_id: Option<&str>,
) -> Result<Option<Rejection>, StoreError> {
    let now = carts.now;
    let cart = carts.get_mut(cart_id)?;
    if cart.exists {
        return Ok(Some(Rejection::AlreadyExists));
    }
    cart.exists = true;
    cart.created_at = now;
    name.clone_into(&mut cart.name);
    description.clone_into(&mut cart.description);
    cart.customer_id = customer_id.map(str::to_owned);
    cart.touched = true;
    Ok(None)
}

fn rename(
    carts: &mut Carts,
    cart_id: &str,
    name: Option<&str>,
    description: Option<&str>,
) -> Result<Option<Rejection>, StoreError> {
    let cart = carts.get_mut(cart_id)?;
    if !cart.exists {
        return Ok(Some(Rejection::NotFound));
    }
    if let Some(name) = name {
        name.clone_into(&mut cart.name);
    }
    if let Some(description) = description {
        description.clone_into(&mut cart.description);
    }
    cart.touched = true;
    Ok(None)
}

fn associate(
    carts: &mut Carts,
    cart_id: &str,
    customer_id: &str,
) -> Result<Option<Rejection>, StoreError> {
    let cart = carts.get_mut(cart_id)?;
    if !cart.exists {
        return Ok(Some(Rejection::NotFound));
    }
    cart.customer_id = Some(customer_id.to_owned());
    cart.touched = true;
    Ok(None)
}

/// Removes every item, keeping the cart.
fn empty(carts: &mut Carts, cart_id: &str) -> Result<Option<Rejection>, StoreError> {
    let cart = carts.get_mut(cart_id)?;
    if !cart.exists {
        return Ok(Some(Rejection::NotFound));
    }
    let lines = std::mem::take(&mut cart.lines);
    cart.removed.extend(lines.into_iter().map(|l| l.id));
    cart.touched = true;
    Ok(None)
}

/// Sets several items' quantities (0 removes one), all or none: every item must be in the
/// cart, and each product's available stock must cover its new quantity, as for one item.
fn update_many(
    carts: &mut Carts,
    cx: &CartContext<'_>,
    cart_id: &str,
    items: &[(String, StockLevel)],
) -> Result<Option<Rejection>, StoreError> {
    let cart = carts.get_mut(cart_id)?;
    if !cart.exists {
        return Ok(Some(Rejection::NotFound));
    }
    let mut wanted = Wanted::new();
    for (item_id, quantity) in items {
        let Some(line) = cart.lines.iter().find(|l| &l.id == item_id) else {
            return Ok(Some(Rejection::NotFound));
        };
        if let Some((key, units)) = line.wants(quantity.get()).filter(|_| quantity.get() > 0) {
            wanted.insert(key, units);
        }
    }
    if let Some(rejection) = cx.stocks.short(&wanted)? {
        return Ok(Some(rejection));
    }
    for (item_id, quantity) in items {
        match quantity.get() {
            0 => {
                if let Some(i) = cart.lines.iter().position(|l| &l.id == item_id) {
                    let line = cart.lines.remove(i);
                    cart.removed.push(line.id);
                }
            }
            n => {
                if let Some(line) = cart.line_mut(item_id) {
                    line.quantity = n;
                    line.changed = true;
                }
            }
        }
    }
    cart.touched = true;
    Ok(None)
}

fn delete(carts: &mut Carts, cart_id: &str) -> Result<Option<Rejection>, StoreError> {
    let cart = carts.get_mut(cart_id)?;
    if !cart.exists {
        return Ok(Some(Rejection::NotFound));
    }
    let lines = std::mem::take(&mut cart.lines);
    cart.removed.extend(lines.into_iter().map(|l| l.id));
    cart.exists = false;
    cart.touched = true;
    Ok(None)
}

// ---- the read -------------------------------------------------------------------------------

/// A cart with its items, each with its catalog product: one statement.
pub(crate) async fn cart(db: &Reader, cart_id: &str) -> Result<Option<Cart>, StoreError> {
    let rows = db
        .rows(
            "SELECT c.id AS cart_id, c.created_at AS cart_created, c.updated_at AS cart_updated, \
             c.name AS cart_name, c.description AS cart_description, \
             c.customer_id AS cart_customer, \
             ci.id AS item_id, ci.product_id AS item_product, ci.location AS item_location, \
             ci.quantity AS item_quantity, \
             ci.created_at AS item_created, ci.updated_at AS item_updated, \
             ci.custom, ci.custom_name, ci.custom_sku, ci.custom_amount, ci.custom_currency, \
             ci.custom_includes_tax, \
             (SELECT COUNT(*) FROM stock s WHERE s.product_id = ci.product_id \
              AND ci.custom = 0) AS managed, \
             p.id, p.sku, p.name, p.price_amount, p.currency, p.includes_tax, p.created_at, \
             p.updated_at \
             FROM carts c LEFT JOIN cart_items ci ON ci.cart_id = c.id \
             LEFT JOIN products p ON p.id = ci.product_id AND ci.custom = 0 \
             WHERE c.id = $1 ORDER BY ci.created_at, ci.id",
            args![cart_id],
        )
        .await?;
    let Some((first, items)) = with_items(&rows, cart_item)? else {
        return Ok(None);
    };
    Ok(Some(Cart {
        id: first.col("cart_id")?,
        name: first.col("cart_name")?,
        description: first.col("cart_description")?,
        customer_id: first.col("cart_customer")?,
        items,
        created_at: Timestamp(first.col("cart_created")?),
        updated_at: Timestamp(first.col("cart_updated")?),
    }))
}

fn cart_item(r: &Row) -> Result<CartItem, StoreError> {
    let catalog: Option<String> = r.col("id")?;
    let managed: i64 = r.col("managed")?;
    let product_id = rows::product_id(&r.col::<String>("item_product")?)?;
    let custom = custom_line(r)?;
    let product = match &custom {
        Some(c) => Some(Product {
            id: product_id.clone(),
            sku: c.sku.clone(),
            name: c.name.clone(),
            price: c.price,
            created_at: Timestamp(r.col("item_created")?),
            updated_at: Timestamp(r.col("item_updated")?),
        }),
        None => catalog.map(|_| rows::product(r)).transpose()?,
    };
    Ok(CartItem {
        id: r.col("item_id")?,
        product_id,
        location: r.col("item_location")?,
        quantity: u64::try_from(r.col::<i64>("item_quantity")?).unwrap_or(0),
        product,
        custom: custom.is_some(),
        managed: managed > 0,
        created_at: Timestamp(r.col("item_created")?),
        updated_at: Timestamp(r.col("item_updated")?),
    })
}

/// A customer's carts, most recently changed first: their ids in one statement, then each
/// cart (a page is at most `PAGE_LIMIT_MAX`).
pub(crate) async fn customer_carts(
    db: &Reader,
    customer_id: &str,
    page: Page,
) -> Result<Paged<Cart>, StoreError> {
    let figure = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let ids = db
        .rows(
            "SELECT id FROM carts WHERE customer_id = $1 ORDER BY updated_at DESC, id \
             LIMIT $2 OFFSET $3",
            args![customer_id, figure(page.limit), figure(page.offset)],
        )
        .await?;
    let total: i64 = db
        .row(
            "SELECT COUNT(*) AS n FROM carts WHERE customer_id = $1",
            args![customer_id],
        )
        .await?
        .map(|r| r.col("n"))
        .transpose()?
        .unwrap_or(0);
    let mut items = Vec::with_capacity(ids.len());
    for row in &ids {
        let id: String = row.col("id")?;
        if let Some(found) = cart(db, &id).await? {
            items.push(found);
        }
    }
    Ok(Paged {
        items,
        total: u64::try_from(total).unwrap_or(0),
    })
}
