// The dashboard in a real headless Chromium (started by run.sh against a real server).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const BASE = process.env.STOCKROOM_URL;
const ADMIN = { id: process.env.STOCKROOM_CLIENT_ID, secret: process.env.STOCKROOM_CLIENT_SECRET };
const SHOPPER = { id: process.env.STOCKROOM_SHOPPER_ID, secret: process.env.STOCKROOM_SHOPPER_SECRET };
const SHOTS = process.env.SCREENSHOT_DIR;

let browser;
let adminToken;
let paidOrder;

async function token(grant, id, secret) {
  const body = new URLSearchParams({ grant_type: grant, client_id: id });
  if (secret) body.set('client_secret', secret);
  const r = await fetch(`${BASE}/oauth/access_token`, { method: 'POST', body });
  assert.equal(r.status, 200, 'a token');
  return (await r.json()).access_token;
}

async function api(method, path, body, tok = adminToken) {
  const r = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function figures(product) {
  const r = await api('GET', `/v2/inventories/${product}`);
  assert.equal(r.status, 200);
  const d = r.body.data;
  return [d.total, d.allocated, d.available];
}

/** A paid order of `quantity` units of `product`. */
async function paidOrderOf(cart, product, quantity) {
  const shopper = await token('implicit', ADMIN.id);
  let r = await api('POST', `/v2/carts/${cart}/items`, { data: { type: 'cart_item', id: product, quantity } }, shopper);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const customer = { name: 'Ada Lovelace', email: 'ada@example.com' };
  const address = { first_name: 'Ada', last_name: 'Lovelace', line_1: '1 Analytical Row', city: 'London', postcode: 'N1', country: 'GB' };
  r = await api('POST', `/v2/carts/${cart}/checkout`, { data: { customer, billing_address: address, shipping_address: address } }, shopper);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const order = r.body.data.id;
  r = await api('POST', `/v2/orders/${order}/payments`, { data: { gateway: 'manual', method: 'purchase' } }, shopper);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return order;
}

async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  return context.newPage();
}

async function signIn(page, who = ADMIN) {
  await page.goto(`${BASE}/dashboard/sign-in`);
  await page.fill('input[name=client_id]', who.id);
  await page.fill('input[name=client_secret]', who.secret);
  await page.click('button[type=submit]');
}

async function shot(page, name) {
  if (SHOTS) await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

before(async () => {
  adminToken = await token('client_credentials', ADMIN.id, ADMIN.secret);
  let r = await api('POST', '/v2/inventories/locations', {
    data: { type: 'inventory_location', attributes: { name: 'East warehouse', slug: 'wh-east' } },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const catalog = [
    ['mug-blue', 'MUG-BLUE', 'Blue enamel mug', 1299, 120],
    ['mug-red', 'MUG-RED', 'Red enamel mug', 1299, 4],
    ['kettle', 'KETTLE-1', 'Stovetop kettle', 4500, 35],
    ['teapot', 'TEAPOT-1', 'Stoneware teapot', 3200, 9],
    ['spoon', 'SPOON-1', 'Tea spoon', 350, 640],
  ];
  for (const [id, sku, name, amount, quantity] of catalog) {
    r = await api('POST', '/v2/products', { data: { type: 'product', id, attributes: { name, sku, price: { amount, currency: 'GBP' } } } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    r = await api('POST', `/v2/inventories/${id}`, { data: { quantity } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  r = await api('POST', '/v2/inventories', {
    data: { type: 'stock', id: 'crate', attributes: { locations: { 'wh-east': { available: 12 } } } },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  for (const [action, quantity] of [['decrement', 4], ['increment', 30], ['allocate', 6], ['decrement', 20], ['deallocate', 2]]) {
    r = await api('POST', '/v2/inventories/mug-blue/transactions', { data: { type: 'stock-transaction', action, quantity } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  paidOrder = await paidOrderOf('cart-browser-1', 'kettle', 2);
  await paidOrderOf('cart-browser-2', 'spoon', 12);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
});

test('a wrong secret is refused and opens nothing', async () => {
  const page = await newPage();
  await signIn(page, { id: ADMIN.id, secret: 'not-the-secret' });
  assert.match(await page.textContent('[role=alert]'), /Wrong client id or secret/);
  await page.goto(`${BASE}/dashboard/stock`);
  assert.ok(page.url().endsWith('/dashboard/sign-in'), `sent back to sign in, at ${page.url()}`);
  await page.context().close();
});

test('a shopper credential opens nothing', async () => {
  const page = await newPage();
  await signIn(page, SHOPPER);
  assert.match(await page.textContent('[role=alert]'), /shopper's/);
  // A shopper's token put in the session cookie by hand, or sent as a bearer token: no page.
  const shopperToken = await token('client_credentials', SHOPPER.id, SHOPPER.secret);
  await page.context().addCookies([{ name: 'stockroom_session', value: shopperToken, url: `${BASE}/dashboard` }]);
  for (const path of ['/dashboard/stock', '/dashboard/products/mug-blue', `/dashboard/orders/${paidOrder}`, '/dashboard/status']) {
    await page.goto(`${BASE}${path}`);
    assert.ok(page.url().endsWith('/dashboard/sign-in'), `${path} sends a shopper to sign in`);
  }
  const posted = await page.request.post(`${BASE}/dashboard/orders/${paidOrder}/ship`, {
    form: { csrf: 'x', idem: 'shopper-ship' }, maxRedirects: 0,
  });
  assert.equal(posted.status(), 403);
  const bearer = await fetch(`${BASE}/dashboard/stock`, { headers: { authorization: `Bearer ${shopperToken}` }, redirect: 'manual' });
  assert.equal(bearer.status, 303);
  assert.deepEqual(await figures('kettle'), [35, 2, 33], 'nothing shipped');
  await page.context().close();
});

test('an administrator finds a product, adjusts its stock and sees table, history and chart change', async () => {
  const page = await newPage();
  await signIn(page);
  assert.ok(page.url().endsWith('/dashboard/stock'), `signed in, at ${page.url()}`);
  const cookie = (await page.context().cookies()).find((c) => c.name === 'stockroom_session');
  assert.ok(cookie.httpOnly && cookie.sameSite === 'Strict', 'the session cookie is HttpOnly and SameSite=Strict');
  await shot(page, 'stock');

  await page.fill('input[name=q]', 'enamel');
  await page.click('form.filters button');
  const ids = await page.$$eval('table.stock tbody td:first-child a', (as) => as.map((a) => a.textContent));
  assert.deepEqual(ids, ['mug-blue', 'mug-red'], 'the search finds both enamel mugs by name');
  const rowOf = async (id) => page.$eval(`table.stock tr:has(a[href="/dashboard/products/${id}"])`, (tr) => [...tr.cells].map((c) => c.textContent.trim()));
  assert.equal((await rowOf('mug-blue'))[3], '126', 'total before');

  await page.click('a[href="/dashboard/products/mug-blue"]');
  assert.equal(await page.textContent('#total'), '126');
  const chartBefore = await page.getAttribute('svg.chart path', 'd');
  const entriesBefore = await page.$$eval('table.history tbody tr', (rows) => rows.length);

  await page.selectOption('form.adjust select[name=action]', 'increment');
  await page.fill('form.adjust input[name=quantity]', '25');
  await page.fill('form.adjust input[name=reason]', 'found a box in the back');
  const fields = Object.fromEntries(await page.$$eval('form.adjust input[type=hidden]', (is) => is.map((i) => [i.name, i.value])));
  await page.click('form.adjust button');
  assert.match(await page.textContent('.notice'), /Done/);
  assert.equal(await page.textContent('#total'), '151', 'the figures moved');
  const first = await page.$$eval('table.history tbody tr:first-child td', (tds) => tds.map((t) => t.textContent.trim()));
  assert.deepEqual([first[2], first[3], first[4], first[8]], ['increment', '25', '151', 'found a box in the back']);
  assert.equal(await page.$$eval('table.history tbody tr', (rows) => rows.length), entriesBefore + 1);
  assert.notEqual(await page.getAttribute('svg.chart path', 'd'), chartBefore, 'the chart moved');
  await shot(page, 'product');

  // The same form sent again (a double click, a resubmitted POST) applies once.
  const again = await page.request.post(`${BASE}/dashboard/products/mug-blue/adjust`, {
    form: { ...fields, action: 'increment', quantity: '25', location: '', reason: 'found a box in the back' },
  });
  assert.equal(again.status(), 200);
  assert.match(await again.text(), /applied once/);
  assert.deepEqual(await figures('mug-blue'), [151, 4, 147]);

  await page.goto(`${BASE}/dashboard/stock?q=MUG-BLUE`);
  assert.equal((await rowOf('mug-blue'))[3], '151', 'the table shows the new total');
  await page.goto(`${BASE}/dashboard/stock?level=low&low=10`);
  const low = await page.$$eval('table.stock tbody td:first-child a', (as) => as.map((a) => a.textContent));
  assert.deepEqual(low, ['mug-red', 'teapot'], 'low stock: some, at most 10, available');
  await page.context().close();
});

test('a form posted without its CSRF token is refused and changes nothing', async () => {
  const page = await newPage();
  await signIn(page);
  const before = await figures('teapot');
  for (const form of [{ idem: 'csrf-1', action: 'decrement', quantity: '1', location: '' },
    { csrf: 'forged', idem: 'csrf-2', action: 'decrement', quantity: '1', location: '' }]) {
    const r = await page.request.post(`${BASE}/dashboard/products/teapot/adjust`, { form, maxRedirects: 0 });
    assert.equal(r.status(), 403, JSON.stringify(form));
  }
  const out = await page.request.post(`${BASE}/dashboard/sign-out`, { form: {}, maxRedirects: 0 });
  assert.equal(out.status(), 403, 'sign-out needs its token too');
  assert.deepEqual(await figures('teapot'), before);
  await page.goto(`${BASE}/dashboard/stock`);
  assert.ok(page.url().endsWith('/dashboard/stock'), 'still signed in');
  await page.context().close();
});

test('an administrator ships a paid order, sees its history, and signs out', async () => {
  const page = await newPage();
  await signIn(page);
  await page.goto(`${BASE}/dashboard/orders`);
  await page.selectOption('select[name=payment]', 'paid');
  await page.click('form.filters button');
  const listed = await page.$$eval('table tbody td:first-child a', (as) => as.map((a) => a.textContent));
  assert.ok(listed.includes(paidOrder), 'the paid order is listed');
  await shot(page, 'orders');
  await page.click(`a[href="/dashboard/orders/${paidOrder}"]`);
  assert.equal(await page.textContent('#shipping'), 'unfulfilled');
  await page.click('text=Mark shipped');
  assert.match(await page.textContent('.notice'), /Done/);
  assert.equal(await page.textContent('#shipping'), 'fulfilled');
  const actions = await page.$$eval('table:last-of-type tbody tr td:nth-child(3)', (tds) => tds.map((t) => t.textContent));
  assert.ok((await page.content()).includes('>ship<'), `a ship entry is listed: ${actions}`);
  assert.deepEqual(await figures('kettle'), [33, 0, 33], 'shipped: total and allocated dropped');
  await shot(page, 'order');

  await page.goto(`${BASE}/dashboard/locations`);
  assert.ok((await page.content()).includes('wh-east'));
  await page.goto(`${BASE}/dashboard/status`);
  assert.match(await page.textContent('main'), /Requests/);
  await shot(page, 'status');

  await page.click('header form.sign-out button');
  assert.ok(page.url().endsWith('/dashboard/sign-in'));
  await page.goto(`${BASE}/dashboard/orders`);
  assert.ok(page.url().endsWith('/dashboard/sign-in'), 'signed out: pages need signing in again');
  await page.context().close();
});

test('the stock page reads on a phone', async () => {
  const page = await newPage({ width: 390, height: 844 });
  await signIn(page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page itself does not scroll sideways (${overflow}px); wide tables scroll in their box`);
  await shot(page, 'stock-phone');
  await page.context().close();
});
