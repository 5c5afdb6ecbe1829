// End-to-end test of PAYMENTS beyond pay and capture, with the real `@elasticpath/js-sdk` 35:
// Gateways.All / Get / Enabled, Transactions.Cancel (void an authorization: its stock released
// once) and Transactions.Refund (full or partial, never more than was paid, no stock moved).
// Run it through tests/sdk/run.sh, which builds and starts the server (no HTTP gateway, so
// `manual` is enabled). The other test files run at the same time against the same server:
// nothing here turns `manual` off.

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
const PRICE = 500;
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
      data: { type: 'product', id, attributes: { name: 'Cup', sku, price: { amount: PRICE, currency: 'USD' } } },
    }),
  });
  assert.equal(response.status, 201, `POST /v2/products (body ${await response.text()})`);
}

async function figures(admin, pid) {
  const { data } = await admin.Inventories.Get(pid);
  return { total: data.total, allocated: data.allocated, available: data.available };
}

describe('@elasticpath/js-sdk 35.0.0: gateways, voids and refunds against a live Stockroom', () => {
  const pid = randomUUID();
  let admin;
  let shopper;

  /** A checked-out order of `quantity` units; its id. */
  async function order(quantity) {
    const cart = randomUUID().replace(/-/g, '');
    await shopper.Cart(cart).AddProduct(pid, quantity);
    const { data } = await shopper.Cart(cart).Checkout({ name: 'Ada', email: 'ada@example.com' }, BILLING);
    return data.id;
  }

  before(async () => {
    admin = makeGateway({ withSecret: true });
    shopper = makeGateway({ withSecret: false });
    await createProduct(admin, pid, `CUP-${pid.slice(0, 8)}`);
    await admin.Inventories.Create(pid, 20);
  });

  it('Gateways.All and Gateways.Get: manual enabled, http not configured', STEP, async () => {
    const all = await admin.Gateways.All();
    assert.deepEqual(
      all.data.map((g) => [g.type, g.slug, g.enabled]),
      [['gateway', 'manual', true], ['gateway', 'http', false]],
      `Gateways.All (got ${JSON.stringify(all)})`,
    );
    const manual = await admin.Gateways.Get('manual');
    assert.equal(manual.data.enabled, true, 'Gateways.Get(manual)');
    await rejectsWithStatus(admin.Gateways.Enabled('http', true), 409, 'Gateways.Enabled(http, true) without a URL');
    const http = await admin.Gateways.Enabled('http', false);
    assert.equal(http.data.enabled, false, 'Gateways.Enabled(http, false)');
    await rejectsWithStatus(shopper.Gateways.All(), 403, 'shopper Gateways.All');
    await rejectsWithStatus(shopper.Gateways.Enabled('manual', false), 403, 'shopper Gateways.Enabled');
  });

  it('Transactions.Cancel voids an authorization once: its stock is released, the order unpaid', STEP, async () => {
    const id = await order(3);
    const before = await figures(admin, pid);
    const authorized = await shopper.Orders.Payment(id, { gateway: 'manual', method: 'authorize' });
    const tid = authorized.data.id;
    assert.equal((await figures(admin, pid)).allocated, before.allocated + 3, 'authorize allocates');
    await rejectsWithStatus(shopper.Transactions.Cancel({ order: id, transaction: tid }), 403, 'shopper Transactions.Cancel');
    const voided = await admin.Transactions.Cancel({ order: id, transaction: tid }, { reason: 'customer changed their mind' });
    assert.equal(voided.data.id, tid, 'Transactions.Cancel answers the authorization');
    assert.equal(voided.data.status, 'cancelled', `Transactions.Cancel: status (got ${JSON.stringify(voided)})`);
    assert.deepEqual(await figures(admin, pid), before, 'the void released the 3 units');
    const got = await admin.Orders.Get(id);
    assert.deepEqual([got.data.status, got.data.payment], ['incomplete', 'unpaid'], 'order after the void');
    await rejectsWithStatus(admin.Transactions.Cancel({ order: id, transaction: tid }), 409, 'a second Transactions.Cancel');
    await rejectsWithStatus(admin.Transactions.Capture({ order: id, transaction: tid }), 409, 'Capture after Cancel');
    assert.deepEqual(await figures(admin, pid), before, 'nothing released twice');
  });

  it('Transactions.Refund: partial, then the rest; never more than paid; no stock moves', STEP, async () => {
    const id = await order(2);
    const paid = await shopper.Orders.Payment(id, { gateway: 'manual', method: 'purchase' });
    const tid = paid.data.id;
    const after = await figures(admin, pid);
    const partial = await admin.Transactions.Refund({ order: id, transaction: tid }, { amount: 300 });
    assert.equal(partial.data.transaction_type, 'refund', `Refund: transaction_type (got ${JSON.stringify(partial)})`);
    assert.equal(partial.data.amount, 300, 'Refund: amount');
    assert.equal((await admin.Orders.Get(id)).data.payment, 'paid', 'partly refunded: still paid');
    await rejectsWithStatus(
      admin.Transactions.Refund({ order: id, transaction: tid }, { amount: 2 * PRICE - 300 + 1 }),
      409,
      'a refund above what is left',
    );
    const rest = await admin.Transactions.Refund({ order: id, transaction: tid });
    assert.equal(rest.data.amount, 2 * PRICE - 300, 'Refund with no amount: all that is left');
    assert.equal((await admin.Orders.Get(id)).data.payment, 'refunded', 'fully refunded');
    await rejectsWithStatus(admin.Transactions.Refund({ order: id, transaction: tid }), 409, 'nothing left to refund');
    await rejectsWithStatus(shopper.Transactions.Refund({ order: id, transaction: tid }), 403, 'shopper Transactions.Refund');
    assert.deepEqual(await figures(admin, pid), after, 'refunds move no stock');
    const all = await admin.Transactions.All({ order: id });
    assert.deepEqual(all.data.map((t) => t.transaction_type), ['purchase', 'refund', 'refund'], 'Transactions.All');
  });
});
