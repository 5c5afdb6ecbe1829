// End-to-end test of ORDERS as an administrator manages them, with the real
// `@elasticpath/js-sdk` 35: Orders.Filter / Sort / With('items') / Limit on the order list, and
// Orders.Update setting external_ref, order_number and shipping_address, alone or with a ship
// (issue 13 item 5). Run it through tests/sdk/run.sh. The other test files run at the same
// time against the same server: every list here is narrowed to this run's own email.

import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import * as elasticpath from '@elasticpath/js-sdk';
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
const STEP = { timeout: 30_000 };
const PRICE = 700;
const BILLING = { first_name: 'Ada', last_name: 'Lovelace', line_1: '1 Street', city: 'London', postcode: 'N1 1AA', country: 'GB' };

function makeGateway({ withSecret }) {
  const config = {
    client_id: CLIENT_ID,
    host: STOCKROOM_URL.host,
    protocol: STOCKROOM_URL.protocol.replace(/:$/, ''),
    storage: new elasticpath.MemoryStorageFactory(),
  };
  if (withSecret) {
    config.client_secret = CLIENT_SECRET;
  }
  return elasticpath.gateway(config);
}

async function createProduct(admin, id, sku) {
  const token = (await admin.Authenticate()).access_token;
  const response = await fetch(new URL('/v2/products', STOCKROOM_URL), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({
      data: { type: 'product', id, attributes: { name: 'Bowl', sku, price: { amount: PRICE, currency: 'USD' } } },
    }),
  });
  assert.equal(response.status, 201, `POST /v2/products (body ${await response.text()})`);
}

describe('@elasticpath/js-sdk 35.0.0: order list filters, sort, includes and updates', () => {
  const pid = randomUUID();
  const email = `${randomUUID()}@sdk.test`;
  const ref = `ERP-${randomUUID().slice(0, 8)}`;
  let admin;
  let shopper;
  let first;
  let second;

  async function order(quantity) {
    const cart = randomUUID().replace(/-/g, '');
    await shopper.Cart(cart).AddProduct(pid, quantity);
    const { data } = await shopper.Cart(cart).Checkout({ name: 'Ada', email }, BILLING);
    return data.id;
  }

  const ids = (answer) => answer.data.map((o) => o.id);

  before(async () => {
    admin = makeGateway({ withSecret: true });
    shopper = makeGateway({ withSecret: false });
    await createProduct(admin, pid, `BOWL-${pid.slice(0, 8)}`);
    await admin.Inventories.Create(pid, 20);
    first = await order(1);
    second = await order(2);
    await shopper.Orders.Payment(first, { gateway: 'manual', method: 'purchase' });
  });

  it('Orders.Filter narrows the list: by email, and by email and payment', STEP, async () => {
    const mine = await admin.Orders.Filter({ eq: { email } }).All();
    assert.deepEqual(new Set(ids(mine)), new Set([first, second]), JSON.stringify(mine.data));
    assert.equal(mine.meta.results.total, 2);
    const paid = await admin.Orders.Filter({ eq: { email, payment: 'paid' } }).All();
    assert.deepEqual(ids(paid), [first]);
    const unpaid = await admin.Orders.Filter({ eq: { email, payment: 'unpaid' } }).All();
    assert.deepEqual(ids(unpaid), [second]);
    const big = await admin.Orders.Filter({ eq: { email }, ge: { with_tax: PRICE * 2 } }).All();
    assert.deepEqual(ids(big), [second]);
  });

  it('Orders.Sort orders the list by creation, either way', STEP, async () => {
    const oldest = await admin.Orders.Filter({ eq: { email } }).Sort('created_at').All();
    assert.deepEqual(ids(oldest), [first, second]);
    const newest = await admin.Orders.Filter({ eq: { email } }).Sort('-created_at').All();
    assert.deepEqual(ids(newest), [second, first]);
  });

  it("Orders.With('items') includes the page's items; Limit pages", STEP, async () => {
    const answer = await admin.Orders.With('items').Filter({ eq: { email } }).Sort('created_at').All();
    const items = answer.included && answer.included.items;
    assert.ok(Array.isArray(items), `included.items (got ${JSON.stringify(answer)})`);
    assert.equal(items.length, 2, 'one line in each order');
    assert.deepEqual(new Set(items.map((i) => i.relationships.order.data.id)), new Set([first, second]));
    const page = await admin.Orders.Filter({ eq: { email } }).Sort('created_at').Limit(1).All();
    assert.deepEqual(ids(page), [first]);
    assert.equal(page.meta.results.total, 2);
  });

  it('paid, authorized and balance_owing show where the payment stands', STEP, async () => {
    const paid = await admin.Orders.Get(first);
    assert.equal(paid.data.meta.display_price.paid.amount, PRICE);
    assert.equal(paid.data.meta.display_price.balance_owing.amount, 0);
    const owing = await admin.Orders.Get(second);
    assert.equal(owing.data.meta.display_price.paid.amount, 0);
    assert.equal(owing.data.meta.display_price.authorized.amount, 0);
    assert.equal(owing.data.meta.display_price.balance_owing.amount, PRICE * 2);
  });

  it('Orders.Update sets details, alone or with a ship; a refused ship changes nothing', STEP, async () => {
    const set = await admin.Orders.Update(first, { external_ref: ref, order_number: 'SO-1' });
    assert.equal(set.data.external_ref, ref, JSON.stringify(set.data));
    assert.equal(set.data.order_number, 'SO-1');
    const found = await admin.Orders.Filter({ eq: { external_ref: ref } }).All();
    assert.deepEqual(ids(found), [first]);

    // The second order is unpaid: shipping it is refused, and its reference is not set.
    await rejectsWithStatus(
      admin.Orders.Update(second, { shipping: 'fulfilled', external_ref: ref }),
      409,
      'ship an unpaid order with a reference',
    );
    assert.equal((await admin.Orders.Get(second)).data.external_ref, undefined);

    const address = { first_name: 'Grace', last_name: 'Hopper', line_1: '2 Road', postcode: '10001', country: 'US' };
    const shipped = await admin.Orders.Update(first, { shipping: 'fulfilled', shipping_address: address });
    assert.equal(shipped.data.shipping, 'fulfilled');
    assert.deepEqual(shipped.data.shipping_address, address);
    const { data } = await admin.Inventories.Get(pid);
    assert.equal(data.total, 19, 'one unit shipped');
  });

  it('a bad filter or sort is a 400', STEP, async () => {
    await rejectsWithStatus(admin.Orders.Filter({ eq: { nonsense: 'x' } }).All(), 400, 'unknown filter field');
    await rejectsWithStatus(admin.Orders.Sort('total').All(), 400, 'unknown sort');
  });
});
