/**
 * RefusedClientCertificates on its own (agent-api-expired-client-certificate.test.ts and agent-server-rebuilt.test.ts
 * cover its reasons against a real server): a refused agent SVID is noted for its own connection only, by both ends'
 * addresses and ports, and forgotten when that connection closes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { FakeClock } from '../../../src/common/clock.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { RefusedClientCertificates } from '../../../src/server/api/refused-client-certificates.js';
import { makePki, T0 } from '../x509/pki-fixture.js';

const ID = 'spiffe://example.org/meshid/agent/east/a1';
const PREFIX = 'spiffe://example.org/meshid/agent/';
const HOUR = 3_600_000;

/** The parts of a TLS socket the record reads: TLS refused its client certificate (authorized false), if it sent one. */
class RefusedSocket extends EventEmitter {
  readonly authorized = false;
  constructor(
    readonly remoteAddress: string,
    readonly remotePort: number,
    private readonly raw?: Buffer,
    readonly localAddress = '192.0.2.1',
    readonly localPort = 8081,
  ) {
    super();
  }

  getPeerCertificate(): { raw?: Buffer } {
    return this.raw === undefined ? {} : { raw: this.raw };
  }
}

test('an expired agent SVID is noted for its own connection, not another from the same host, and forgotten at its close', async () => {
  const { east } = await makePki('ec-p256');
  const svid = new LeafSigner(east.der, east.privateKey).sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + HOUR });
  const clock = new FakeClock(T0 + 2 * HOUR);
  const refused = new RefusedClientCertificates({ agentIdPrefix: PREFIX, anchor: { signedByServer: () => true, chainsToBundle: () => true }, clock });

  const expired = new RefusedSocket('198.51.100.7', 40000, svid);
  refused.record(expired as unknown as TLSSocket);
  assert.deepEqual(refused.of(expired), { agentId: ID, notAfter: T0 + HOUR, reason: 'expired' });

  // The same host's next connection (another source port) presents no certificate: its calls are not answered with
  // the first one's refusal.
  const other = new RefusedSocket('198.51.100.7', 40001);
  refused.record(other as unknown as TLSSocket);
  assert.equal(refused.of(other), undefined);
  assert.equal(refused.of({ remoteAddress: '198.51.100.7', remotePort: 40000, localAddress: '192.0.2.1', localPort: 8443 }), undefined, 'nor one to another local port');

  expired.emit('close');
  assert.equal(refused.of(expired), undefined, 'forgotten when its connection closes');
  assert.equal(refused.size, 0, 'nothing held for a closed connection');
});
