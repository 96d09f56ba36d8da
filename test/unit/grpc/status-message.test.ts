import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../../../src/common/errors.js';
import { MAX_STATUS_MESSAGE_CHARS } from '../../../src/common/grpc-status.js';
import { silentLogger } from '../../../src/common/log.js';
import { unary } from '../../../src/server/api/handler.js';
import { raw, rawMethod } from '../../support/raw-method.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-status-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const METHOD = rawMethod('/meshid.test.Status/Refuse');

/**
 * A real grpc-js server on a Unix socket whose one method throws what `refuse` throws, through the handler wrapper
 * every meshid server uses; returns a call that resolves with the status the caller got.
 */
async function refusingServer(t: TestContext, name: string, refuse: (req: Buffer) => never): Promise<(body: Buffer) => Promise<grpc.ServiceError>> {
  const server = new grpc.Server();
  server.addService({ Refuse: METHOD }, { Refuse: unary(silentLogger(), 'Refuse', refuse) });
  const socket = path.join(dir, name);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  t.after(() => {
    client.close();
    server.forceShutdown();
  });
  return (body) =>
    new Promise((resolve) => {
      client.makeUnaryRequest(METHOD.path, raw, raw, body, { deadline: Date.now() + 10_000 }, (err) => resolve(err as grpc.ServiceError));
    });
}

test('a refusal whose message is too long for a trailer still reaches the caller as its status, its middle left out, and the channel keeps working', async (t) => {
  // Percent-encoded, each of these takes 9 bytes of the trailer (a 3-byte UTF-8 sequence, %XX%XX%XX): the worst case.
  const huge = 'あ'.repeat(200_000);
  const call = await refusingServer(t, 'status.sock', (req) => {
    if (req.length > 0) throw invalidArgument(`value ${huge} is refused`);
    throw invalidArgument('short');
  });

  const refused = await call(Buffer.from('x'));
  assert.equal(grpc.status[refused.code], 'INVALID_ARGUMENT', refused.details);
  assert.ok(refused.details.length <= MAX_STATUS_MESSAGE_CHARS, `${refused.details.length} characters`);
  // The start says what was refused, the end what to do: the middle, the quoted value, is left out.
  assert.match(refused.details, /^value あ+ … \(\d+ characters left out\) … あ+ is refused$/);
  const next = await call(Buffer.alloc(0));
  assert.equal(grpc.status[next.code], 'INVALID_ARGUMENT');
  assert.equal(next.details, 'short', 'a short message is sent whole, and the channel still answers');
});

test('a message cut in the middle of a character outside the BMP, or holding a lone surrogate, reaches the caller and the process lives on', async (t) => {
  // grpc-js percent-encodes the message with encodeURI, which throws on a lone surrogate: the caller got no status
  // (only its deadline) and the process died of the unhandled rejection.
  const call = await refusingServer(t, 'surrogate.sock', (req) => {
    // One ASCII character before and/or after the emoji moves both cuts onto either half of a surrogate pair.
    if (req.length > 0) throw invalidArgument(`${'a'.repeat(req[0]!)}${'😀'.repeat(12_000)}${'b'.repeat(req[1] ?? 0)}`);
    throw invalidArgument(`kid "\ud800" is unknown`);
  });

  for (const [before, after] of [[0, 0], [1, 0], [0, 1], [1, 1]] as const) {
    const cut = await call(Buffer.from([before, after]));
    assert.equal(grpc.status[cut.code], 'INVALID_ARGUMENT', cut.details.slice(0, 200));
    assert.ok(cut.details.length <= MAX_STATUS_MESSAGE_CHARS, `${cut.details.length} characters`);
    assert.match(cut.details, /^a?(😀)+ … \(\d+ characters left out\) … (😀)+b?$/u, 'no half of an emoji is sent, alone or replaced');
  }
  const lone = await call(Buffer.alloc(0));
  assert.equal(grpc.status[lone.code], 'INVALID_ARGUMENT', lone.details);
  assert.equal(lone.details, 'kid "\ufffd" is unknown');
});
