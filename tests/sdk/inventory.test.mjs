// End-to-end test: drives a REAL running Stockroom server with the real Elastic Path JS SDKs
// (`@elasticpath/js-sdk` 35 and `@moltin/sdk` 36), configured for a custom host as in
// wire-contract §7. Run it through tests/sdk/run.sh, which builds and starts the server.
//
// Environment:
//   STOCKROOM_URL            e.g. http://127.0.0.1:18080
//   STOCKROOM_CLIENT_ID      client id of an administrator credential
//   STOCKROOM_CLIENT_SECRET  its secret
//
// The SDK rejects a non-2xx answer with the parsed body only (wire-contract §1), so every error
// check looks at `errors[0].status`.

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


function assertFigures(stock, expected, what) {
  assert.ok(stock && typeof stock === 'object', `${what}: expected a stock object, got ${JSON.stringify(stock)}`);
  assert.deepEqual(
    { total: stock.total, available: stock.available, allocated: stock.allocated },
    expected,
    `${what}: figures differ (got ${JSON.stringify(stock)})`,
  );
}

function assertStock(stock, pid, expected, what) {
  assertFigures(stock, expected, what);
  assert.equal(stock.id, pid, `${what}: id`);
  assert.equal(stock.type, 'stock', `${what}: type`);
}

for (const { label, sdk, version } of PACKAGES) {
  describe(`${label} ${version} against a live Stockroom`, () => {
    const suffix = randomUUID().slice(0, 8);
    // Product ids are UUIDs in Elastic Path; a fresh pair per package per run.
    const pid = randomUUID();
    const pid2 = randomUUID();
    const unknownPid = randomUUID();
    let admin;
    let transactions;

    before(() => {
      assert.equal(typeof sdk.gateway, 'function', `${label} exports gateway`);
      assert.equal(typeof sdk.MemoryStorageFactory, 'function', `${label} exports MemoryStorageFactory`);
      admin = makeGateway(sdk, { withSecret: true });
    });

    it(`Inventories.Create(pid, 100) starts at 100/100/0 [run ${suffix}]`, STEP, async () => {
      const created = await admin.Inventories.Create(pid, 100);
      assertStock(created.data, pid, { total: 100, available: 100, allocated: 0 }, 'Create response');

      const fetched = await admin.Inventories.Get(pid);
      assertStock(fetched.data, pid, { total: 100, available: 100, allocated: 0 }, 'Get after Create');

      const second = await admin.Inventories.Create(pid2, 7);
      assertStock(second.data, pid2, { total: 7, available: 7, allocated: 0 }, 'Create pid2 response');
    });

    const steps = [
      ['IncrementStock', 'increment', 5, { total: 105, available: 105, allocated: 0 }],
      ['DecrementStock', 'decrement', 3, { total: 102, available: 102, allocated: 0 }],
      ['AllocateStock', 'allocate', 10, { total: 102, available: 92, allocated: 10 }],
      ['DeallocateStock', 'deallocate', 4, { total: 102, available: 96, allocated: 6 }],
    ];
    for (const [method, action, quantity, expected] of steps) {
      it(`Inventories.${method}(pid, ${quantity}) → ${expected.total}/${expected.available}/${expected.allocated}`, STEP, async () => {
        const answer = await admin.Inventories[method](pid, quantity);
        const txn = answer && answer.data;
        assert.ok(txn && typeof txn === 'object', `${method}: expected {"data":transaction}, got ${JSON.stringify(answer)}`);
        assert.equal(typeof txn.id, 'string', `${method}: transaction id`);
        assert.ok(txn.id.length > 0, `${method}: transaction id is empty`);
        assert.equal(txn.action, action, `${method}: action`);
        assert.equal(txn.product_id, pid, `${method}: product_id`);
        assert.equal(txn.quantity, quantity, `${method}: quantity`);
        assertFigures(txn, expected, `${method} response (figures after)`);

        const fetched = await admin.Inventories.Get(pid);
        assertStock(fetched.data, pid, expected, `Get after ${method}`);
      });
    }

    it('Inventories.All() lists the product', STEP, async () => {
      const first = await admin.Inventories.All();
      assert.ok(Array.isArray(first.data), `All(): data is an array (got ${JSON.stringify(first)})`);
      assert.ok(first.meta && first.meta.results, `All(): meta.results present (got ${JSON.stringify(first.meta)})`);
      const total = first.meta.results.total;
      assert.equal(typeof total, 'number', 'All(): meta.results.total is a number');
      assert.ok(total >= 2, `All(): meta.results.total ${total} counts at least this run's two products`);

      let found = first.data.find((s) => s.id === pid);
      // On a server holding more than one page, walk the pages until the product turns up.
      for (let offset = first.data.length; !found && offset < total; offset += 100) {
        const page = await admin.Inventories.Limit(100).Offset(offset).All();
        assert.ok(page.data.length > 0, `All(): empty page at offset ${offset} of ${total}`);
        found = page.data.find((s) => s.id === pid);
      }
      assert.ok(found, `All(): product ${pid} not listed`);
      assertStock(found, pid, { total: 102, available: 96, allocated: 6 }, 'All() entry');
    });

    it('Inventories.Limit(1).All() pages with meta', STEP, async () => {
      const page = await admin.Inventories.Limit(1).All();
      assert.ok(Array.isArray(page.data), 'Limit(1).All(): data is an array');
      assert.equal(page.data.length, 1, `Limit(1).All(): one item (got ${page.data.length})`);
      assert.equal(page.data[0].type, 'stock', 'Limit(1).All(): item type');
      assert.ok(page.meta && page.meta.page, `Limit(1).All(): meta.page present (got ${JSON.stringify(page.meta)})`);
      assert.equal(page.meta.page.limit, 1, 'Limit(1).All(): meta.page.limit');
      assert.equal(page.meta.page.offset, 0, 'Limit(1).All(): meta.page.offset');
      assert.equal(page.meta.page.current, 1, 'Limit(1).All(): meta.page.current');
      const total = page.meta.results.total;
      assert.ok(total >= 2, `Limit(1).All(): meta.results.total ${total} >= 2`);
      assert.equal(page.meta.page.total, total, 'Limit(1).All(): meta.page.total is one page per item');

      const second = await admin.Inventories.Limit(1).Offset(1).All();
      assert.equal(second.data.length, 1, 'Limit(1).Offset(1).All(): one item');
      assert.equal(second.meta.page.offset, 1, 'Limit(1).Offset(1).All(): meta.page.offset');
      assert.equal(second.meta.page.current, 2, 'Limit(1).Offset(1).All(): meta.page.current');
      assert.notEqual(second.data[0].id, page.data[0].id, 'pages 1 and 2 hold different products');
    });

    it('Inventories.GetMultipleStock([pid, pid2])', STEP, async () => {
      const answer = await admin.Inventories.GetMultipleStock([pid, pid2]);
      assert.ok(Array.isArray(answer.data), `GetMultipleStock: data is an array (got ${JSON.stringify(answer)})`);
      assert.equal(answer.data.length, 2, 'GetMultipleStock: two records');
      const byId = Object.fromEntries(answer.data.map((s) => [s.id, s]));
      assertStock(byId[pid], pid, { total: 102, available: 96, allocated: 6 }, 'GetMultipleStock pid');
      assertStock(byId[pid2], pid2, { total: 7, available: 7, allocated: 0 }, 'GetMultipleStock pid2');
    });

    it('Inventories.GetTransactions(pid): newest first, starting with "create"', STEP, async () => {
      const answer = await admin.Inventories.GetTransactions(pid);
      assert.ok(Array.isArray(answer.data), `GetTransactions: data is an array (got ${JSON.stringify(answer)})`);
      transactions = answer.data;
      assert.equal(transactions.length, 5, `GetTransactions: 5 entries (got ${JSON.stringify(transactions)})`);
      assert.deepEqual(
        transactions.map((t) => t.action),
        ['deallocate', 'allocate', 'decrement', 'increment', 'create'],
        'GetTransactions: actions, newest first',
      );
      assert.deepEqual(transactions.map((t) => t.quantity), [4, 10, 3, 5, 100], 'GetTransactions: quantities');
      for (const t of transactions) {
        assert.equal(t.product_id, pid, 'GetTransactions: product_id');
        assert.equal(typeof t.id, 'string', 'GetTransactions: id');
      }
      assert.equal(new Set(transactions.map((t) => t.id)).size, 5, 'GetTransactions: ids are distinct');
      const created = transactions[transactions.length - 1];
      assert.equal(created.action, 'create', 'first-written entry is "create"');
      assertFigures(created, { total: 100, available: 100, allocated: 0 }, 'create entry figures');
      assertFigures(transactions[0], { total: 102, available: 96, allocated: 6 }, 'newest entry figures');
    });

    it('Inventories.GetTransaction(pid, tid)', STEP, async () => {
      assert.ok(transactions, 'needs the GetTransactions step');
      const wanted = transactions[2]; // the decrement
      const answer = await admin.Inventories.GetTransaction(pid, wanted.id);
      assert.ok(answer.data, `GetTransaction: {"data":…} (got ${JSON.stringify(answer)})`);
      assert.deepEqual(answer.data, wanted, 'GetTransaction matches its GetTransactions entry');
      assert.equal(answer.data.action, 'decrement');

      await rejectsWithStatus(
        admin.Inventories.GetTransaction(pid, randomUUID()),
        404,
        'GetTransaction of an unknown transaction id',
      );
    });

    it('allocating more than available rejects with 422 and changes nothing', STEP, async () => {
      await rejectsWithStatus(admin.Inventories.AllocateStock(pid, 97), 422, 'AllocateStock(97) with 96 available');
      const fetched = await admin.Inventories.Get(pid);
      assertStock(fetched.data, pid, { total: 102, available: 96, allocated: 6 }, 'Get after refused allocate');
      const after = await admin.Inventories.GetTransactions(pid);
      assert.equal(after.data.length, 5, 'a refused transaction is not recorded');
    });

    it('Inventories.Get of an unknown id rejects with 404', STEP, async () => {
      await rejectsWithStatus(admin.Inventories.Get(unknownPid), 404, 'Get(unknown id)');
    });

    describe('shopper (implicit grant: client_id only)', () => {
      let shopper;
      before(() => {
        shopper = makeGateway(sdk, { withSecret: false });
      });

      it('can Inventories.Get(pid)', STEP, async () => {
        const fetched = await shopper.Inventories.Get(pid);
        assertStock(fetched.data, pid, { total: 102, available: 96, allocated: 6 }, 'shopper Get');
      });

      it('can Inventories.GetMultipleStock', STEP, async () => {
        const answer = await shopper.Inventories.GetMultipleStock([pid, pid2]);
        assert.equal(answer.data.length, 2, 'shopper GetMultipleStock: two records');
      });

      it('IncrementStock rejects with 403 and changes nothing', STEP, async () => {
        await rejectsWithStatus(shopper.Inventories.IncrementStock(pid, 1), 403, 'shopper IncrementStock');
        const fetched = await admin.Inventories.Get(pid);
        assertStock(fetched.data, pid, { total: 102, available: 96, allocated: 6 }, 'Get after shopper IncrementStock');
      });

      it('GetTransactions, Create and Delete reject with 403', STEP, async () => {
        await rejectsWithStatus(shopper.Inventories.GetTransactions(pid), 403, 'shopper GetTransactions');
        await rejectsWithStatus(shopper.Inventories.Create(randomUUID(), 1), 403, 'shopper Create');
        await rejectsWithStatus(shopper.Inventories.Delete(pid2), 403, 'shopper Delete');
      });
    });

    it('Inventories.Delete(pid) resolves; then Get rejects with 404', STEP, async () => {
      // Stockroom refuses to delete stock that still has allocated units (409): every allocation
      // must end shipped or released. Release the 6 still allocated first.
      await rejectsWithStatus(admin.Inventories.Delete(pid), 409, 'Delete with 6 units allocated');
      const kept = await admin.Inventories.Get(pid);
      assertStock(kept.data, pid, { total: 102, available: 96, allocated: 6 }, 'Get after refused Delete');
      const released = await admin.Inventories.DeallocateStock(pid, 6);
      assertFigures(released.data, { total: 102, available: 102, allocated: 0 }, 'DeallocateStock(6) response');

      const deleted = await admin.Inventories.Delete(pid);
      // A 204 resolves with the string "{}" (wire-contract §1).
      assert.equal(deleted, '{}', `Delete resolves with "{}" for a 204 (got ${JSON.stringify(deleted)})`);
      await rejectsWithStatus(admin.Inventories.Get(pid), 404, 'Get after Delete');

      // The other product is untouched.
      const other = await admin.Inventories.Get(pid2);
      assertStock(other.data, pid2, { total: 7, available: 7, allocated: 0 }, 'pid2 after deleting pid');
      await admin.Inventories.Delete(pid2);
      await rejectsWithStatus(admin.Inventories.Get(pid2), 404, 'Get pid2 after Delete');
    });
  });
}
