/**
 * The agent's channel to meshid-server offers the cipher suites GRPC_SSL_CIPHER_SUITES names, as grpc-js's own TLS
 * credentials do: its secure context is the agent's own (allowPartialTrustChain, node-client.ts), which grpc-js does
 * not fill in. A TLS server on loopback under a server SVID of the test CA records the suite each handshake settles
 * on; the agent's real client connects to it.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { NodeClient } from '../../../src/agent/client/node-client.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { silentLogger } from '../../../src/common/log.js';
import { exportPkcs8Pem, generateKeyPair } from '../../../src/common/x509/keys.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { DAY, openAgentFixture } from './agent-fixture.js';
import { until } from '../../support/until.js';

const VARIABLE = 'GRPC_SSL_CIPHER_SUITES';

function withVariable(t: TestContext, value: string | undefined): void {
  const before = process.env[VARIABLE];
  if (value === undefined) delete process.env[VARIABLE];
  else process.env[VARIABLE] = value;
  t.after(() => {
    if (before === undefined) delete process.env[VARIABLE];
    else process.env[VARIABLE] = before;
  });
}

/** A TLS server presenting a meshid-server SVID; `suites` lists the suite of every handshake it completed. */
async function recordingServer(t: TestContext): Promise<{ address: string; suites: string[]; roots: readonly Buffer[] }> {
  // Signed at the real time: the handshake checks validity by the wall clock.
  const fx = await openAgentFixture(Date.now());
  t.after(() => fx.close());
  const key = generateKeyPair('ec-p256');
  const svid = fx.ca.signX509Svid({ datacenter: 'east', publicKey: key.publicKey, spiffeId: 'spiffe://example.org/meshid/server', ttlMs: DAY });
  const suites: string[] = [];
  const server = tls.createServer({ key: exportPkcs8Pem(key.privateKey), cert: certificatesToPem(svid.chain), ALPNProtocols: ['h2'] }, (socket) => {
    suites.push(socket.getCipher().name);
    socket.destroy();
  });
  server.on('tlsClientError', () => {});
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  t.after(() => server.close());
  return { address: `127.0.0.1:${port}`, suites, roots: fx.bundle().x509Authorities };
}

async function handshakeSuite(t: TestContext, variable: string | undefined): Promise<string> {
  withVariable(t, variable);
  const server = await recordingServer(t);
  const client = new NodeClient({ serverAddress: server.address, log: silentLogger(), deadlineMs: 5_000 });
  t.after(() => client.close());
  client.setTrust('example.org', server.roots);
  // The server ends every connection after its handshake: the call fails, the suite is recorded.
  await client.renew(Buffer.alloc(0)).catch(() => undefined);
  return until('a handshake', () => server.suites[0]);
}

test('GRPC_SSL_CIPHER_SUITES limits the suites the agent offers meshid-server, as grpc-js\'s own credentials do', async (t) => {
  // Not the suite OpenSSL prefers by default (TLS_AES_256_GCM_SHA384): settled on only if the variable is honoured.
  assert.equal(await handshakeSuite(t, 'TLS_CHACHA20_POLY1305_SHA256'), 'TLS_CHACHA20_POLY1305_SHA256');
});

test('without GRPC_SSL_CIPHER_SUITES the agent offers OpenSSL\'s default suites, which settle on another', async (t) => {
  assert.notEqual(await handshakeSuite(t, undefined), 'TLS_CHACHA20_POLY1305_SHA256');
});

test('a GRPC_SSL_CIPHER_SUITES that names no suite is refused when the client is made, naming the variable', (t) => {
  withVariable(t, 'NO-SUCH-CIPHER');
  assert.throws(
    () => new NodeClient({ serverAddress: '127.0.0.1:1', log: silentLogger() }),
    (err) => isMeshidError(err, 'invalid_argument') && /^GRPC_SSL_CIPHER_SUITES \("NO-SUCH-CIPHER"\) names no cipher suite this OpenSSL supports/.test(err.message),
  );
});
