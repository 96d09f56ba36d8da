import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkProcPidNamespace } from '../../../src/agent/attestor/proc-namespace.js';
import { systemProcHooks } from '../../../src/agent/attestor/proc-hooks.js';
import { MeshidError } from '../../../src/common/errors.js';

const status = (lines: string): { readText: () => string } => ({ readText: () => `Name:\tnode\nState:\tS (sleeping)\n${lines}\nUid:\t0\t0\t0\t0\n` });

function refused(reason: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof MeshidError, String(err));
    assert.equal(err.code, 'failed_precondition');
    assert.match(err.message, reason);
    assert.match(err.message, /run the agent in the host pid namespace/);
    return true;
  };
}

test("the host's /proc, seen from the host pid namespace, is the agent's own", () => {
  assert.doesNotThrow(() => checkProcPidNamespace(systemProcHooks));
});

test("/proc/self/status of one pid, the agent's, passes (NSpid, or Pid alone on kernels before 4.1)", () => {
  assert.doesNotThrow(() => checkProcPidNamespace(status('Pid:\t4242\nNSpid:\t4242'), 4242));
  assert.doesNotThrow(() => checkProcPidNamespace(status('Pid:\t4242'), 4242));
});

test("a /proc of an ancestor pid namespace (the agent is pid 1 of its own, 26292 in /proc's) is refused", () => {
  assert.throws(() => checkProcPidNamespace(status('Pid:\t26292\nNSpid:\t26292\t1'), 1), refused(/the agent is pid 1; \/proc\/self\/status says pid 26292 \/ 1/));
  assert.throws(() => checkProcPidNamespace(status('Pid:\t26292'), 1), refused(/says pid 26292\)/));
  assert.throws(() => checkProcPidNamespace(status(''), 1), refused(/says no pid/));
});

test('a /proc where the agent does not appear at all (/proc/self does not resolve) is refused', () => {
  const hooks = {
    readText: (): string => {
      throw Object.assign(new Error('ENOENT: no such file or directory'), { code: 'ENOENT' });
    },
  };
  assert.throws(() => checkProcPidNamespace(hooks, 1), refused(/cannot read \/proc\/self\/status \(ENOENT\)/));
});

test("an ancestor pid namespace's /proc is refused even when the agent's pid in it happens to equal its own", () => {
  // NSpid lists one pid per namespace level: two levels are another namespace's /proc, whatever the numbers.
  assert.throws(() => checkProcPidNamespace(status('Pid:\t77\nNSpid:\t77\t77'), 77), refused(/says pid 77 \/ 77/));
});
