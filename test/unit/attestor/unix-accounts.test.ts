import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseIdFile, UnixAccounts } from '../../../src/agent/attestor/unix-accounts.js';
import { systemProcHooks, type ProcHooks } from '../../../src/agent/attestor/proc-hooks.js';
import { namesFrom } from '../../support/peer-process.js';

test('passwd and group lines map the third field to the first; junk lines are skipped, the first duplicate wins', () => {
  const text = [
    '# comment',
    '',
    'root:x:0:0:root:/root:/bin/bash',
    'nginx:x:101:101::/var/lib/nginx:/usr/sbin/nologin',
    'shadow-nginx:x:101:101::/:/bin/false',
    '+nis::::::',
    '-baduser::::::',
    'nouid:x::0::/:/bin/sh',
    'alpha:x:12a:0::/:/bin/sh',
    ':x:77:77::/:/bin/sh',
    'short:x',
    'wheel:x:10:alice,bob',
  ].join('\n');
  assert.deepEqual([...parseIdFile(text)], [
    [0, 'root'],
    [101, 'nginx'],
    [10, 'wheel'],
  ]);
});

test('names agree with the host /etc/passwd and /etc/group', () => {
  const accounts = new UnixAccounts(systemProcHooks);
  assert.equal(accounts.userName(0), 'root');
  assert.equal(accounts.userName(65534), namesFrom('/etc/passwd').get(65534));
  assert.equal(accounts.groupName(65534), namesFrom('/etc/group').get(65534));
  assert.equal(accounts.userName(4_000_000_000), undefined);
});

function countingHooks(): { hooks: ProcHooks; reads: string[] } {
  const reads: string[] = [];
  return { reads, hooks: { ...systemProcHooks, readText: (p) => (reads.push(p), systemProcHooks.readText(p)) } };
}

test('a file is parsed once and again only after it changes', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-accounts-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const passwd = path.join(dir, 'passwd');
  fs.writeFileSync(passwd, 'app:x:1000:1000::/:/bin/sh\n');
  const { hooks, reads } = countingHooks();
  const accounts = new UnixAccounts(hooks, { passwd, group: path.join(dir, 'group') });
  assert.equal(accounts.userName(1000), 'app');
  assert.equal(accounts.userName(1000), 'app');
  assert.equal(accounts.userName(1001), undefined);
  assert.deepEqual(reads, [passwd]);
  // Same size, different content: the mtime (set explicitly, filesystems may have coarse clocks) reveals it.
  fs.writeFileSync(passwd, 'web:x:1000:1000::/:/bin/sh\n');
  fs.utimesSync(passwd, new Date(2_000_000_000_000), new Date(2_000_000_000_000));
  assert.equal(accounts.userName(1000), 'web');
  assert.equal(reads.length, 2);
});

test('a missing file yields no names, other failures are errors', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-accounts-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const missing = new UnixAccounts(systemProcHooks, { passwd: path.join(dir, 'none'), group: path.join(dir, 'none') });
  assert.equal(missing.userName(0), undefined);
  assert.equal(missing.groupName(0), undefined);
  const denied: ProcHooks = {
    ...systemProcHooks,
    stat: () => {
      throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
    },
  };
  assert.throws(() => new UnixAccounts(denied).userName(0), { code: 'EACCES' });
});
