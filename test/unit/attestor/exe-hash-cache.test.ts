import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { ExeHashCache } from '../../../src/agent/attestor/exe-hash-cache.js';
import { systemProcHooks, type ProcHooks } from '../../../src/agent/attestor/proc-hooks.js';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError } from '../../../src/common/errors.js';
import { RateLimiter } from '../../../src/common/rate-limiter.js';

function countingHooks(overrides: Partial<ProcHooks> = {}): { hooks: ProcHooks; hashed: number[]; open: Set<number> } {
  const hashed: number[] = [];
  const open = new Set<number>();
  const hooks: ProcHooks = {
    ...systemProcHooks,
    openFile: (p) => {
      const fd = systemProcHooks.openFile(p);
      open.add(fd);
      return fd;
    },
    closeFile: (fd) => {
      open.delete(fd);
      systemProcHooks.closeFile(fd);
    },
    sha256: (fd) => (hashed.push(fd), systemProcHooks.sha256(fd)),
    ...overrides,
  };
  return { hooks, hashed, open };
}

function tempFile(t: { after(fn: () => void): void }, content: string | Buffer): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-hash-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'bin');
  fs.writeFileSync(file, content);
  return file;
}

test('the digest is the SHA-256 of the whole file, and a second call for the same file version does not re-read it', (t) => {
  // Larger than one read chunk, so chunking is exercised.
  const content = Buffer.alloc(3 * 1024 * 1024 + 17, 'abc');
  const file = tempFile(t, content);
  const { hooks, hashed, open } = countingHooks();
  const cache = new ExeHashCache(hooks, 64 << 20);
  const expected = createHash('sha256').update(content).digest('hex');
  assert.equal(cache.hash(file), expected);
  assert.equal(cache.hash(file), expected);
  assert.equal(hashed.length, 1);
  assert.equal(open.size, 0, 'every opened fd is closed');
});

test('a new version of the file (mtime or size changed) is hashed again', (t) => {
  const file = tempFile(t, 'one');
  const { hooks, hashed } = countingHooks();
  const cache = new ExeHashCache(hooks, 1024);
  cache.hash(file);
  fs.writeFileSync(file, 'two');
  fs.utimesSync(file, new Date(2_000_000_000_000), new Date(2_000_000_000_000));
  assert.equal(cache.hash(file), createHash('sha256').update('two').digest('hex'));
  assert.equal(hashed.length, 2);
});

test('a file over the size limit is not hashed', (t) => {
  const file = tempFile(t, Buffer.alloc(1025));
  const { hooks, hashed, open } = countingHooks();
  assert.equal(new ExeHashCache(hooks, 1024).hash(file), undefined);
  assert.equal(new ExeHashCache(hooks, 1025).hash(file), createHash('sha256').update(Buffer.alloc(1025)).digest('hex'));
  assert.equal(hashed.length, 1);
  assert.equal(open.size, 0);
});

test('a file that changes while it is hashed fails instead of caching a digest of mixed content', (t) => {
  const file = tempFile(t, 'content');
  let calls = 0;
  const { hooks, hashed, open } = countingHooks({
    fstat: (fd) => {
      const real = systemProcHooks.fstat(fd);
      return ++calls === 2 ? { ...real, size: real.size + 1n } : real;
    },
  });
  const cache = new ExeHashCache(hooks, 1024);
  assert.throws(() => cache.hash(file), /changed while it was hashed/);
  assert.equal(open.size, 0);
  // Nothing was kept for the version seen before the hash: the next call, which sees that version again, reads it.
  assert.equal(cache.hash(file), createHash('sha256').update('content').digest('hex'));
  assert.equal(hashed.length, 2);
});

test('a file rewritten in place while it is hashed (same size, new mtime or ctime) fails too', (t) => {
  const file = tempFile(t, 'content');
  for (const field of ['mtimeNs', 'ctimeNs'] as const) {
    let calls = 0;
    const { hooks } = countingHooks({
      fstat: (fd) => {
        const real = systemProcHooks.fstat(fd);
        return ++calls === 2 ? { ...real, [field]: real[field] + 1n } : real;
      },
    });
    assert.throws(() => new ExeHashCache(hooks, 1024).hash(file), /changed while it was hashed/, field);
  }
});

test('an executable a security module will not let the agent open (EPERM) gets no digest, as one its mode hides (EACCES)', (t) => {
  const file = tempFile(t, 'content');
  for (const code of ['EACCES', 'EPERM']) {
    const { hooks } = countingHooks({
      openFile: () => {
        throw Object.assign(new Error(`${code}: denied`), { code });
      },
    });
    const hashed = new ExeHashCache(hooks, 1024).hashFile(file, 1000);
    assert.equal(hashed.sha256, undefined, code);
    assert.equal(hashed.unhashed, 'unreadable');
    assert.equal(hashed.openError, code);
  }
});

test('process.execPath hashes to the same digest node:crypto computes', () => {
  const cache = new ExeHashCache(systemProcHooks, 256 << 20);
  const expected = createHash('sha256').update(fs.readFileSync(process.execPath)).digest('hex');
  assert.equal(cache.hash(process.execPath), expected);
});

test('a file rewritten at the same size with its old mtime put back is hashed again (the ctime moved)', (t) => {
  const file = tempFile(t, 'trusted program');
  // A whole-second mtime, so setting it back below restores it to the nanosecond.
  fs.utimesSync(file, 1_700_000_000, 1_700_000_000);
  const { hooks, hashed } = countingHooks();
  const cache = new ExeHashCache(hooks, 1024);
  const trusted = cache.hash(file);
  const before = fs.statSync(file, { bigint: true });
  // What a file's owner can do: same size, other bytes, and the modification time set back.
  fs.writeFileSync(file, 'evil!!! program');
  fs.utimesSync(file, 1_700_000_000, 1_700_000_000);
  const after = fs.statSync(file, { bigint: true });
  assert.deepEqual([after.ino, after.size, after.mtimeNs], [before.ino, before.size, before.mtimeNs], 'only the ctime tells');
  const again = cache.hash(file);
  assert.equal(hashed.length, 2, 'not served from the cache');
  assert.notEqual(again, trusted);
  assert.equal(again, createHash('sha256').update('evil!!! program').digest('hex'));
});

test("hashing is charged to the caller's uid: a uid that keeps making new versions is refused, others are not", (t) => {
  const file = tempFile(t, Buffer.alloc(2000, 'x'));
  const { hooks, hashed, open } = countingHooks();
  const clock = new FakeClock(1_000_000);
  // 1,000 bytes a second, at most 3,000 at once: one 2,000-byte version, then not the next.
  const cache = new ExeHashCache(hooks, 1 << 20, new RateLimiter(1000, 3000, clock));
  const touch = (): void => fs.utimesSync(file, new Date(), new Date());
  cache.hash(file, 1001);
  // A version already hashed costs nothing.
  cache.hash(file, 1001);
  touch();
  assert.throws(
    () => cache.hash(file, 1001),
    (err: unknown) =>
      err instanceof MeshidError && err.code === 'unavailable' && /uid 1001 has had more executable bytes hashed than the agent allows.*retry in 1 s/.test(err.message),
  );
  assert.equal(hashed.length, 1, 'the refused version was not read');
  assert.equal(open.size, 0);
  // Another uid's budget is its own.
  const digest = cache.hash(file, 1002);
  clock.advance(1000);
  assert.equal(cache.hash(file, 1001), digest);
  assert.equal(digest, createHash('sha256').update(Buffer.alloc(2000, 'x')).digest('hex'));
  assert.equal(hashed.length, 3);
});

test("a uid cycling through many files evicts only its own digests: another uid's binary is not hashed again", (t) => {
  const victim = tempFile(t, Buffer.alloc(4096, 'v'));
  const dir = path.dirname(victim);
  const { hooks, hashed } = countingHooks();
  const cache = new ExeHashCache(hooks, 1 << 20);
  cache.hash(victim, 1002);
  for (let i = 0; i < 600; i++) {
    const file = path.join(dir, `spam-${i}`);
    fs.writeFileSync(file, String(i));
    cache.hash(file, 1001);
  }
  const before = hashed.length;
  cache.hash(victim, 1002);
  assert.equal(hashed.length, before, 'the victim digest is still cached');
  // The cycling uid's own oldest digests went.
  cache.hash(path.join(dir, 'spam-0'), 1001);
  assert.equal(hashed.length, before + 1);
});

test("a uid's digest it keeps using outlives newer ones it used once: its entries are dropped least recently used first", (t) => {
  const kept = tempFile(t, Buffer.alloc(4096, 'k'));
  const dir = path.dirname(kept);
  const { hooks, hashed } = countingHooks();
  const cache = new ExeHashCache(hooks, 1 << 20);
  const spam = (i: number): string => {
    const file = path.join(dir, `once-${i}`);
    if (!fs.existsSync(file)) fs.writeFileSync(file, String(i));
    return file;
  };
  cache.hash(kept, 1001);
  // 64 digests a uid: `kept` and 63 more fill its share.
  for (let i = 0; i < 63; i++) cache.hash(spam(i), 1001);
  const full = hashed.length;
  cache.hash(kept, 1001);
  assert.equal(hashed.length, full, 'still cached, and now the most recently used');
  cache.hash(spam(63), 1001);
  cache.hash(kept, 1001);
  assert.equal(hashed.length, full + 1, 'the new file pushed out the least recently used digest, not the one in use');
  cache.hash(spam(0), 1001);
  assert.equal(hashed.length, full + 2, 'the oldest one-off went');
});

test('a uid in use keeps its digests while many other uids come and go: uids are dropped least recently used first', (t) => {
  const victim = tempFile(t, Buffer.alloc(4096, 'v'));
  const other = path.join(path.dirname(victim), 'other');
  fs.writeFileSync(other, 'o');
  const { hooks, hashed } = countingHooks();
  const cache = new ExeHashCache(hooks, 1 << 20);
  cache.hash(victim, 1002);
  // 512 uids are kept: 1002 and 511 others fill them.
  for (let uid = 2000; uid < 2511; uid++) cache.hash(other, uid);
  const full = hashed.length;
  cache.hash(victim, 1002);
  assert.equal(hashed.length, full, 'still cached, and 1002 is now the most recently used uid');
  cache.hash(other, 3000);
  cache.hash(victim, 1002);
  assert.equal(hashed.length, full + 1, 'the new uid pushed out the least recently used uid, not 1002');
  cache.hash(other, 2000);
  assert.equal(hashed.length, full + 2, 'the oldest uid went');
});
