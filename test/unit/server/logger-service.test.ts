/**
 * The admin API's Logger service takes a level by every name SPIRE takes (logrus's too), in any case, as pino's level;
 * the change is logged at info on whichever side of it info lines are written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import type { ServerUnaryCall, ServiceError } from '@grpc/grpc-js';
import { createLogger } from '../../../src/common/log.js';
import { loggerService } from '../../../src/server/api/logger-service.js';

type Levels = { current_level: string; launch_level: string };

function setUp() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(String(c)) as Record<string, unknown>), cb()) });
  const root = createLogger({ name: 'test', level: 'info', destination });
  const service = loggerService(root, 'info', root.child({ subsystem: 'admin' }));
  const set = (level: string) =>
    new Promise<Levels>((resolve, reject) =>
      (service['SetLogLevel'] as (call: ServerUnaryCall<unknown, Levels>, cb: (err: ServiceError | null, res?: Levels) => void) => void)(
        { request: { level } } as ServerUnaryCall<unknown, Levels>,
        (err, res) => (err ? reject(err) : resolve(res!)),
      ),
    );
  return { root, set, lines };
}

test("SetLogLevel takes SPIRE's names: warning is warn, panic is fatal (pino has no panic), fatal is fatal, in any case", async () => {
  const { root, set } = setUp();
  assert.deepEqual(await set('warning'), { current_level: 'warn', launch_level: 'info' });
  assert.equal(root.level, 'warn');
  assert.deepEqual(await set('PANIC'), { current_level: 'fatal', launch_level: 'info' });
  assert.deepEqual(await set('Fatal'), { current_level: 'fatal', launch_level: 'info' });
  assert.deepEqual(await set('WARN'), { current_level: 'warn', launch_level: 'info' });
  // INVALID_ARGUMENT.
  await assert.rejects(set('verbose'), { code: 3, details: 'log level "verbose" is not one of trace, debug, info, warn, error, fatal, warning, panic' });
  assert.equal(root.level, 'warn', 'a refused level changes nothing');
});

test('a change to fatal, which writes no info lines, is logged before it takes effect; one back from it after', async () => {
  const { set, lines } = setUp();
  await set('panic');
  await set('info');
  assert.deepEqual(
    lines.filter((l) => l['msg'] === 'log level set').map((l) => [l['from'], l['to']]),
    [['info', 'fatal'], ['fatal', 'info']],
  );
});
