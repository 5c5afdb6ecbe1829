// End-to-end test of the ORDER FLOW: drives a REAL running Stockroom server with the real
// Elastic Path JS SDKs (`@elasticpath/js-sdk` 35 and `@moltin/sdk` 36) through cart → checkout →
// pay (purchase, authorize + capture) → ship / cancel, checking the stock figures after every
// step (wire-contract §5, §6, §9). Run it through tests/sdk/run.sh, which builds and starts the
// server.
//
// Environment:
//   STOCKROOM_URL            e.g. http://127.0.0.1:18080
//   STOCKROOM_CLIENT_ID      client id of an administrator credential
//   STOCKROOM_CLIENT_SECRET  its secret
//
// The SDK rejects a non-2xx answer with the parsed body only (wire-contract §1), so every error
// check looks at `errors[0].status`. Steps inside one `describe` run in order and share state;
// a step whose prerequisite failed says so instead of failing obscurely.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import * as elasticpath from '@elasticpath/js-sdk';
import * as moltin from '@moltin/sdk';
import { rejectsWithStatus } from './helpers.mjs';

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} must be set (run the test through tests/sdk/run.sh)`);
  }
  return value;
}

const STOCKROOM_URL = new URL(requiredEnv('STOCKROOM_URL'));
const CLIENT_ID = requiredEnv('STOCKROOM_CLIENT_ID');
const CLIENT_SECRET = requiredEnv('STOCKROOM_CLIENT_SECRET');

// host[:port] only, no scheme or path (wire-contract §7).
const HOST = STOCKROOM_URL.host;
const PROTOCOL = STOCKROOM_URL.protocol.replace(/:$/, '');

// A bound on every step, so a server that keeps answering 401 (which the SDK retries) or hangs
// fails the step instead of hanging the run.
const STEP = { timeout: 30_000 };

const PACKAGES = [
  { label: '@elasticpath/js-sdk', sdk: elasticpath, version: '35.0.0' },
  { label: '@moltin/sdk', sdk: moltin, version: '36.0.0' },
];

const PRICE = 1299; // cents, USD, per unit

const BILLING = {
  first_name: 'Ada',
  last_name: 'Lovelace',
  line_1: '1 Street',
  city: 'London',
  postcode: 'N1 1AA',
  county: 'Greater London',
  country: 'GB',
  region: 'London',
};

function makeGateway(sdk, { withSecret }) {
  const config = {
    client_id: CLIENT_ID,
    host: HOST,
    protocol: PROTOCOL,
    storage: new sdk.MemoryStorageFactory(),
  };
  if (withSecret) {
    config.client_secret = CLIENT_SECRET;
  }
  return sdk.gateway(config);
}

/** A client-chosen cart id like the SDK's own: 32 hex characters. */
function newCartId() {
  return randomUUID().replace(/-/g, '');
}

/** An administrator token from the token endpoint, for the calls the SDK has no method for. */
async function adminToken() {
  const response = await fetch(new URL('/oauth/access_token', STOCKROOM_URL), {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    }).toString(),
  });
  const text = await response.text();
  assert.equal(response.status, 200, `POST /oauth/access_token: status (body ${text})`);
  const body = JSON.parse(text);
  assert.equal(typeof body.access_token, 'string', `token response has a flat access_token (got ${text})`);
  return body.access_token;
}

/** POST /v2/products with a plain fetch (Stockroom's own catalog; no SDK method). */
async function createProduct(token, { id, name, sku, amount }) {
  const response = await fetch(new URL('/v2/products', STOCKROOM_URL), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({
      data: {
        type: 'product',
        id,
        attributes: { name, sku, price: { amount, currency: 'USD', includes_tax: false } },
      },
    }),
  });
  const text = await response.text();
  assert.equal(response.status, 201, `POST /v2/products: status (body ${text})`);
  return JSON.parse(text);
}


async function rejectsInsufficientStock(promise, what) {
  const rejection = await rejectsWithStatus(promise, 400, what);
  assert.equal(
    rejection.errors[0].title,
    'Insufficient stock',
    `${what}: errors[0].title (got ${JSON.stringify(rejection)})`,
  );
  return rejection;
}

/** Reads the stock with the admin gateway and compares total/available/allocated. */
async function expectFigures(admin, pid, expected, what) {
  const answer = await admin.Inventories.Get(pid);
  const stock = answer && answer.data;
  assert.ok(stock && typeof stock === 'object', `${what}: expected {"data":stock}, got ${JSON.stringify(answer)}`);
  assert.equal(stock.id, pid, `${what}: stock id`);
  assert.deepEqual(
    { total: stock.total, available: stock.available, allocated: stock.allocated },
    expected,
    `${what}: stock figures differ (got ${JSON.stringify(stock)})`,
  );
}

function assertCartItem(item, { pid, sku, quantity }, what) {
  assert.ok(item && typeof item === 'object', `${what}: expected a cart item, got ${JSON.stringify(item)}`);
  assert.equal(typeof item.id, 'string', `${what}: item id is a string (got ${JSON.stringify(item)})`);
  assert.ok(item.id.length > 0, `${what}: item id is empty`);
  assert.equal(item.product_id, pid, `${what}: product_id`);
  assert.equal(item.name, 'Mug', `${what}: name`);
  assert.equal(item.sku, sku, `${what}: sku`);
  assert.equal(item.quantity, quantity, `${what}: quantity`);
  assert.ok(item.unit_price, `${what}: unit_price present (got ${JSON.stringify(item)})`);
  assert.equal(item.unit_price.amount, PRICE, `${what}: unit_price.amount`);
  assert.equal(item.unit_price.currency, 'USD', `${what}: unit_price.currency`);
  assert.ok(item.value, `${what}: value present (got ${JSON.stringify(item)})`);
  assert.equal(item.value.amount, PRICE * quantity, `${what}: value.amount`);
}

/** `{"data":[items…],"meta":…}` with exactly one line for the product. */
function assertSingleLine(answer, line, what) {
  assert.ok(answer && Array.isArray(answer.data), `${what}: data is an array (got ${JSON.stringify(answer)})`);
  assert.equal(answer.data.length, 1, `${what}: one cart line (got ${JSON.stringify(answer.data)})`);
  assertCartItem(answer.data[0], line, `${what} item`);
  assertCartTotal(answer, PRICE * line.quantity, what);
  return answer.data[0];
}

function assertCartTotal(answer, amount, what) {
  const withTax = answer && answer.meta && answer.meta.display_price && answer.meta.display_price.with_tax;
  assert.ok(withTax, `${what}: meta.display_price.with_tax present (got ${JSON.stringify(answer && answer.meta)})`);
  assert.equal(withTax.amount, amount, `${what}: meta.display_price.with_tax.amount`);
}

function assertOrder(order, expected, what) {
  assert.ok(order && typeof order === 'object', `${what}: expected an order, got ${JSON.stringify(order)}`);
  assert.equal(order.type, 'order', `${what}: type`);
  assert.equal(typeof order.id, 'string', `${what}: id is a string`);
  assert.ok(order.id.length > 0, `${what}: id is empty`);
  assert.deepEqual(
    { status: order.status, payment: order.payment, shipping: order.shipping },
    expected,
    `${what}: status/payment/shipping differ (got ${JSON.stringify(order)})`,
  );
}

function assertTransaction(txn, { type, orderId }, what) {
  assert.ok(txn && typeof txn === 'object', `${what}: expected a transaction, got ${JSON.stringify(txn)}`);
  assert.equal(txn.type, 'transaction', `${what}: type (got ${JSON.stringify(txn)})`);
  assert.equal(txn.transaction_type, type, `${what}: transaction_type (got ${JSON.stringify(txn)})`);
  assert.equal(txn.status, 'complete', `${what}: status (got ${JSON.stringify(txn)})`);
  assert.equal(txn.gateway, 'manual', `${what}: gateway`);
  assert.equal(typeof txn.id, 'string', `${what}: id is a string`);
  assert.ok(txn.id.length > 0, `${what}: id is empty`);
  if (txn.relationships && txn.relationships.order && txn.relationships.order.data) {
    assert.equal(txn.relationships.order.data.id, orderId, `${what}: relationships.order`);
  }
}

for (const { label, sdk, version } of PACKAGES) {
  describe(`${label} ${version}: order flow against a live Stockroom`, () => {
    const suffix = randomUUID().slice(0, 8);
    // A fresh product per package per run: unique id and SKU.
    const pid = randomUUID();
    const sku = `MUG-${suffix}-${version.replace(/\./g, '')}`;
    const customer = { name: 'Ada Lovelace', email: `ada+${suffix}@example.com` };
    let admin;
    let shopper;

    // Shared between steps.
    const s = {};

    before(() => {
      assert.equal(typeof sdk.gateway, 'function', `${label} exports gateway`);
      admin = makeGateway(sdk, { withSecret: true });
      shopper = makeGateway(sdk, { withSecret: false });
    });

    it(`creates product ${sku} (fetch) and stock 10 (Inventories.Create) [run ${suffix}]`, STEP, async () => {
      const token = await adminToken();
      const created = await createProduct(token, { id: pid, name: 'Mug', sku, amount: PRICE });
      assert.ok(created && created.data, `POST /v2/products: {"data":…} (got ${JSON.stringify(created)})`);
      assert.equal(created.data.id, pid, 'POST /v2/products: data.id');

      const stock = await admin.Inventories.Create(pid, 10);
      assert.equal(stock.data.total, 10, `Inventories.Create: total (got ${JSON.stringify(stock)})`);
      await expectFigures(admin, pid, { total: 10, available: 10, allocated: 0 }, 'after Create');
    });

    // ---- cart mechanics: by SKU, UpdateItem, RemoveItem, Delete ---------------------------------

    describe('cart mechanics (shopper)', () => {
      const cartId = newCartId();
      let itemId;

      it('AddProduct(sku, 2, {}, true) adds the product by SKU', STEP, async () => {
        const answer = await shopper.Cart(cartId).AddProduct(sku, 2, {}, true);
        const item = assertSingleLine(answer, { pid, sku, quantity: 2 }, 'AddProduct by SKU');
        itemId = item.id;
        await expectFigures(admin, pid, { total: 10, available: 10, allocated: 0 }, 'after AddProduct by SKU');
      });

      it('UpdateItem(itemId, 3) changes the quantity and the cart total', STEP, async () => {
        assert.ok(itemId, 'needs the AddProduct-by-SKU step');
        const answer = await shopper.Cart(cartId).UpdateItem(itemId, 3);
        const item = assertSingleLine(answer, { pid, sku, quantity: 3 }, 'UpdateItem');
        assert.equal(item.id, itemId, 'UpdateItem keeps the item id');

        const cart = await shopper.Cart(cartId).Get();
        assert.ok(cart && cart.data, `Cart.Get: {"data":cart} (got ${JSON.stringify(cart)})`);
        assertCartTotal(cart.data, PRICE * 3, 'Cart.Get data');
        await expectFigures(admin, pid, { total: 10, available: 10, allocated: 0 }, 'after UpdateItem');
      });

      it('UpdateItem beyond the stock rejects 400 Insufficient stock', STEP, async () => {
        assert.ok(itemId, 'needs the AddProduct-by-SKU step');
        await rejectsInsufficientStock(shopper.Cart(cartId).UpdateItem(itemId, 11), 'UpdateItem(11) with 10 available');
        const items = await shopper.Cart(cartId).Items();
        assertSingleLine(items, { pid, sku, quantity: 3 }, 'Items after refused UpdateItem');
      });

      it('RemoveItem(itemId) resolves "{}" and empties the cart; Delete() resolves "{}"', STEP, async () => {
        assert.ok(itemId, 'needs the AddProduct-by-SKU step');
        const removed = await shopper.Cart(cartId).RemoveItem(itemId);
        assert.equal(removed, '{}', `RemoveItem resolves "{}" for a 204 (got ${JSON.stringify(removed)})`);
        const items = await shopper.Cart(cartId).Items();
        assert.ok(Array.isArray(items.data), `Items: data is an array (got ${JSON.stringify(items)})`);
        assert.equal(items.data.length, 0, `Items after RemoveItem: empty (got ${JSON.stringify(items.data)})`);

        const deleted = await shopper.Cart(cartId).Delete();
        assert.equal(deleted, '{}', `Cart.Delete resolves "{}" for a 204 (got ${JSON.stringify(deleted)})`);
        await expectFigures(admin, pid, { total: 10, available: 10, allocated: 0 }, 'after RemoveItem and Delete');
      });
    });

    // ---- order 1: 4 units, purchase, ship ------------------------------------------------------

    describe('order 1: add 4, checkout, purchase, ship', () => {
      const cartId = newCartId();

      it('AddProduct(pid, 4) leaves the figures at 10/10/0', STEP, async () => {
        const answer = await shopper.Cart(cartId).AddProduct(pid, 4);
        assertSingleLine(answer, { pid, sku, quantity: 4 }, 'AddProduct(pid, 4)');
        const items = await shopper.Cart(cartId).Items();
        assertSingleLine(items, { pid, sku, quantity: 4 }, 'Cart.Items');
        const cart = await shopper.Cart(cartId).Get();
        assertCartTotal(cart.data, PRICE * 4, 'Cart.Get data');
        await expectFigures(admin, pid, { total: 10, available: 10, allocated: 0 }, 'after add 4');
      });

      it('Checkout(guest, billing) → incomplete/unpaid/unfulfilled; figures unchanged', STEP, async () => {
        const answer = await shopper.Cart(cartId).Checkout(customer, BILLING);
        assert.ok(answer && answer.data, `Checkout: {"data":order} (got ${JSON.stringify(answer)})`);
        assertOrder(answer.data, { status: 'incomplete', payment: 'unpaid', shipping: 'unfulfilled' }, 'Checkout');
        assert.deepEqual(answer.data.customer, customer, 'Checkout: customer kept');
        assert.equal(answer.data.billing_address.line_1, BILLING.line_1, 'Checkout: billing_address kept');
        assert.equal(answer.data.shipping_address.postcode, BILLING.postcode, 'Checkout: shipping defaults to billing');
        assert.equal(
          answer.data.meta.display_price.with_tax.amount,
          PRICE * 4,
          `Checkout: order total (got ${JSON.stringify(answer.data.meta)})`,
        );
        s.order1 = answer.data.id;
        await expectFigures(admin, pid, { total: 10, available: 10, allocated: 0 }, 'after checkout');
      });

      it('Orders.Get, Orders.With("items").Get and Orders.Items (an implicit token alone reads no order: 403)', STEP, async () => {
        assert.ok(s.order1, 'needs the checkout step');
        await rejectsWithStatus(shopper.Orders.Get(s.order1), 403, 'shopper Orders.Get (SPEC §3)');
        const got = await admin.Orders.Get(s.order1);
        assertOrder(got.data, { status: 'incomplete', payment: 'unpaid', shipping: 'unfulfilled' }, 'Orders.Get');
        assert.equal(got.data.id, s.order1, 'Orders.Get: id');
        assert.equal(got.included, undefined, 'Orders.Get without With(): no "included"');

        const withItems = await admin.Orders.With('items').Get(s.order1);
        assert.equal(withItems.data.id, s.order1, 'With(items).Get: id');
        const included = withItems.included && withItems.included.items;
        assert.ok(Array.isArray(included), `With(items).Get: included.items (got ${JSON.stringify(withItems)})`);
        assert.equal(included.length, 1, 'With(items).Get: one order item');
        assert.equal(included[0].product_id, pid, 'With(items).Get: product_id');
        assert.equal(included[0].quantity, 4, 'With(items).Get: quantity');
        assert.equal(included[0].sku, sku, 'With(items).Get: sku');
        const rel = withItems.data.relationships && withItems.data.relationships.items;
        assert.ok(rel && Array.isArray(rel.data), `order relationships.items (got ${JSON.stringify(withItems.data)})`);
        assert.deepEqual(rel.data.map((r) => r.id), [included[0].id], 'relationships.items names the included item');

        // The SDK resets With() after each call: the next Get has no include.
        const plain = await admin.Orders.Get(s.order1);
        assert.equal(plain.included, undefined, 'Orders.Get after With(): no "included"');

        const items = await admin.Orders.Items(s.order1);
        assert.ok(Array.isArray(items.data), `Orders.Items: data is an array (got ${JSON.stringify(items)})`);
        assert.equal(items.data.length, 1, 'Orders.Items: one item');
        assert.equal(items.data[0].product_id, pid, 'Orders.Items: product_id');
        assert.equal(items.data[0].quantity, 4, 'Orders.Items: quantity');
        assert.equal(items.data[0].unit_price.amount, PRICE, 'Orders.Items: unit_price.amount');
      });

      it('shopper Orders.All and Orders.Update reject with 403', STEP, async () => {
        assert.ok(s.order1, 'needs the checkout step');
        await rejectsWithStatus(shopper.Orders.All(), 403, 'shopper Orders.All');
        await rejectsWithStatus(
          shopper.Orders.Update(s.order1, { status: 'cancelled' }),
          403,
          'shopper Orders.Update(cancel)',
        );
        await rejectsWithStatus(
          shopper.Orders.Update(s.order1, { shipping: 'fulfilled' }),
          403,
          'shopper Orders.Update(ship)',
        );
        const got = await admin.Orders.Get(s.order1);
        assertOrder(got.data, { status: 'incomplete', payment: 'unpaid', shipping: 'unfulfilled' }, 'after shopper 403s');
      });

      it('shopper Orders.Payment(manual, purchase) → paid/complete; allocated 4, available 6', STEP, async () => {
        assert.ok(s.order1, 'needs the checkout step');
        const answer = await shopper.Orders.Payment(s.order1, { gateway: 'manual', method: 'purchase' });
        assert.ok(answer && answer.data, `Payment: {"data":transaction} (got ${JSON.stringify(answer)})`);
        assertTransaction(answer.data, { type: 'purchase', orderId: s.order1 }, 'purchase');
        assert.equal(answer.data.amount, PRICE * 4, 'purchase: amount is the order total');
        s.purchase1 = answer.data;

        const got = await admin.Orders.Get(s.order1);
        assertOrder(got.data, { status: 'complete', payment: 'paid', shipping: 'unfulfilled' }, 'order after purchase');
        await expectFigures(admin, pid, { total: 10, available: 6, allocated: 4 }, 'after purchase');
      });

      it('Transactions.All and Transactions.Get show the purchase', STEP, async () => {
        assert.ok(s.purchase1, 'needs the purchase step');
        const all = await admin.Transactions.All({ order: s.order1 });
        assert.ok(Array.isArray(all.data), `Transactions.All: data is an array (got ${JSON.stringify(all)})`);
        assert.equal(all.data.length, 1, `Transactions.All: one transaction (got ${JSON.stringify(all.data)})`);
        assertTransaction(all.data[0], { type: 'purchase', orderId: s.order1 }, 'Transactions.All[0]');
        assert.equal(all.data[0].id, s.purchase1.id, 'Transactions.All[0]: id');

        const one = await admin.Transactions.Get({ order: s.order1, transaction: s.purchase1.id });
        assert.deepEqual(one.data, all.data[0], 'Transactions.Get matches its Transactions.All entry');

        await rejectsWithStatus(
          admin.Transactions.Get({ order: s.order1, transaction: randomUUID() }),
          404,
          'Transactions.Get of an unknown transaction',
        );
      });

      it('paying an already-paid order rejects with 409 and allocates nothing more', STEP, async () => {
        assert.ok(s.purchase1, 'needs the purchase step');
        await rejectsWithStatus(
          shopper.Orders.Payment(s.order1, { gateway: 'manual', method: 'purchase' }),
          409,
          'second Payment of a paid order',
        );
        await expectFigures(admin, pid, { total: 10, available: 6, allocated: 4 }, 'after refused second payment');
        const all = await admin.Transactions.All({ order: s.order1 });
        assert.equal(all.data.length, 1, 'a refused payment adds no transaction');
      });

      it('admin Orders.Update(shipping: fulfilled) ships: total 6, allocated 0', STEP, async () => {
        assert.ok(s.purchase1, 'needs the purchase step');
        const answer = await admin.Orders.Update(s.order1, { shipping: 'fulfilled' });
        assertOrder(answer.data, { status: 'complete', payment: 'paid', shipping: 'fulfilled' }, 'ship');
        assert.equal(answer.data.id, s.order1, 'ship: id');
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after ship');
      });

      it('cancelling the shipped order rejects with 409; figures unchanged', STEP, async () => {
        assert.ok(s.purchase1, 'needs the purchase step');
        await rejectsWithStatus(
          admin.Orders.Update(s.order1, { status: 'cancelled' }),
          409,
          'cancel a shipped order',
        );
        const got = await admin.Orders.Get(s.order1);
        assertOrder(got.data, { status: 'complete', payment: 'paid', shipping: 'fulfilled' }, 'order after refused cancel');
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after refused cancel');
      });
    });

    // ---- order 2: 2 units, authorize, capture, cancel ------------------------------------------

    describe('order 2: add 2, checkout, authorize, capture, cancel', () => {
      const cartId = newCartId();

      it('AddProduct(pid, 2) and Checkout; figures stay 6/6/0', STEP, async () => {
        const answer = await shopper.Cart(cartId).AddProduct(pid, 2);
        assertSingleLine(answer, { pid, sku, quantity: 2 }, 'AddProduct(pid, 2)');
        const order = await shopper.Cart(cartId).Checkout(customer, BILLING);
        assertOrder(order.data, { status: 'incomplete', payment: 'unpaid', shipping: 'unfulfilled' }, 'Checkout');
        assert.notEqual(order.data.id, s.order1, 'a new order id');
        s.order2 = order.data.id;
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after checkout of order 2');
      });

      it('Orders.Payment(manual, authorize) → authorized; allocated 2', STEP, async () => {
        assert.ok(s.order2, 'needs the checkout step');
        const answer = await shopper.Orders.Payment(s.order2, { gateway: 'manual', method: 'authorize' });
        assertTransaction(answer.data, { type: 'authorize', orderId: s.order2 }, 'authorize');
        assert.equal(answer.data.amount, PRICE * 2, 'authorize: amount is the order total');
        s.authorize2 = answer.data;

        const got = await admin.Orders.Get(s.order2);
        assert.equal(got.data.payment, 'authorized', `order payment after authorize (got ${JSON.stringify(got.data)})`);
        assert.equal(got.data.shipping, 'unfulfilled', 'order shipping after authorize');
        await expectFigures(admin, pid, { total: 6, available: 4, allocated: 2 }, 'after authorize');
      });

      it('shopper Transactions.Capture rejects with 403', STEP, async () => {
        assert.ok(s.authorize2, 'needs the authorize step');
        await rejectsWithStatus(
          shopper.Transactions.Capture({ order: s.order2, transaction: s.authorize2.id }),
          403,
          'shopper Capture',
        );
        const got = await admin.Orders.Get(s.order2);
        assert.equal(got.data.payment, 'authorized', 'order payment after refused capture');
      });

      it('admin Transactions.Capture → capture; order paid; allocation kept', STEP, async () => {
        assert.ok(s.authorize2, 'needs the authorize step');
        const answer = await admin.Transactions.Capture({ order: s.order2, transaction: s.authorize2.id });
        assert.ok(answer && answer.data, `Capture: {"data":transaction} (got ${JSON.stringify(answer)})`);
        assertTransaction(answer.data, { type: 'capture', orderId: s.order2 }, 'capture');
        s.capture2 = answer.data;

        const got = await admin.Orders.Get(s.order2);
        assertOrder(got.data, { status: 'complete', payment: 'paid', shipping: 'unfulfilled' }, 'order after capture');
        await expectFigures(admin, pid, { total: 6, available: 4, allocated: 2 }, 'after capture');

        const all = await admin.Transactions.All({ order: s.order2 });
        assert.ok(Array.isArray(all.data), `Transactions.All: data is an array (got ${JSON.stringify(all)})`);
        const byId = Object.fromEntries(all.data.map((t) => [t.id, t]));
        assert.ok(byId[s.authorize2.id], `Transactions.All lists the authorization (got ${JSON.stringify(all.data)})`);
        assert.ok(byId[s.capture2.id], `Transactions.All lists the capture (got ${JSON.stringify(all.data)})`);
        assert.equal(byId[s.capture2.id].transaction_type, 'capture', 'Transactions.All: capture entry');
        const one = await admin.Transactions.Get({ order: s.order2, transaction: s.capture2.id });
        assert.deepEqual(one.data, byId[s.capture2.id], 'Transactions.Get(capture) matches its list entry');
      });

      it('admin Orders.Update(status: cancelled) releases the allocation: 6/6/0', STEP, async () => {
        assert.ok(s.capture2, 'needs the capture step');
        const answer = await admin.Orders.Update(s.order2, { status: 'cancelled' });
        assert.equal(answer.data.id, s.order2, 'cancel: id');
        assert.equal(answer.data.status, 'cancelled', `cancel: status (got ${JSON.stringify(answer.data)})`);
        assert.equal(answer.data.shipping, 'unfulfilled', 'cancel: shipping');
        const got = await admin.Orders.Get(s.order2);
        assert.equal(got.data.status, 'cancelled', 'Orders.Get after cancel: status');
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after cancel');
      });
    });

    // ---- order 3: 7 against 6; two carts of 6 race to pay ---------------------------------------

    describe('order 3: more than available, then two carts of 6 race to pay', () => {
      const cartTooMany = newCartId();
      const cartA = newCartId();
      const cartB = newCartId();

      it('AddProduct(pid, 7) with 6 available rejects 400 Insufficient stock', STEP, async () => {
        await rejectsInsufficientStock(shopper.Cart(cartTooMany).AddProduct(pid, 7), 'AddProduct(7) with 6 available');
        const items = await shopper.Cart(cartTooMany).Items();
        assert.ok(Array.isArray(items.data), `Items: data is an array (got ${JSON.stringify(items)})`);
        assert.equal(items.data.length, 0, `a refused add puts nothing in the cart (got ${JSON.stringify(items.data)})`);
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after refused add of 7');
      });

      it('two carts of 6 each both check out', STEP, async () => {
        const a = await shopper.Cart(cartA).AddProduct(pid, 6);
        assertSingleLine(a, { pid, sku, quantity: 6 }, 'cart A AddProduct(6)');
        const b = await shopper.Cart(cartB).AddProduct(pid, 6);
        assertSingleLine(b, { pid, sku, quantity: 6 }, 'cart B AddProduct(6)');

        const orderA = await shopper.Cart(cartA).Checkout(customer, BILLING);
        assertOrder(orderA.data, { status: 'incomplete', payment: 'unpaid', shipping: 'unfulfilled' }, 'Checkout A');
        const orderB = await shopper.Cart(cartB).Checkout(customer, BILLING);
        assertOrder(orderB.data, { status: 'incomplete', payment: 'unpaid', shipping: 'unfulfilled' }, 'Checkout B');
        assert.notEqual(orderA.data.id, orderB.data.id, 'two distinct orders');
        s.orderA = orderA.data.id;
        s.orderB = orderB.data.id;
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after both checkouts');
      });

      it('the first purchase wins: allocated 6, available 0', STEP, async () => {
        assert.ok(s.orderA, 'needs the checkout step');
        const answer = await shopper.Orders.Payment(s.orderA, { gateway: 'manual', method: 'purchase' });
        assertTransaction(answer.data, { type: 'purchase', orderId: s.orderA }, 'purchase A');
        const got = await admin.Orders.Get(s.orderA);
        assertOrder(got.data, { status: 'complete', payment: 'paid', shipping: 'unfulfilled' }, 'order A after purchase');
        await expectFigures(admin, pid, { total: 6, available: 0, allocated: 6 }, 'after purchase A');
      });

      it('the second purchase rejects 400 Insufficient stock and allocates nothing', STEP, async () => {
        assert.ok(s.orderB, 'needs the checkout step');
        await rejectsInsufficientStock(
          shopper.Orders.Payment(s.orderB, { gateway: 'manual', method: 'purchase' }),
          'purchase B with 0 available',
        );
        await expectFigures(admin, pid, { total: 6, available: 0, allocated: 6 }, 'after refused purchase B');
        const got = await admin.Orders.Get(s.orderB);
        assertOrder(got.data, { status: 'incomplete', payment: 'unpaid', shipping: 'unfulfilled' }, 'order B after refused purchase');
      });

      it('admin Orders.All lists the orders of this run', STEP, async () => {
        assert.ok(s.orderA && s.order1, 'needs the earlier steps');
        const page = await admin.Orders.Limit(100).All();
        assert.ok(Array.isArray(page.data), `Orders.All: data is an array (got ${JSON.stringify(page)})`);
        assert.ok(page.meta && page.meta.results, `Orders.All: meta.results (got ${JSON.stringify(page.meta)})`);
        assert.ok(page.meta.results.total >= 4, `Orders.All: at least this run's 4 orders (got ${page.meta.results.total})`);

        const unpaid = await admin.Orders.Limit(100).Filter({ eq: { payment: 'unpaid' } }).All();
        assert.ok(Array.isArray(unpaid.data), `Orders.All filtered: data is an array (got ${JSON.stringify(unpaid)})`);
        for (const o of unpaid.data) {
          assert.equal(o.payment, 'unpaid', `filter eq(payment,unpaid) returned ${JSON.stringify(o)}`);
        }
      });

      it('cleanup: cancel A releases its 6; cancel unpaid B; figures 6/6/0', STEP, async () => {
        assert.ok(s.orderA && s.orderB, 'needs the checkout step');
        const a = await admin.Orders.Update(s.orderA, { status: 'cancelled' });
        assert.equal(a.data.status, 'cancelled', `cancel A: status (got ${JSON.stringify(a.data)})`);
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after cancel A');
        const b = await admin.Orders.Update(s.orderB, { status: 'cancelled' });
        assert.equal(b.data.status, 'cancelled', `cancel B: status (got ${JSON.stringify(b.data)})`);
        await expectFigures(admin, pid, { total: 6, available: 6, allocated: 0 }, 'after cancel B');
      });
    });
  });
}
