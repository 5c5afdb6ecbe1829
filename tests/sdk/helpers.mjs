// Helpers shared by the SDK test files.
import assert from 'node:assert/strict';

/** Awaits a promise that must reject with an `{"errors":[{status, …}]}` body. */
export async function rejectsWithStatus(promise, status, what) {
  let rejection;
  let resolved;
  try {
    resolved = await promise;
  } catch (err) {
    rejection = err;
  }
  assert.ok(
    rejection !== undefined,
    `${what}: expected a rejection with status ${status}, but it resolved with ${JSON.stringify(resolved)}`,
  );
  const shown = rejection instanceof Error ? `${rejection.name}: ${rejection.message}` : JSON.stringify(rejection);
  assert.ok(
    rejection && Array.isArray(rejection.errors) && rejection.errors.length > 0,
    `${what}: expected an {"errors":[…]} body, got ${shown}`,
  );
  assert.equal(
    rejection.errors[0].status,
    status,
    `${what}: expected errors[0].status ${status} (an integer), got ${JSON.stringify(rejection)}`,
  );
  return rejection;
}
