/**
 * An agent API call other than Attest made without a client certificate is refused before its request is decoded:
 * decoding is the costly part of a large request (~0.9 s of CPU for a ~4 MB Sync request of empty `known` items), and
 * anyone who reaches the port could otherwise make the server pay it per call. Request bytes no decoder would accept
 * show which came first: refused before decoding, the answer is UNAUTHENTICATED, not INVALID_ARGUMENT.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import path from 'node:path';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { attestAgent, connectNode, rawNodeCall as rawCall } from '../support/node-api-client.js';
import { teardown } from '../support/teardown.js';

/** Field 2 (known) as length-delimited with a length running past the end: no valid SyncRequest or RenewRequest. */
const UNDECODABLE = Buffer.from([0x12, 0x7f, 0x01]);

test('without a client certificate, Sync and Renew are refused UNAUTHENTICATED before decoding; Attest still is decoded and works', async (t) => {
  const { dir, cleanup } = tempDir('meshid-undecoded-refusal-');
  teardown(t).after(cleanup);
  const server = await startServerProcess(path.join(dir, 'server'), ['--datacenter', 'east']);
  teardown(t).after(() => server.stop());
  const rootsPem = (await server.cli(['bundle', 'show'])).out;
  const anonymous = connectNode(server, rootsPem);
  teardown(t).after(() => anonymous.close());

  for (const [method, stream] of [['Sync', true], ['Renew', false], ['SignX509Svids', false]] as const) {
    const err = await rawCall(anonymous, method, UNDECODABLE, stream);
    assert.equal(err.code, grpc.status.UNAUTHENTICATED, `${method}: ${err.details}`);
    assert.match(err.details, /needs the agent SVID as TLS client certificate \(attest first\)/);
  }
  // Attest is the call made without one: its request is decoded (and judged) as before.
  const malformed = await rawCall(anonymous, 'Attest', UNDECODABLE, false);
  assert.equal(malformed.code, grpc.status.INVALID_ARGUMENT, malformed.details);
  const agent = await attestAgent(server, rootsPem);
  assert.match(agent.id, /^spiffe:\/\/example\.org\/meshid\/agent\/east\//);
  // With its certificate, the same bytes reach the decoder.
  const client = connectNode(server, rootsPem, agent);
  teardown(t).after(() => client.close());
  const decoded = await rawCall(client, 'Sync', UNDECODABLE, true);
  assert.equal(decoded.code, grpc.status.INVALID_ARGUMENT, decoded.details);
});
