// End-to-end test of the STOREFRONT calls (issue 13): carts as resources, custom items,
// customers and their tokens with the real `@elasticpath/js-sdk` 35, and the legacy flat
// product of `@moltin/sdk` 36's Products.Create. Run it through tests/sdk/run.sh.

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
const HOST = STOCKROOM_URL.host;
const PROTOCOL = STOCKROOM_URL.protocol.replace(/:$/, '');
const STEP = { timeout: 30_000 };

function gateway(sdk, withSecret) {
  const config = { client_id: CLIENT_ID, host: HOST, protocol: PROTOCOL, storage: new sdk.MemoryStorageFactory() };
  if (withSecret) config.client_secret = CLIENT_SECRET;
  return sdk.gateway(config);
}

describe('storefront with @elasticpath/js-sdk', () => {
  const admin = gateway(elasticpath, true);
  const shopper = gateway(elasticpath, false);
  const run = randomUUID().slice(0, 8);
  const pid = `sf-mug-${run}`;
  const s = {};

  before(async () => {
    // Legacy flat product through @moltin/sdk, stock managed from 0, then 5 units.
    const legacy = gateway(moltin, true);
    const made = await legacy.Products.Create({
      type: 'product', id: pid, name: 'Mug', slug: `mug-${run}`, sku: `SF-${run}`, manage_stock: true,
      description: 'A mug', price: [{ amount: 1000, currency: 'USD', includes_tax: false }],
      status: 'live', commodity_type: 'physical',
    });
    assert.equal(made.data.name, 'Mug', `legacy Products.Create (got ${JSON.stringify(made)})`);
    assert.deepEqual(made.data.meta.stock, { level: 0, availability: 'out-stock' }, 'legacy meta.stock');
    await admin.Inventories.IncrementStock(pid, 5);
  });

  it('Customers.Create and Customers.Token (a wrong password is refused)', STEP, async () => {
    const email = `ada-${run}@example.com`;
    const created = await shopper.Customers.Create({ name: 'Ada', email, password: 'correct horse' });
    s.customer = created.data.id;
    const token = await shopper.Customers.Token(email, 'correct horse');
    assert.equal(token.data.customer_id, s.customer, `Customers.Token (got ${JSON.stringify(token)})`);
    s.token = token.data.token;
    await rejectsWithStatus(shopper.Customers.Token(email, 'wrong'), 401, 'Customers.Token, wrong password');
  });

  it('Cart().CreateCart, UpdateCart and GetCartsList with the customer token', STEP, async () => {
    assert.ok(s.token, 'needs the customer step');
    const created = await shopper.Cart().CreateCart({ name: 'Holiday', description: 'gifts' }, s.token);
    s.cart = created.data.id;
    assert.equal(created.data.name, 'Holiday', `CreateCart (got ${JSON.stringify(created)})`);
    assert.ok(created.data.meta.timestamps.expires_at, 'CreateCart: meta.timestamps.expires_at');
    const updated = await shopper.Cart(s.cart).UpdateCart({ name: 'Birthday' }, s.token);
    assert.equal(updated.data.name, 'Birthday', 'UpdateCart: name');
    const list = await shopper.Cart().GetCartsList(s.token);
    assert.deepEqual(list.data.map((c) => c.id), [s.cart], `GetCartsList (got ${JSON.stringify(list)})`);
  });

  it('AddProduct, AddCustomItem, With("items").Get, UpdateItems, RemoveAllItems', STEP, async () => {
    assert.ok(s.cart, 'needs the cart step');
    // A customer's cart: this shopper gateway sends no customer token on item calls, so use a
    // guest cart for the SDK's item methods, associated afterwards.
    const cart = `sf-${run}`;
    const items = await shopper.Cart(cart).AddProduct(pid, 2);
    assert.equal(items.data.length, 1, 'AddProduct');
    const custom = await shopper.Cart(cart).AddCustomItem({
      name: 'Gift wrap', sku: 'WRAP', quantity: 1, price: { amount: 250 },
    });
    assert.equal(custom.data.length, 2, `AddCustomItem (got ${JSON.stringify(custom)})`);
    const got = await shopper.Cart(cart).With('items').Get();
    const included = got.included && got.included.items;
    assert.ok(Array.isArray(included) && included.length === 2, `With(items).Get: included.items (got ${JSON.stringify(got)})`);
    assert.equal(got.data.meta.display_price.with_tax.amount, 2 * 1000 + 250, 'cart total');
    const mug = included.find((i) => i.product_id === pid);
    const wrap = included.find((i) => i.type === 'custom_item');
    await rejectsWithStatus(
      shopper.Cart(cart).UpdateItems([{ id: mug.id, quantity: 6 }, { id: wrap.id, quantity: 3 }]),
      400,
      'UpdateItems beyond the stock (all or nothing)',
    );
    const updated = await shopper.Cart(cart).UpdateItems([{ id: mug.id, quantity: 5 }, { id: wrap.id, quantity: 3 }]);
    const quantities = Object.fromEntries(updated.data.map((i) => [i.id, i.quantity]));
    assert.deepEqual(quantities, { [mug.id]: 5, [wrap.id]: 3 }, 'UpdateItems');
    const emptied = await shopper.Cart(cart).RemoveAllItems();
    assert.deepEqual(emptied.data, [], 'RemoveAllItems');
    const linked = await shopper.Cart(cart).AddCustomerAssociation(s.customer, s.token);
    assert.equal(linked.data[0].id, s.customer, `AddCustomerAssociation (got ${JSON.stringify(linked)})`);
    const list = await shopper.Cart().GetCartsList(s.token);
    assert.equal(list.data.length, 2, 'GetCartsList after the association');
  });
});
