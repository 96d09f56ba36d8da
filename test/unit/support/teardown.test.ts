import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { tempDir } from '../../support/server-kit.js';
import { teardown, type AfterHooks } from '../../support/teardown.js';

test('teardown hooks run last added, first run, when the test ends: the dir outlives what was stopped in it', async (t) => {
  const ran: string[] = [];
  let dirAtStop: boolean | undefined;
  let dir = '';
  await t.test('a test with a dir and a server in it', (st) => {
    const tmp = tempDir('meshid-teardown-');
    dir = tmp.dir;
    teardown(st).after(() => {
      tmp.cleanup();
      ran.push('remove dir');
    });
    teardown(st).after(() => {
      dirAtStop = fs.existsSync(dir);
      ran.push('stop server');
    });
    teardown(st).after(() => ran.push('close client'));
  });
  assert.deepEqual(ran, ['close client', 'stop server', 'remove dir']);
  assert.equal(dirAtStop, true);
  assert.equal(fs.existsSync(dir), false);
});

test('a helper given t and the test itself share one teardown, also when handed the teardown', async (t) => {
  const ran: string[] = [];
  const helper = (hooks: AfterHooks, name: string): void => teardown(hooks).after(() => ran.push(name));
  await t.test('sub', (st) => {
    helper(st, 'made first by a helper given t');
    teardown(st).after(() => ran.push('made by the test'));
    helper(teardown(st), 'made last by a helper given the teardown');
  });
  assert.deepEqual(ran, ['made last by a helper given the teardown', 'made by the test', 'made first by a helper given t']);
});

// A failing hook fails its test; a node:test subtest failing would fail this file, so the context here is a small
// object holding the one hook teardown registers, which this test then runs as node:test would.
test('a teardown hook that throws does not keep the others from running, and the test fails with its error', async () => {
  const registered: Array<() => unknown> = [];
  const t: AfterHooks = { after: (fn) => void registered.push(fn) };
  const ran: string[] = [];
  teardown(t).after(() => ran.push('remove dir'));
  teardown(t).after(() => {
    throw new Error('the server did not stop');
  });
  teardown(t).after(() => ran.push('close client'));
  assert.equal(registered.length, 1);
  await assert.rejects(async () => registered[0]!(), /the server did not stop/);
  assert.deepEqual(ran, ['close client', 'remove dir']);
});

test('two teardown hooks that throw fail the test with both errors', async () => {
  const registered: Array<() => unknown> = [];
  const t: AfterHooks = { after: (fn) => void registered.push(fn) };
  teardown(t).after(() => {
    throw new Error('the agent did not stop');
  });
  teardown(t).after(async () => {
    throw new Error('the server did not stop');
  });
  await assert.rejects(async () => registered[0]!(), (err: unknown) => {
    assert.ok(err instanceof AggregateError);
    assert.deepEqual(err.errors.map((e: Error) => e.message), ['the server did not stop', 'the agent did not stop']);
    return true;
  });
});
