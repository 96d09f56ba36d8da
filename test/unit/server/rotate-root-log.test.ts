import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { authorityService } from '../../../src/server/api/authority-service.js';
import { capturingLogger, LEVEL } from '../../support/log-lines.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

type Handler = (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void;

function call(handler: Handler): Promise<{ id: string; newly_prepared?: boolean }> {
  return new Promise((resolve, reject) => {
    handler({ request: {} } as ServerUnaryCall<unknown, unknown>, (err, res) =>
      err ? reject(err) : resolve(res as { id: string; newly_prepared?: boolean }),
    );
  });
}

test('rotate-root logs and answers whether it prepared a new root or returned the one already prepared', async () => {
  const { dir, cleanup } = tempDir();
  const t = await openTestCa(dir);
  try {
    const { log, records } = capturingLogger('test');
    const rotateRoot = authorityService(t.ca, { listAgents: async () => [] }, t.clock, log)['RotateRoot'] as Handler;
    const first = await call(rotateRoot);
    const second = await call(rotateRoot);
    assert.equal(second.id, first.id, 'the root already prepared is returned, not another');
    // The answer says so too (`ca rotate-root --output json`), not only the log.
    assert.equal(first.newly_prepared, true);
    assert.equal(second.newly_prepared, false);
    const lines = records().filter((l) => l.level === LEVEL.info && l.msg.startsWith('root rotation requested'));
    assert.equal(lines.length, 2, JSON.stringify(records()));
    assert.equal(lines[0]!['authority'], first.id);
    assert.equal(lines[1]!['authority'], first.id);
    assert.equal(lines[0]!['newlyPrepared'], true);
    assert.equal(lines[1]!['newlyPrepared'], false);
    assert.notEqual(lines[0]!.msg, lines[1]!.msg, 'the two cases read differently to an operator');
    assert.match(lines[0]!.msg, /new root was prepared/);
    assert.match(lines[1]!.msg, /already prepared/);
  } finally {
    await t.close();
    cleanup();
  }
});
