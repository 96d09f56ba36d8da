import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { status, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { createLogger } from '../../../src/common/log.js';
import { internal, invalidArgument } from '../../../src/common/errors.js';
import { unary } from '../../../src/server/api/handler.js';
import { parseLogLines, LEVEL } from '../../support/log-lines.js';

/** Runs one call of a unary handler that throws `thrown`, logged at the daemons' default level (info). */
async function failedCall(thrown: unknown): Promise<{ error: ServiceError; lines: ReturnType<typeof parseLogLines> }> {
  const raw: string[] = [];
  const log = createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (raw.push(String(c)), cb()) }) });
  const handler = unary(log, 'GetEntry', () => {
    throw thrown;
  });
  const error = await new Promise<ServiceError>((resolve) => {
    const callback: sendUnaryData<unknown> = (err) => resolve(err as ServiceError);
    handler({ request: {} } as ServerUnaryCall<unknown, unknown>, callback);
  });
  return { error, lines: parseLogLines(raw.join('')) };
}

test('an internal MeshidError (a damaged datastore) reaches the caller as INTERNAL and the operator at error level, with its cause', async () => {
  const cause = Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' });
  const { error, lines } = await failedCall(internal('the datastore file is damaged: stop the server and restore it from a backup', cause));
  assert.equal(error.code, status.INTERNAL);
  const line = lines.find((l) => l.level === LEVEL.error);
  assert.ok(line !== undefined, `no error line at the default level: ${JSON.stringify(lines)}`);
  assert.equal(line['rpc'], 'GetEntry');
  assert.match(JSON.stringify(line['err']), /database disk image is malformed/, 'the cause is in the line');
});

test('an unexpected exception is INTERNAL with a generic message, and logged at error level', async () => {
  const { error, lines } = await failedCall(new TypeError("Cannot read properties of undefined (reading 'id')"));
  assert.equal(error.code, status.INTERNAL);
  assert.equal(error.details, 'internal error');
  assert.ok(lines.some((l) => l.level === LEVEL.error && /reading 'id'/.test(JSON.stringify(l['err']))));
});

test("a refusal of the caller's request writes nothing at the default level: a client can repeat it at will", async () => {
  const { error, lines } = await failedCall(invalidArgument('entry id is required'));
  assert.equal(error.code, status.INVALID_ARGUMENT);
  assert.equal(error.details, 'entry id is required');
  assert.deepEqual(lines, []);
});
