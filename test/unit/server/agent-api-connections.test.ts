/**
 * The agent API's connection bounds hang on a grpc-js internal (its HTTP/2 servers, agent-api-connections.ts). A
 * grpc-js without it, stood in for by a real bound grpc.Server with that internal taken away (a newer grpc-js cannot be
 * installed beside the one the tests run on), stops the server with a message an operator can act on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../../src/common/clock.js';
import { silentLogger } from '../../../src/common/log.js';
import { AgentApiConnections } from '../../../src/server/api/agent-api-connections.js';
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
