import { after, test } from 'node:test';
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

test('a refusal whose message is too long for a trailer still reaches the caller as its status, cut short, and the channel keeps working', async (t) => {
  const server = new grpc.Server();
  // Percent-encoded, each of these takes 9 bytes of the trailer (a 3-byte UTF-8 sequence, %XX%XX%XX): the worst case.
  const huge = 'あ'.repeat(200_000);
  server.addService({ Refuse: METHOD }, {
    Refuse: unary(silentLogger(), 'Refuse', (req: Buffer) => {
      if (req.length > 0) throw invalidArgument(`value ${huge} is refused`);
      throw invalidArgument('short');
    }),
  });
  const socket = path.join(dir, 'status.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  t.after(() => {
    client.close();
    server.forceShutdown();
  });
  const call = (body: Buffer): Promise<grpc.ServiceError> =>
    new Promise((resolve) => {
      client.makeUnaryRequest(METHOD.path, raw, raw, body, { deadline: Date.now() + 10_000 }, (err) => resolve(err as grpc.ServiceError));
    });

  const refused = await call(Buffer.from('x'));
  assert.equal(grpc.status[refused.code], 'INVALID_ARGUMENT', refused.details);
  assert.ok(refused.details.length <= MAX_STATUS_MESSAGE_CHARS, `${refused.details.length} characters`);
  assert.match(refused.details, /^value あああ/);
  assert.match(refused.details, /… \(cut short: 200017 characters\)$/);
  const next = await call(Buffer.alloc(0));
  assert.equal(grpc.status[next.code], 'INVALID_ARGUMENT');
  assert.equal(next.details, 'short', 'a short message is sent whole, and the channel still answers');
});

test('a message cut in the middle of a character outside the BMP, or holding a lone surrogate, reaches the caller and the process lives on', async (t) => {
  // grpc-js percent-encodes the message with encodeURI, which throws on a lone surrogate: the caller got no status
  // (only its deadline) and the process died of the unhandled rejection.
  const server = new grpc.Server();
  const suffixChars = '… (cut short: 24064 characters)'.length;
  const straddling = `${'a'.repeat(MAX_STATUS_MESSAGE_CHARS - suffixChars - 1)}${'😀'.repeat(10_000)}`;
  server.addService({ Refuse: METHOD }, {
    Refuse: unary(silentLogger(), 'Refuse', (req: Buffer) => {
      if (req.length === 1) throw invalidArgument(straddling);
      throw invalidArgument(`kid "\ud800" is unknown`);
    }),
  });
  const socket = path.join(dir, 'surrogate.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  t.after(() => {
    client.close();
    server.forceShutdown();
  });
  const call = (body: Buffer): Promise<grpc.ServiceError> =>
    new Promise((resolve) => {
      client.makeUnaryRequest(METHOD.path, raw, raw, body, { deadline: Date.now() + 10_000 }, (err) => resolve(err as grpc.ServiceError));
    });

  const cut = await call(Buffer.from('x'));
  assert.equal(grpc.status[cut.code], 'INVALID_ARGUMENT', cut.details.slice(0, 200));
  assert.ok(cut.details.length <= MAX_STATUS_MESSAGE_CHARS, `${cut.details.length} characters`);
  assert.match(cut.details, /a… \(cut short: 24064 characters\)$/, 'the half of the emoji the cut left is dropped, not sent alone');
  const lone = await call(Buffer.from('xy'));
  assert.equal(grpc.status[lone.code], 'INVALID_ARGUMENT', lone.details);
  assert.equal(lone.details, 'kid "\ufffd" is unknown');
});
