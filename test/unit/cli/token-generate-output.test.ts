import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import { serverCli } from '../../../src/server/cli/server-cli.js';
import { captureIo } from './capture-io.js';

// What scripts read from `token generate`: spire-server's one stdout line (`| awk '{print $2}'` gets the token), and
// with --output json spire-server's JoinToken, its expires_at an int64 written as protojson writes it: a string.

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-token-out-'));
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

const TOKEN = 'b5c3d0f2-2f0c-4a5e-9c1e-0a6b7c8d9e0f';
const EXPIRES_AT = 1_893_456_000;

/** A stand-in admin socket whose Tokens.GenerateJoinToken answers one token. */
async function standIn(t: TestContext): Promise<string> {
  const socket = path.join(DIR, 'admin.sock');
  const server = new grpc.Server();
  server.addService(serviceOf(loadProto(['meshid/v1/admin.proto']), 'meshid.admin.v1.Tokens'), {
    GenerateJoinToken: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { token: TOKEN, expires_at: EXPIRES_AT, datacenter: 'east' }),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  t.after(() => server.forceShutdown());
  return socket;
}

test('token generate prints only "Token: <token>" on stdout, the rest on stderr; --output json is spire-server\'s JoinToken with expires_at a string', async (t) => {
  const socket = await standIn(t);
  const pretty = captureIo({});
  assert.equal(await serverCli(['token', 'generate', '--admin-socket', socket], pretty), 0, pretty.err());
  assert.equal(pretty.out(), `Token: ${TOKEN}\n`);
  assert.equal(pretty.err(), `Expires at: ${new Date(EXPIRES_AT * 1000).toISOString()}\nDatacenter: east\n`);

  const json = captureIo({});
  assert.equal(await serverCli(['token', 'generate', '--admin-socket', socket, '--output', 'json'], json), 0, json.err());
  assert.deepEqual(JSON.parse(json.out()), { value: TOKEN, expires_at: String(EXPIRES_AT) });
  assert.equal(json.err(), '');
});
