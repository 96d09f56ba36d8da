import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { status, type sendUnaryData, type ServerUnaryCall, type ServiceError } from '@grpc/grpc-js';
import { createLogger } from '../../../src/common/log.js';
import { internal, invalidArgument } from '../../../src/common/errors.js';
import { FakeClock } from '../../../src/common/clock.js';
import { storageWriteError } from '../../../src/common/storage-failure.js';
import { logServerFault, setServerFaultLogClock, stopServerFaultLog, unary } from '../../../src/server/api/handler.js';
import { parseLogLines, LEVEL, capturingLogger } from '../../support/log-lines.js';
import Database from 'better-sqlite3';
import { storageError } from '../../../src/server/datastore/sqlite-errors.js';

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

/** Runs one call of a unary handler that throws `thrown`, logged at debug; the refusal's debug line. */
async function refusedAtDebug(thrown: unknown): Promise<{ error: ServiceError; line: ReturnType<typeof parseLogLines>[number] | undefined }> {
  const { log, records } = capturingLogger('test');
  const handler = unary(log, 'CreateEntries', () => {
    throw thrown;
  });
  const error = await new Promise<ServiceError>((resolve) => handler({ request: {} } as ServerUnaryCall<unknown, unknown>, (err) => resolve(err as ServiceError)));
  return { error, line: records().find((l) => l.level === LEVEL.debug && l.msg === 'request refused') };
}

test("a datastore constraint refusal's debug line has SQLite's own words (which constraint), the caller only what to do", async () => {
  // A real SQLite refusal, as the datastore's writes get one when a record slips past the checks made before writing.
  const db = new Database(':memory:');
  let sqlite: unknown;
  try {
    db.exec('CREATE TABLE join_tokens (token_hash TEXT NOT NULL UNIQUE)');
    db.prepare('INSERT INTO join_tokens VALUES (?)').run('ab'.repeat(32));
    db.prepare('INSERT INTO join_tokens VALUES (?)').run('ab'.repeat(32));
  } catch (err) {
    sqlite = err;
  } finally {
    db.close();
  }
  const { error, line } = await refusedAtDebug(storageError(sqlite));
  assert.equal(error.code, status.ALREADY_EXISTS);
  assert.doesNotMatch(error.details, /UNIQUE|join_tokens/, "SQLite's text names tables and columns: not the caller's business");
  assert.ok(line !== undefined);
  assert.equal(line['reason'], error.details);
  assert.equal(line['detail'], 'UNIQUE constraint failed: join_tokens.token_hash');
});

test("a refusal's cause that quotes a join token or a JWT-SVID has it masked in the debug line; the rest of its words stay", async () => {
  const token = '0123456789abcdef0123456789abcdef01234567';
  const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy93In0.c2lnbmF0dXJl';
  const cause = new SyntaxError(`Unexpected token 'x', "${token} ${jwt}." is not valid JSON`);
  const { line } = await refusedAtDebug(invalidArgument('the document is not JSON', cause));
  assert.ok(line !== undefined);
  assert.equal(line['detail'], `Unexpected token 'x', "[redacted] [redacted]." is not valid JSON`);
  assert.ok(!JSON.stringify(line).includes(token) && !JSON.stringify(line).includes(jwt));
});

/** Calls `handler` once and waits for its answer. */
function callOnce(handler: ReturnType<typeof unary<unknown, unknown>>): Promise<void> {
  return new Promise((resolve) => handler({ request: {} } as ServerUnaryCall<unknown, unknown>, () => resolve()));
}

test('a server fault repeated by many retrying callers is logged once a minute with its cause, the repeats counted in one line', async () => {
  const clock = new FakeClock();
  const restore = setServerFaultLogClock(clock);
  try {
    const { log, records } = capturingLogger('test');
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const full = unary(log, 'FetchX509SVID', () => {
      throw storageWriteError(enospc, 'the datastore', '/var/lib/meshid/datastore.sqlite3');
    });
    const broken = unary(log, 'FetchX509SVID', () => {
      throw internal('the datastore file is damaged');
    });
    const otherRpc = unary(log, 'Sync', () => {
      throw storageWriteError(enospc, 'the datastore', '/var/lib/meshid/datastore.sqlite3');
    });
    const errors = () => records().filter((l) => l.level === LEVEL.error);
    for (let i = 0; i < 1000; i++) await callOnce(full);
    await callOnce(broken);
    await callOnce(otherRpc);
    assert.equal(errors().length, 3, `one line per RPC and reason: ${JSON.stringify(errors())}`);
    assert.match(JSON.stringify(errors()[0]!['err']), /ENOSPC/, 'the first is logged with its cause');
    assert.equal(errors()[0]!['rpc'], 'FetchX509SVID');

    clock.advance(59_999);
    assert.equal(errors().length, 3, 'nothing more within the minute');
    clock.advance(1);
    const summary = errors()[3];
    assert.ok(summary !== undefined && errors().length === 4, `the repeats reported when the window ends: ${JSON.stringify(errors())}`);
    assert.equal(summary['rpc'], 'FetchX509SVID');
    assert.equal(summary['repeats'], 999);
    assert.match(String(summary['reason']), /^cannot write the datastore/);
    assert.match(summary.msg, /999 more like it in the last minute/);

    await callOnce(full);
    assert.equal(errors().length, 5, 'the next one after the window is logged in full again');
    assert.match(JSON.stringify(errors()[4]!['err']), /ENOSPC/);
    assert.equal(errors()[4]!['repeats'], undefined, 'its repeats were reported already');
    clock.advance(60_000);
    assert.equal(errors().length, 5, 'a window without repeats adds no line');
  } finally {
    restore();
  }
});

test('stopServerFaultLog (the server stopping): the minute\'s repeats are reported at once, and nothing is written after it', async () => {
  const clock = new FakeClock();
  const restore = setServerFaultLogClock(clock);
  try {
    const { log, records } = capturingLogger('test');
    const broken = unary(log, 'Sync', () => {
      throw internal('the datastore file is damaged');
    });
    for (let i = 0; i < 5; i++) await callOnce(broken);
    const errors = () => records().filter((l) => l.level === LEVEL.error);
    assert.equal(errors().length, 1);
    stopServerFaultLog(log);
    assert.equal(errors().length, 2, 'the repeats reported at the stop');
    assert.equal(errors()[1]!['repeats'], 4);
    assert.equal(clock.pendingTimers(), 0, 'no summary timer outlives the stop');
    clock.advance(120_000);
    assert.equal(errors().length, 2, 'nothing written after the stop');
  } finally {
    restore();
  }
});

test('server faults whose messages differ only past their first 200 characters are throttled as one', async () => {
  const clock = new FakeClock();
  const restore = setServerFaultLogClock(clock);
  try {
    const { log, records } = capturingLogger('test');
    let n = 0;
    const handler = unary(log, 'GetEntry', () => {
      throw internal(`${'x'.repeat(200)} request ${n++}`);
    });
    for (let i = 0; i < 50; i++) await callOnce(handler);
    assert.equal(records().filter((l) => l.level === LEVEL.error).length, 1);
  } finally {
    restore();
  }
});

test("a server fault failing every item of a SignX509Svids batch is one line a minute, naming the first item's agent and entry", () => {
  const clock = new FakeClock();
  const restore = setServerFaultLogClock(clock);
  try {
    const { log, records } = capturingLogger('test');
    const bug = new TypeError("Cannot read properties of undefined (reading 'notAfter')");
    for (let i = 0; i < 100; i++) logServerFault(log, 'SignX509Svids', bug, { agent: 'spiffe://example.org/agent/a', entryId: `entry-${i}` });
    const errors = () => records().filter((l) => l.level === LEVEL.error);
    assert.equal(errors().length, 1, `one line for the batch: ${JSON.stringify(errors())}`);
    assert.equal(errors()[0]!['rpc'], 'SignX509Svids');
    assert.equal(errors()[0]!['entryId'], 'entry-0');
    assert.equal(errors()[0]!['agent'], 'spiffe://example.org/agent/a');
    assert.match(JSON.stringify(errors()[0]!['err']), /reading 'notAfter'/);
    clock.advance(60_000);
    assert.equal(errors()[1]?.['repeats'], 99, 'the other items are counted when the minute ends');
  } finally {
    restore();
  }
});

test('a server fault repeated across a clock stepped back: the first line after the step counts the repeats, which no window end reports any more', () => {
  // The window the repeats were counted in now starts in the future, so it is over (LogThrottle); its end-of-window
  // report finds nothing left to say, and the count travels with the next line instead, or is lost.
  const clock = new FakeClock(10 * 60_000);
  const restore = setServerFaultLogClock(clock);
  try {
    const { log, records } = capturingLogger('test');
    const broken = internal('the datastore file is damaged');
    for (let i = 0; i < 5; i++) logServerFault(log, 'Sync', broken);
    const errors = () => records().filter((l) => l.level === LEVEL.error);
    assert.equal(errors().length, 1);
    clock.advance(-5 * 60_000); // the host clock stepped back
    logServerFault(log, 'Sync', broken);
    assert.equal(errors().length, 2, JSON.stringify(errors()));
    assert.equal(errors()[1]!['repeats'], 4, 'the repeats of the window before the step');
    assert.match(errors()[1]!.msg, /after 4 more like it/);
    assert.match(JSON.stringify(errors()[1]!['err']), /damaged/, 'with its cause');
    clock.advance(10 * 60_000);
    assert.equal(errors().length, 2, 'and not reported a second time');
  } finally {
    restore();
  }
});
