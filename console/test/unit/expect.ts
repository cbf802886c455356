// The few matchers the unit tests use, over node:assert (tests run with node --test).
import { strict as assert } from "node:assert";

export function expect(actual: unknown) {
  return {
    toBe: (want: unknown) => assert.equal(actual, want),
    toEqual: (want: unknown) => assert.deepEqual(actual, want),
    toBeNull: () => assert.equal(actual, null),
    toBeUndefined: () => assert.equal(actual, undefined),
    toMatch: (re: RegExp) => assert.match(String(actual), re),
  };
}
