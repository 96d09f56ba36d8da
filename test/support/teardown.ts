/**
 * A test's teardown in reverse order, as Go's t.Cleanup and `defer` run theirs. node:test runs a test's `after` hooks
 * first added, first run, so a temp dir's removal registered when the dir is made ran before the stop of the server
 * started in it, which went on writing its datastore, journal, sockets and logs into a dir being removed.
 */

/** What registers teardown: a node:test context, or the `teardown(t)` of one. */
export interface AfterHooks {
  after(fn: () => unknown): void;
}

const stacks = new WeakMap<AfterHooks, AfterHooks>();
const teardowns = new WeakSet<AfterHooks>();

/**
 * The teardown of test `t`: hooks given to its `after` run when `t` ends, last added first, so whatever uses a
 * resource is stopped before the resource goes. Every hook runs even when one before it threw (a failed stop must not
 * leave the rest running); the test then fails with the first error, or with all of them when more than one threw.
 * The same `t` gives the same teardown, so helpers that take `t` and the test itself share one order; the teardown
 * is itself registered on `t` with `t.after` when first asked for.
 */
export function teardown(t: AfterHooks): AfterHooks {
  if (teardowns.has(t)) return t;
  let stack = stacks.get(t);
  if (stack === undefined) {
    const hooks: Array<() => unknown> = [];
    t.after(async () => {
      const errors: unknown[] = [];
      for (const hook of hooks.splice(0).reverse()) {
        try {
          await hook();
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, `${errors.length} teardown hooks failed`);
    });
    stack = { after: (fn) => void hooks.push(fn) };
    teardowns.add(stack);
    stacks.set(t, stack);
  }
  return stack;
}
