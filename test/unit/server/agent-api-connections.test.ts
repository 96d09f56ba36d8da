/**
 * The agent API's connection bounds hang on a grpc-js internal (its HTTP/2 servers, agent-api-connections.ts). A
 * grpc-js without it, stood in for by a real bound grpc.Server with that internal taken away (a newer grpc-js cannot be
 * installed beside the one the tests run on), stops the server with a message an operator can act on. The bounds
 * themselves are fixed, not settings: the README states them, and they are the ones the server runs with.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { packageRoot } from '../../../src/common/paths.js';
import { silentLogger } from '../../../src/common/log.js';
import { AgentApiConnections, DEFAULT_CONNECTION_LIMITS } from '../../../src/server/api/agent-api-connections.js';
import { AgentSvidAnchor } from '../../../src/server/api/agent-svid-anchor.js';
import { PresentedCertificates } from '../../../src/server/api/presented-certificates.js';
import { forceShutdownGrpcServer } from '../../../src/server/grpc-shutdown.js';
import { tempDir } from '../../support/server-kit.js';

const installed = (createRequire(import.meta.url)('@grpc/grpc-js/package.json') as { version: string }).version;

test('a grpc-js that no longer exposes its HTTP/2 servers is refused, naming the version installed and how to install the one meshid was released with', async (t) => {
  const dir = tempDir('meshid-agent-api-connections-');
  const server = new grpc.Server();
  let taken: unknown;
  t.after(() => {
    // Given back for the shutdown, which needs it to close the listener.
    if (taken !== undefined) Reflect.set(server, 'http2Servers', taken);
    forceShutdownGrpcServer(server);
    dir.cleanup();
  });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path.join(dir.dir, 'api.sock')}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  taken = Reflect.get(server, 'http2Servers');
  Reflect.deleteProperty(server, 'http2Servers');
  const connections = new AgentApiConnections({
    agentIdPrefix: 'spiffe://example.org/meshid/agent/',
    anchor: new AgentSvidAnchor({ x509Bundle: () => ({ x509Authorities: [], sequence: 0 }), issuerChains: () => [] }),
    certificates: new PresentedCertificates(),
    clock: new FakeClock(),
    log: silentLogger(),
  });
  assert.throws(() => connections.watch(server), (err: Error) => {
    assert.match(err.message, new RegExp(`the installed @grpc/grpc-js \\(version ${installed.replace(/\./g, '\\.')}\\) no longer exposes its HTTP/2 servers`));
    assert.match(err.message, /npm ci \(it follows package-lock\.json\)/);
    return true;
  });
});

test('the bounds of agent API connections the README states (fixed, not settings) are the ones the server runs with', () => {
  const readme = fs.readFileSync(path.join(packageRoot, 'README.md'), 'utf8').replace(/\s+/g, ' ');
  const l = DEFAULT_CONNECTION_LIMITS;
  const s = (ms: number) => `${ms / 1000} s`;
  const n = (count: number) => count.toLocaleString('en-US');
  const stated = [
    `a TCP connection still in its TLS handshake: ${s(l.handshakeMs)} to finish it`,
    `and ${n(l.handshakesTotal)} such connections at once from all sources`,
    `an expired one): ${l.unauthenticatedStreams} calls at once; ${n(l.unauthenticatedPerSource)} such connections per source address ` +
      `(IPv4 address or IPv6 /64) and ${n(l.unauthenticatedTotal)} in all; closed after ${s(l.unauthenticatedIdleMs)} without a call, ` +
      `and after ${s(l.unauthenticatedMaxAgeMs)} in any case (calls then still in progress get ${s(l.unauthenticatedGraceMs)})`,
    `When all ${n(l.unauthenticatedTotal)} are held`,
    `cut ${s(l.evictedGraceMs)} later`,
    `each agent may hold ${l.perAgent} connections`,
  ];
  for (const text of stated) assert.ok(readme.includes(text), `the README's "Limits of the agent API port" says: ${text}`);
});
