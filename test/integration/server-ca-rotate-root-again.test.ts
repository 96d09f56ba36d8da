/**
 * `ca rotate-root` while a root is already prepared: the server answers with that root instead of making another, and
 * the CLI says so, rather than print it as if it were new.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';

test('ca rotate-root with a root already prepared says that no new root was made, naming it; the first rotate-root does not', async () => {
  const { dir, cleanup } = tempDir('meshid-server-rotate-again-');
  try {
    const s = await startServerProcess(dir, ['--datacenter', 'east']);
    try {
      const first = await s.cli(['ca', 'rotate-root']);
      assert.equal(first.code, 0, first.err);
      assert.doesNotMatch(first.out, /No new root/);
      const id = /^Authority ID\s*: (root-\S+)$/m.exec(first.out)?.[1];
      assert.ok(id !== undefined, first.out);

      const again = await s.cli(['ca', 'rotate-root']);
      assert.equal(again.code, 0, again.err);
      assert.equal(again.err, '');
      assert.ok(
        again.out.startsWith(`No new root was made: root ${id} was already prepared, and one is prepared at a time. It is shown below; a rotate-root once it is active prepares the next.\n\n`),
        again.out,
      );
      assert.ok(again.out.endsWith(first.out), 'the prepared root, shown as the first rotate-root showed it');

      // JSON keeps the Authority shape scripts read, and says that this call made no root.
      const json = await s.cli(['ca', 'rotate-root', '--output', 'json']);
      assert.equal(json.code, 0, json.err);
      const doc = JSON.parse(json.out) as { id: string; state: string; newly_prepared: unknown };
      assert.equal(doc.id, id);
      assert.equal(doc.state, 'prepared');
      assert.equal(doc.newly_prepared, false);
      const roots = (JSON.parse((await s.cli(['ca', 'show', '--output', 'json'])).out) as { authorities: Array<{ kind: string }> }).authorities.filter((a) => a.kind === 'root');
      assert.equal(roots.length, 2, 'still the first root and the one prepared');
    } finally {
      await s.stop();
    }
  } finally {
    cleanup();
  }
});

test('ca rotate-root --output json says newly_prepared: true for the root it made', async () => {
  const { dir, cleanup } = tempDir('meshid-server-rotate-json-');
  try {
    const s = await startServerProcess(dir, ['--datacenter', 'east']);
    try {
      const json = await s.cli(['ca', 'rotate-root', '--output', 'json']);
      assert.equal(json.code, 0, json.err);
      const doc = JSON.parse(json.out) as Record<string, unknown>;
      assert.deepEqual(Object.keys(doc), ['id', 'kind', 'datacenter', 'state', 'not_before', 'not_after', 'fingerprint', 'subject', 'upstream_ca', 'activates_at', 'newly_prepared']);
      assert.equal(doc['state'], 'prepared');
      // A prepared root says when it takes over unless ca activate comes first (after now, within the activation delay).
      assert.equal(typeof doc['activates_at'], 'number');
      assert.ok((doc['activates_at'] as number) * 1000 > Date.now(), 'a prepared root activates later');
      assert.equal(doc['newly_prepared'], true);
    } finally {
      await s.stop();
    }
  } finally {
    cleanup();
  }
});
