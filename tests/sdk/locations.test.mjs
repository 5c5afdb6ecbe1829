// End-to-end test of MULTI-LOCATION INVENTORY: drives a REAL running Stockroom server with
// `@elasticpath/js-sdk` 35's `MultiLocationInventories` (only that package has it), checking the
// figures after every step (wire-contract §4, §9.1). Run it through tests/sdk/run.sh, which builds
// and starts the server.
//
// Environment:
//   STOCKROOM_URL            e.g. http://127.0.0.1:18080
//   STOCKROOM_CLIENT_ID      client id of an administrator credential
//   STOCKROOM_CLIENT_SECRET  its secret
//
// The SDK's signatures, read from its dist code (they differ from the docs' prose in places):
//   Locations.Create(attributes)            POST /v2/inventories/locations
//                                           {"data":{"type":"inventory_location","attributes":…}}
//   Locations.Update(id, attributes)        PUT  /v2/inventories/locations/{id}
//                                           {"data":{"type":"inventory_location","id":id,"attributes":…}}
//   Create(attributes, productId)           POST /v2/inventories
//                                           {"data":{"type":"stock","id":pid,"attributes":…}}
//   Update(productId, attributes)           PUT  /v2/inventories/{pid}, same envelope
//   Increment/Decrement/Allocate/Deallocate/SetStock(productId, quantity, locationSlug?)
//                                           POST /v2/inventories/{pid}/transactions
//                                           {"data":{"attributes":{"type":"stock-transaction",
//                                            "action":…,"quantity":…,"product_id":…,"location"?:…}}}
// `Limit`, `Offset` and `Filter` set state on the endpoint object that later calls keep, so every
// listing here resets them afterwards.
//
// The SDK rejects a non-2xx answer with the parsed body only (wire-contract §1), so every error
// check looks at `errors[0].status`. Steps inside one `describe` run in order and share state;
// a step whose prerequisite failed says so instead of failing obscurely.

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

// host[:port] only, no scheme or path (wire-contract §7).
const HOST = STOCKROOM_URL.host;
const PROTOCOL = STOCKROOM_URL.protocol.replace(/:$/, '');

// A bound on every step, so a server that keeps answering 401 (which the SDK retries) or hangs
// fails the step instead of hanging the run.
const STEP = { timeout: 30_000 };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function makeGateway() {
  return elasticpath.gateway({
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    host: HOST,
    protocol: PROTOCOL,
    storage: new elasticpath.MemoryStorageFactory(),
  });
}


/** Every item of a list endpoint, walking pages of 100; resets the endpoint's paging state. */
async function listEverything(endpoint, what, filter) {
  const items = [];
  try {
    for (let offset = 0; ; offset += 100) {
      if (filter !== undefined) {
        endpoint.Filter(filter);
      }
      const page = await endpoint.Limit(100).Offset(offset).All();
      assert.ok(page && Array.isArray(page.data), `${what}: data is an array (got ${JSON.stringify(page)})`);
      assert.ok(page.meta && page.meta.results, `${what}: meta.results present (got ${JSON.stringify(page.meta)})`);
      assert.equal(typeof page.meta.results.total, 'number', `${what}: meta.results.total is a number`);
      items.push(...page.data);
      // The other SDK test files run at the same time against the same server, so the total
      // may move between pages: stop at the first short page rather than at the total.
      if (page.data.length < 100) {
        return items;
      }
    }
  } finally {
    endpoint.Limit(undefined).Offset(undefined);
    if (filter !== undefined) {
      endpoint.Filter(undefined);
    }
  }
}

const sum = (locations, key) => Object.values(locations).reduce((n, l) => n + l[key], 0);

/** Per-location figures from `{slug: [total, allocated]}`. */
function figures(spec) {
  return Object.fromEntries(
    Object.entries(spec).map(([slug, [total, allocated]]) => [
      slug,
      { total, allocated, available: total - allocated },
    ]),
  );
}

/**
 * Checks a multi-location stock object: id, type, each location's figures (and no other
 * location), the top-level sums, meta.stock_id and meta.timestamps.
 */
function assertMliStock(stock, pid, locations, what) {
  assert.ok(stock && typeof stock === 'object', `${what}: expected a stock object, got ${JSON.stringify(stock)}`);
  assert.equal(stock.id, pid, `${what}: id`);
  assert.equal(stock.type, 'stock', `${what}: type`);
  const attrs = stock.attributes;
  assert.ok(attrs && typeof attrs === 'object', `${what}: attributes present (got ${JSON.stringify(stock)})`);
  assert.deepEqual(attrs.locations, locations, `${what}: per-location figures (got ${JSON.stringify(attrs)})`);
  assert.deepEqual(
    { total: attrs.total, allocated: attrs.allocated, available: attrs.available },
    {
      total: sum(locations, 'total'),
      allocated: sum(locations, 'allocated'),
      available: sum(locations, 'available'),
    },
    `${what}: top-level figures are the sums over locations (got ${JSON.stringify(attrs)})`,
  );
  assert.ok(stock.meta, `${what}: meta present (got ${JSON.stringify(stock)})`);
  assert.match(String(stock.meta.stock_id), UUID, `${what}: meta.stock_id is a UUID`);
  assert.ok(stock.meta.timestamps, `${what}: meta.timestamps present (got ${JSON.stringify(stock.meta)})`);
  assert.match(String(stock.meta.timestamps.created_at), RFC3339, `${what}: meta.timestamps.created_at`);
  assert.match(String(stock.meta.timestamps.updated_at), RFC3339, `${what}: meta.timestamps.updated_at`);
}

/** Checks a multi-location transaction (figures are the location's, after the transaction). */
function assertMliTransaction(txn, { pid, action, quantity, location, after }, what) {
  assert.ok(txn && typeof txn === 'object', `${what}: expected a transaction, got ${JSON.stringify(txn)}`);
  assert.equal(typeof txn.id, 'string', `${what}: id`);
  assert.ok(txn.id.length > 0, `${what}: id is empty`);
  assert.equal(txn.type, 'stock-transaction', `${what}: type`);
  const attrs = txn.attributes;
  assert.ok(attrs && typeof attrs === 'object', `${what}: attributes present (got ${JSON.stringify(txn)})`);
  assert.equal(attrs.action, action, `${what}: attributes.action (got ${JSON.stringify(attrs)})`);
  assert.equal(attrs.product_id, pid, `${what}: attributes.product_id`);
  assert.equal(attrs.quantity, quantity, `${what}: attributes.quantity`);
  assert.equal(attrs.location, location, `${what}: attributes.location`);
  if (after) {
    assert.deepEqual(
      { total: attrs.total, allocated: attrs.allocated, available: attrs.available },
      after,
      `${what}: the location's figures after the transaction (got ${JSON.stringify(attrs)})`,
    );
  }
  assert.ok(txn.meta && txn.meta.timestamps, `${what}: meta.timestamps present (got ${JSON.stringify(txn)})`);
  assert.match(String(txn.meta.timestamps.created_at), RFC3339, `${what}: meta.timestamps.created_at`);
}

describe('@elasticpath/js-sdk 35.0.0 MultiLocationInventories against a live Stockroom', () => {
  const suffix = randomUUID().slice(0, 8);
  // Unique slugs and product ids per run, so a re-run against the same server never collides.
  const A = `wh-a-${suffix}`;
  const B = `wh-b-${suffix}`;
  const C = `wh-c-${suffix}`;
  const C2 = `wh-c2-${suffix}`;
  const pid = randomUUID(); // stocked at A and B
  const pid2 = randomUUID(); // stocked at B only
  const unknownPid = randomUUID();

  const LOCATION_A = {
    name: `Warehouse A ${suffix}`,
    slug: A,
    external_ref: `ext-a-${suffix}`,
    description: 'The main warehouse',
    address: ['1 Road', 'Milton Keynes', 'MK1 1AA'],
    geolocation: { lat: 51.47, lon: -0.0015 },
  };

  let ep;
  let mli;
  const loc = {}; // slug → created location
  const s = {}; // state shared between steps
  // What the server should hold for pid, as {slug: [total, allocated]}; kept up to date below.
  let model;

  before(() => {
    assert.equal(typeof elasticpath.gateway, 'function', '@elasticpath/js-sdk exports gateway');
    ep = makeGateway();
    mli = ep.MultiLocationInventories;
    assert.ok(mli && mli.Locations, '@elasticpath/js-sdk has MultiLocationInventories.Locations');
  });

  // ---------------------------------------------------------------- locations

  it(`Locations.Create with every attribute → data {id, type, attributes} [run ${suffix}]`, STEP, async () => {
    const created = await mli.Locations.Create(LOCATION_A);
    const data = created && created.data;
    assert.ok(data, `Create: {"data":…} (got ${JSON.stringify(created)})`);
    assert.match(String(data.id), UUID, 'Create: id is a UUID');
    assert.equal(data.type, 'inventory_location', 'Create: type');
    assert.deepEqual(data.attributes, LOCATION_A, 'Create: attributes echo what was sent');
    assert.ok(data.meta && data.meta.timestamps, `Create: meta.timestamps (got ${JSON.stringify(data)})`);
    assert.match(String(data.meta.timestamps.created_at), RFC3339, 'Create: created_at');
    assert.match(String(data.meta.timestamps.updated_at), RFC3339, 'Create: updated_at');
    loc[A] = data;

    for (const [slug, name] of [
      [B, `Warehouse B ${suffix}`],
      [C, `Warehouse C ${suffix}`],
    ]) {
      const other = await mli.Locations.Create({ name, slug });
      assert.equal(other.data.type, 'inventory_location', `Create ${slug}: type`);
      assert.equal(other.data.attributes.name, name, `Create ${slug}: name`);
      assert.equal(other.data.attributes.slug, slug, `Create ${slug}: slug`);
      assert.notEqual(other.data.id, loc[A].id, `Create ${slug}: a new id`);
      loc[slug] = other.data;
    }
  });

  it('Locations.Create with a taken slug rejects with 409; a name under 3 characters with 400', STEP, async () => {
    assert.ok(loc[A], 'needs the Locations.Create step');
    await rejectsWithStatus(
      mli.Locations.Create({ name: 'Another warehouse', slug: A }),
      409,
      'Locations.Create with a duplicate slug',
    );
    await rejectsWithStatus(
      mli.Locations.Create({ name: 'ab', slug: `short-${suffix}` }),
      400,
      'Locations.Create with a 2-character name',
    );
    // Neither refused create left a location behind.
    const all = await listEverything(mli.Locations, 'Locations.All after refused creates');
    assert.equal(all.filter((l) => l.attributes.slug === A).length, 1, 'still one location with slug A');
    assert.ok(!all.some((l) => l.attributes.slug === `short-${suffix}`), 'the short-named location was not made');
  });

  it('Locations.All() lists them with meta.results.total', STEP, async () => {
    assert.ok(loc[A] && loc[B] && loc[C], 'needs the Locations.Create step');
    const first = await mli.Locations.All();
    assert.ok(Array.isArray(first.data), `Locations.All: data is an array (got ${JSON.stringify(first)})`);
    assert.ok(first.meta && first.meta.results, `Locations.All: meta.results (got ${JSON.stringify(first.meta)})`);
    assert.equal(typeof first.meta.results.total, 'number', 'Locations.All: meta.results.total is a number');
    assert.ok(first.meta.results.total >= 3, `Locations.All: total ${first.meta.results.total} >= 3`);
    for (const l of first.data) {
      assert.equal(l.type, 'inventory_location', 'Locations.All: item type');
    }

    const all = await listEverything(mli.Locations, 'Locations.All (all pages)');
    for (const slug of [A, B, C]) {
      const found = all.find((l) => l.id === loc[slug].id);
      assert.ok(found, `Locations.All: ${slug} listed`);
      assert.deepEqual(found, loc[slug], `Locations.All: ${slug} entry matches the Create answer`);
    }
  });

  it('Locations.Get(id) returns the location', STEP, async () => {
    assert.ok(loc[A], 'needs the Locations.Create step');
    const got = await mli.Locations.Get(loc[A].id);
    assert.deepEqual(got.data, loc[A], 'Locations.Get matches the Create answer');
    await rejectsWithStatus(mli.Locations.Get(randomUUID()), 404, 'Locations.Get of an unknown id');
  });

  it('Locations.Update(id, {name, slug}) → updated attributes', STEP, async () => {
    assert.ok(loc[C], 'needs the Locations.Create step');
    const name = `Warehouse C renamed ${suffix}`;
    const updated = await mli.Locations.Update(loc[C].id, { name, slug: C2 });
    const data = updated && updated.data;
    assert.ok(data, `Locations.Update: {"data":…} (got ${JSON.stringify(updated)})`);
    assert.equal(data.id, loc[C].id, 'Locations.Update: same id');
    assert.equal(data.type, 'inventory_location', 'Locations.Update: type');
    assert.equal(data.attributes.name, name, 'Locations.Update: name');
    assert.equal(data.attributes.slug, C2, 'Locations.Update: slug');

    const got = await mli.Locations.Get(loc[C].id);
    assert.deepEqual(got.data, data, 'Locations.Get after Update matches the Update answer');

    // A partial update keeps the attributes it does not name.
    const renamed = await mli.Locations.Update(loc[A].id, { name: `Warehouse A1 ${suffix}`, slug: A });
    assert.deepEqual(
      renamed.data.attributes,
      { ...LOCATION_A, name: `Warehouse A1 ${suffix}` },
      'Locations.Update of the name only keeps the other attributes',
    );
    loc[A] = renamed.data;

    await rejectsWithStatus(
      mli.Locations.Update(loc[C].id, { name, slug: B }),
      409,
      'Locations.Update to a slug another location has',
    );
    await rejectsWithStatus(
      mli.Locations.Update(randomUUID(), { name, slug: `nowhere-${suffix}` }),
      404,
      'Locations.Update of an unknown id',
    );
  });

  it('Locations.Delete(id) resolves; then Get rejects with 404', STEP, async () => {
    assert.ok(loc[C], 'needs the Locations.Create step');
    const deleted = await mli.Locations.Delete(loc[C].id);
    // A 204 resolves with the string "{}" (wire-contract §1).
    assert.equal(deleted, '{}', `Locations.Delete resolves with "{}" for a 204 (got ${JSON.stringify(deleted)})`);
    await rejectsWithStatus(mli.Locations.Get(loc[C].id), 404, 'Locations.Get after Delete');
    await rejectsWithStatus(mli.Locations.Delete(loc[C].id), 404, 'Locations.Delete again');
    const all = await listEverything(mli.Locations, 'Locations.All after Delete');
    assert.ok(!all.some((l) => l.id === loc[C].id), 'Locations.All no longer lists the deleted location');
  });

  // ---------------------------------------------------------------- stock

  it('Create({locations:{A:7, B:3}}, pid) → 10 in all, meta.stock_id a UUID', STEP, async () => {
    assert.ok(loc[A] && loc[B], 'needs the Locations.Create step');
    const created = await mli.Create({ locations: { [A]: { available: 7 }, [B]: { available: 3 } } }, pid);
    model = { [A]: [7, 0], [B]: [3, 0] };
    assertMliStock(created.data, pid, figures(model), 'Create response');
    assert.equal(created.data.attributes.total, 10, 'Create: total 10');
    assert.deepEqual(created.data.attributes.locations[A], { total: 7, allocated: 0, available: 7 }, 'Create: A');
    s.stockId = created.data.meta.stock_id;

    const got = await mli.Get(pid);
    assertMliStock(got.data, pid, figures(model), 'Get after Create');
    assert.equal(got.data.meta.stock_id, s.stockId, 'Get: the same stock_id');
    s.created = true;

    const second = await mli.Create({ locations: { [B]: { available: 4 } } }, pid2);
    assertMliStock(second.data, pid2, figures({ [B]: [4, 0] }), 'Create pid2 response');
    assert.notEqual(second.data.meta.stock_id, s.stockId, 'pid2 has its own stock_id');
    s.created2 = true;
  });

  it('Create refuses stock at an unknown location, and stock that already exists', STEP, async () => {
    assert.ok(s.created, 'needs the Create step');
    const refused = randomUUID();
    await rejectsWithStatus(
      mli.Create({ locations: { [`nowhere-${suffix}`]: { available: 1 } } }, refused),
      404,
      'Create at an unknown location slug',
    );
    await rejectsWithStatus(mli.Get(refused), 404, 'Get of the product whose Create was refused');
    await rejectsWithStatus(
      mli.Create({ locations: { [A]: { available: 1 } } }, pid),
      409,
      'Create for a product that already has stock',
    );
    const got = await mli.Get(pid);
    assertMliStock(got.data, pid, figures(model), 'Get after refused Creates');
  });

  it('Locations.Delete of a location that holds stock rejects with 409', STEP, async () => {
    assert.ok(s.created, 'needs the Create step');
    await rejectsWithStatus(mli.Locations.Delete(loc[A].id), 409, 'Locations.Delete of a stocked location');
    const still = await mli.Locations.Get(loc[A].id);
    assert.deepEqual(still.data, loc[A], 'the location is still there');
    const got = await mli.Get(pid);
    assertMliStock(got.data, pid, figures(model), 'Get after refused Locations.Delete');
  });

  it('Update(pid, {locations:{A:{available:9}, B:null}}) → A 9, B removed', STEP, async () => {
    assert.ok(s.created, 'needs the Create step');
    const updated = await mli.Update(pid, { locations: { [A]: { available: 9 }, [B]: null } });
    model = { [A]: [9, 0] };
    assertMliStock(updated.data, pid, figures(model), 'Update response');
    assert.ok(!(B in updated.data.attributes.locations), 'Update: B is gone');
    assert.equal(updated.data.meta.stock_id, s.stockId, 'Update: the same stock_id');
    const got = await mli.Get(pid);
    assertMliStock(got.data, pid, figures(model), 'Get after Update');

    // Adding a location back with Update.
    const readded = await mli.Update(pid, { locations: { [B]: { available: 2 } } });
    model = { [A]: [9, 0], [B]: [2, 0] };
    assertMliStock(readded.data, pid, figures(model), 'Update adding B back');
    s.updated = true;
  });

  it('Get of an unknown product rejects with 404', STEP, async () => {
    await rejectsWithStatus(mli.Get(unknownPid), 404, 'Get(unknown id)');
  });

  // ---------------------------------------------------------------- per-location transactions

  // [method, slug, quantity, action, the location's figures after as [total, allocated]]
  const steps = [
    ['IncrementStock', 'A', 5, 'increment', [14, 0]],
    ['DecrementStock', 'A', 2, 'decrement', [12, 0]],
    ['AllocateStock', 'A', 4, 'allocate', [12, 4]],
    ['DeallocateStock', 'A', 1, 'deallocate', [12, 3]],
    ['SetStock', 'A', 20, 'set', [20, 3]],
    ['AllocateStock', 'B', 1, 'allocate', [2, 1]],
  ];
  for (const [method, which, quantity, action, [total, allocated]] of steps) {
    it(`${method}(pid, ${quantity}, ${which}) → ${which} ${total}/${allocated}/${total - allocated}`, STEP, async () => {
      assert.ok(s.updated, 'needs the Create and Update steps');
      const slug = which === 'A' ? A : B;
      const answer = await mli[method](pid, quantity, slug);
      model = { ...model, [slug]: [total, allocated] };
      const after = { total, allocated, available: total - allocated };
      assertMliTransaction(
        answer && answer.data,
        { pid, action, quantity, location: slug, after },
        `${method} response`,
      );
      const got = await mli.Get(pid);
      assertMliStock(got.data, pid, figures(model), `Get after ${method}`);
    });
  }

  it('allocating more than a location has available rejects with 422 and changes nothing', STEP, async () => {
    assert.ok(s.updated, 'needs the transaction steps');
    // A: 20 total, 3 allocated, 17 available.
    const refused = await rejectsWithStatus(mli.AllocateStock(pid, 18, A), 422, 'AllocateStock(18) at A with 17 available');
    assert.equal(typeof refused.errors[0].title, 'string', '422: errors[0].title');
    // B has 1 available although the product has 18 in all: the check is per location.
    await rejectsWithStatus(mli.AllocateStock(pid, 2, B), 422, 'AllocateStock(2) at B with 1 available');
    await rejectsWithStatus(mli.DecrementStock(pid, 2, B), 422, 'DecrementStock(2) at B with 1 available');
    await rejectsWithStatus(mli.DeallocateStock(pid, 4, A), 422, 'DeallocateStock(4) at A with 3 allocated');
    await rejectsWithStatus(
      mli.IncrementStock(pid, 1, `nowhere-${suffix}`),
      404,
      'IncrementStock at an unknown location slug',
    );
    const got = await mli.Get(pid);
    assertMliStock(got.data, pid, figures(model), 'Get after refused transactions');
  });

  it('GetTransactions(pid): newest first, each naming its location', STEP, async () => {
    assert.ok(s.updated, 'needs the transaction steps');
    const answer = await mli.GetTransactions(pid);
    assert.ok(Array.isArray(answer.data), `GetTransactions: data is an array (got ${JSON.stringify(answer)})`);
    const txns = answer.data;
    s.transactions = txns;
    // 6 posted transactions (refused ones are not recorded), after the writes of Create (A and
    // B), the first Update (A set, B removed) and the second (B added back).
    assert.equal(txns.length, 11, `GetTransactions: 11 entries (got ${JSON.stringify(txns.map((t) => t.attributes))})`);
    for (const t of txns) {
      assert.equal(t.type, 'stock-transaction', 'GetTransactions: type');
      assert.equal(t.attributes.product_id, pid, 'GetTransactions: product_id');
      assert.ok([A, B].includes(t.attributes.location), `GetTransactions: location of ${JSON.stringify(t)}`);
      assert.match(String(t.meta.timestamps.created_at), RFC3339, 'GetTransactions: created_at');
    }
    assert.equal(new Set(txns.map((t) => t.id)).size, txns.length, 'GetTransactions: ids are distinct');
    for (let i = 1; i < txns.length; i++) {
      assert.ok(
        Date.parse(txns[i - 1].meta.timestamps.created_at) >= Date.parse(txns[i].meta.timestamps.created_at),
        `GetTransactions: newest first (entry ${i - 1} is older than entry ${i})`,
      );
    }
    const label = (t) => `${t.attributes.action}@${t.attributes.location === A ? 'A' : 'B'}:${t.attributes.quantity}`;
    assert.deepEqual(
      txns.slice(0, 6).map(label),
      ['allocate@B:1', 'set@A:20', 'deallocate@A:1', 'allocate@A:4', 'decrement@A:2', 'increment@A:5'],
      'GetTransactions: the posted transactions, newest first',
    );
    assert.deepEqual(txns[6].attributes.action, 'create', 'the Update that added B back wrote a create at B');
    assert.equal(label(txns[6]), 'create@B:2', 'the re-added B entry');
    // Entries written by one request share a moment, so their order among themselves is free.
    assert.deepEqual(
      txns.slice(7, 9).map(label).sort(),
      ['delete@B:3', 'set@A:9'].sort(),
      'the first Update: A set to 9, B removed',
    );
    assert.deepEqual(
      txns.slice(9).map(label).sort(),
      ['create@A:7', 'create@B:3'],
      'the Create: one create entry per location',
    );
    assertMliTransaction(
      txns[0],
      { pid, action: 'allocate', quantity: 1, location: B, after: { total: 2, allocated: 1, available: 1 } },
      'newest entry',
    );
  });

  it('GetTransaction(pid, tid) matches its GetTransactions entry', STEP, async () => {
    assert.ok(s.transactions, 'needs the GetTransactions step');
    const wanted = s.transactions[1]; // the set at A
    const answer = await mli.GetTransaction(pid, wanted.id);
    assert.ok(answer.data, `GetTransaction: {"data":…} (got ${JSON.stringify(answer)})`);
    assert.deepEqual(answer.data, wanted, 'GetTransaction matches its GetTransactions entry');
    assertMliTransaction(
      answer.data,
      { pid, action: 'set', quantity: 20, location: A, after: { total: 20, allocated: 3, available: 17 } },
      'GetTransaction',
    );
    await rejectsWithStatus(mli.GetTransaction(pid, randomUUID()), 404, 'GetTransaction of an unknown id');
  });

  it('GetMultipleStock([pid, pid2]) → both, with locations', STEP, async () => {
    assert.ok(s.updated && s.created2, 'needs the Create and Update steps');
    const answer = await mli.GetMultipleStock([pid, pid2]);
    assert.ok(Array.isArray(answer.data), `GetMultipleStock: data is an array (got ${JSON.stringify(answer)})`);
    assert.equal(answer.data.length, 2, 'GetMultipleStock: two records');
    const byId = Object.fromEntries(answer.data.map((x) => [x.id, x]));
    assertMliStock(byId[pid], pid, figures(model), 'GetMultipleStock pid');
    assertMliStock(byId[pid2], pid2, figures({ [B]: [4, 0] }), 'GetMultipleStock pid2');
  });

  it('All() lists both products; Filter({eq:{locations:slug}}).All() only those stocked there', STEP, async () => {
    assert.ok(s.updated && s.created2, 'needs the Create and Update steps');
    const first = await mli.All();
    assert.ok(Array.isArray(first.data), `All: data is an array (got ${JSON.stringify(first)})`);
    assert.ok(first.meta && first.meta.results, `All: meta.results (got ${JSON.stringify(first.meta)})`);
    assert.ok(first.meta.results.total >= 2, `All: meta.results.total ${first.meta.results.total} >= 2`);

    const all = await listEverything(mli, 'All (all pages)');
    const byId = Object.fromEntries(all.map((x) => [x.id, x]));
    assertMliStock(byId[pid], pid, figures(model), 'All entry pid');
    assertMliStock(byId[pid2], pid2, figures({ [B]: [4, 0] }), 'All entry pid2');

    const atA = await listEverything(mli, `Filter(eq locations ${A}).All`, { eq: { locations: A } });
    assert.deepEqual(atA.map((x) => x.id), [pid], `Filter at A: only pid (got ${JSON.stringify(atA)})`);
    assertMliStock(atA[0], pid, figures(model), 'Filter at A entry');

    const atB = await listEverything(mli, `Filter(eq locations ${B}).All`, { eq: { locations: B } });
    assert.deepEqual(atB.map((x) => x.id).sort(), [pid, pid2].sort(), 'Filter at B: pid and pid2');
    for (const x of atB) {
      assert.ok(B in x.attributes.locations, `Filter at B: ${x.id} is stocked at B`);
    }

    // The filter was reset: a plain listing shows the product that is not at A again.
    const again = await listEverything(mli, 'All after Filter');
    assert.ok(again.some((x) => x.id === pid2), 'All() after Filter lists pid2 (not at A) again');
  });

  it('classic Inventories.Get(pid) on multi-location stock shows the top-level sums', STEP, async () => {
    assert.ok(s.updated, 'needs the transaction steps');
    const classic = await ep.Inventories.Get(pid);
    const data = classic && classic.data;
    assert.ok(data, `Inventories.Get: {"data":…} (got ${JSON.stringify(classic)})`);
    assert.equal(data.id, pid, 'Inventories.Get: id');
    assert.equal(data.type, 'stock', 'Inventories.Get: type');
    const locations = figures(model);
    assert.deepEqual(
      { total: data.total, available: data.available, allocated: data.allocated },
      {
        total: sum(locations, 'total'),
        available: sum(locations, 'available'),
        allocated: sum(locations, 'allocated'),
      },
      `Inventories.Get: the sums over locations (got ${JSON.stringify(data)})`,
    );
    assert.deepEqual(
      { total: data.total, available: data.available, allocated: data.allocated },
      { total: 22, available: 18, allocated: 4 },
      'Inventories.Get: 22 total, 18 available, 4 allocated',
    );
  });

  it('Delete(pid) resolves once nothing is allocated; then Get rejects with 404', STEP, async () => {
    assert.ok(s.updated && s.created2, 'needs the Create and Update steps');
    // Stockroom refuses to delete stock that still has allocated units (409).
    await rejectsWithStatus(mli.Delete(pid), 409, 'Delete with 4 units allocated');
    const kept = await mli.Get(pid);
    assertMliStock(kept.data, pid, figures(model), 'Get after refused Delete');

    const releasedA = await mli.DeallocateStock(pid, 3, A);
    assertMliTransaction(
      releasedA.data,
      { pid, action: 'deallocate', quantity: 3, location: A, after: { total: 20, allocated: 0, available: 20 } },
      'DeallocateStock(3, A)',
    );
    const releasedB = await mli.DeallocateStock(pid, 1, B);
    assertMliTransaction(
      releasedB.data,
      { pid, action: 'deallocate', quantity: 1, location: B, after: { total: 2, allocated: 0, available: 2 } },
      'DeallocateStock(1, B)',
    );
    model = { [A]: [20, 0], [B]: [2, 0] };
    const got = await mli.Get(pid);
    assertMliStock(got.data, pid, figures(model), 'Get after releasing everything');

    const deleted = await mli.Delete(pid);
    assert.equal(deleted, '{}', `Delete resolves with "{}" for a 204 (got ${JSON.stringify(deleted)})`);
    await rejectsWithStatus(mli.Get(pid), 404, 'Get after Delete');
    await rejectsWithStatus(ep.Inventories.Get(pid), 404, 'classic Inventories.Get after Delete');

    // The other product is untouched, then goes too.
    const other = await mli.Get(pid2);
    assertMliStock(other.data, pid2, figures({ [B]: [4, 0] }), 'pid2 after deleting pid');
    await mli.Delete(pid2);
    await rejectsWithStatus(mli.Get(pid2), 404, 'Get pid2 after Delete');
    s.deleted = true;
  });

  it('once they hold no stock, Locations.Delete removes the locations', STEP, async () => {
    assert.ok(s.deleted, 'needs the Delete step');
    for (const slug of [A, B]) {
      const deleted = await mli.Locations.Delete(loc[slug].id);
      assert.equal(deleted, '{}', `Locations.Delete ${slug} resolves with "{}"`);
      await rejectsWithStatus(mli.Locations.Get(loc[slug].id), 404, `Locations.Get ${slug} after Delete`);
    }
    const all = await listEverything(mli.Locations, 'Locations.All at the end');
    for (const slug of [A, B, C, C2]) {
      assert.ok(!all.some((l) => l.attributes.slug === slug), `Locations.All: ${slug} gone`);
    }
  });
});
