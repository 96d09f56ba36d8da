import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { createIntermediateCertificate, createRootCertificate } from '../../../src/common/x509/ca-certificates.js';
import { exportPkcs8Pem, generateKeyPair, type KeyType } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { TD } from './pki-fixture.js';

// TLS checks validity against the real clock, so this PKI is built around Date.now() rather than the fixed T0.
const HOUR = 3_600_000;

interface Identity {
  key: string;
  cert: string;
}

async function makeTrustDomain(keyType: KeyType): Promise<{ rootPem: string; issue: (spiffeId: string) => Identity }> {
  const now = Date.now();
  const root = generateKeyPair(keyType);
  const rootDer = await createRootCertificate({ trustDomain: TD, ...root, notBefore: now - 60_000, notAfter: now + 48 * HOUR });
  const inter = generateKeyPair(keyType);
  const interDer = await createIntermediateCertificate({
    trustDomain: TD,
    datacenter: 'dc-east',
    publicKey: inter.publicKey,
    issuerCertDer: rootDer,
    issuerPrivateKey: root.privateKey,
    notBefore: now - 60_000,
    notAfter: now + 24 * HOUR,
  });
  const signer = new LeafSigner(interDer, inter.privateKey);
  return {
    rootPem: certificatesToPem([rootDer]),
    issue(spiffeId) {
      const keys = generateKeyPair('ec-p256');
      const leaf = signer.sign({ publicKey: keys.publicKey, spiffeId, notBefore: now - 10_000, notAfter: now + HOUR });
      return { key: exportPkcs8Pem(keys.privateKey), cert: certificatesToPem([leaf, interDer]) };
    },
  };
}

const SERVER_ID = `spiffe://${TD}/server`;
const CLIENT_ID = `spiffe://${TD}/client`;

/** A server that requires a client certificate chaining to `rootPem` and answers with the peer's URI SAN. */
async function startServer(rootPem: string, identity: Identity): Promise<tls.Server> {
  const server = tls.createServer({ ...identity, ca: rootPem, requestCert: true, rejectUnauthorized: true }, (socket) => {
    const san = socket.getPeerX509Certificate()?.subjectAltName ?? '';
    socket.end(san === `URI:${CLIENT_ID}` ? `hello ${CLIENT_ID}` : 'unexpected peer');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

/** Checks the server's SPIFFE ID (URI SAN) instead of a host name, as SPIFFE-aware clients do. */
function expectServerId(_host: string, cert: tls.PeerCertificate): Error | undefined {
  return cert.subjectaltname === `URI:${SERVER_ID}` ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`);
}

for (const keyType of ['ec-p256', 'rsa-2048'] as KeyType[]) {
  test(`${keyType} CAs: two leaves of the same intermediate complete a mutual TLS handshake and see each other's SPIFFE ID`, async () => {
    const td = await makeTrustDomain(keyType);
    const server = await startServer(td.rootPem, td.issue(SERVER_ID));
    try {
      const { port } = server.address() as AddressInfo;
      const socket = tls.connect({ host: '127.0.0.1', port, ...td.issue(CLIENT_ID), ca: td.rootPem, checkServerIdentity: expectServerId });
      await once(socket, 'secureConnect');
      assert.equal(socket.authorized, true, String(socket.authorizationError));
      assert.equal(socket.getPeerX509Certificate()?.subjectAltName, `URI:${SERVER_ID}`);
      let reply = '';
      for await (const chunk of socket) reply += chunk;
      assert.equal(reply, `hello ${CLIENT_ID}`);
    } finally {
      server.close();
    }
  });
}

test('a client whose leaf chains to another root is refused by the server', async () => {
  const ours = await makeTrustDomain('ec-p256');
  const theirs = await makeTrustDomain('ec-p256');
  const server = await startServer(ours.rootPem, ours.issue(SERVER_ID));
  try {
    const { port } = server.address() as AddressInfo;
    const outcome = Promise.race([
      once(server, 'tlsClientError').then(() => 'refused'),
      once(server, 'secureConnection').then(() => 'accepted'),
    ]);
    const socket = tls.connect({ host: '127.0.0.1', port, ...theirs.issue(CLIENT_ID), ca: ours.rootPem, checkServerIdentity: expectServerId });
    socket.on('error', () => undefined); // With TLS 1.3 the client may learn of the refusal only as a reset.
    let reply = '';
    socket.on('data', (chunk) => (reply += chunk));
    assert.equal(await outcome, 'refused');
    await once(socket, 'close');
    assert.equal(reply, '');
  } finally {
    server.close();
  }
});
