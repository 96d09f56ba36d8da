import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { Writable } from 'node:stream';
import { status, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { createLogger } from '../../../src/common/log.js';
import { storageWriteError } from '../../../src/common/storage-failure.js';
import { unary } from '../../../src/server/api/handler.js';
import { LEVEL, parseLogLines } from '../../support/log-lines.js';

test("a write the server's disk refuses (ENOSPC from /dev/full) is RESOURCE_EXHAUSTED to the caller and an error line with the cause", async () => {
  let enospc: unknown;
  try {
    fs.writeFileSync('/dev/full', 'a CA key');
  } catch (err) {
    enospc = err;
  }
  assert.equal((enospc as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC', 'writing to /dev/full fails with ENOSPC');
  const raw: string[] = [];
  const log = createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  const handler = unary(log, 'RotateRoot', () => {
    throw storageWriteError(enospc, 'a CA key', '/var/lib/meshid/ca/keys');
  });
  const error = await new Promise<ServiceError>((resolve) => {
    const callback: sendUnaryData<unknown> = (err) => resolve(err as ServiceError);
    handler({ request: {} } as ServerUnaryCall<unknown, unknown>, callback);
  });
  assert.equal(error.code, status.RESOURCE_EXHAUSTED, error.details);
  assert.match(error.details, /^cannot write a CA key to \/var\/lib\/meshid\/ca\/keys: /);
  const line = parseLogLines(raw.join('')).find((l) => l.level === LEVEL.error);
  assert.ok(line !== undefined, `no error line at the default level: ${raw.join('')}`);
  assert.match(JSON.stringify(line['err']), /ENOSPC/, 'the cause is in the line');
});
