import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import https from 'node:https';
import type { PeerCertificate } from 'node:tls';
import { silentLogger } from '../../../src/common/log.js';
import { bundleFromSpiffeJson, type TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { BundleEndpoint } from '../../../src/server/federation/bundle-endpoint.js';
import type { ServerIdentity } from '../../../src/server/server-svid.js';
import { TestCa } from '../../support/fake-sds-cache.js';

function identityFrom(ca: TestCa): ServerIdentity {
  const svid = ca.issue('spiffe://example.org/meshid/server');
  const privateKeyPem = createPrivateKey({ key: svid.privateKey, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  return { certChainPem: certificatesToPem(svid.chain), privateKeyPem, notAfter: svid.notAfter };
}

function get(port: number, rootsPem: string): Promise<{ body: string; leafSerial: string }> {
  return new Promise((resolve, reject) => {
    https
      .get({ host: '127.0.0.1', port, path: '/', ca: rootsPem, checkServerIdentity: () => undefined, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          const peer = (res.socket as unknown as { getPeerCertificate(): PeerCertificate }).getPeerCertificate();
          resolve({ body, leafSerial: peer.serialNumber });
        });
      })
      .on('error', reject);
  });
}

test('the bundle endpoint follows bundle changes and server SVID renewals without restarting', async (t) => {
  const ca = new TestCa('example.org');
  t.after(() => ca.dispose());
  let bundle: TrustBundle = ca.bundle(1);
  let identity = identityFrom(ca);
  const bundleListeners = new Set<(b: TrustBundle) => void>();
  const identityListeners = new Set<(id: ServerIdentity) => void>();
  let closed = 0;
  const endpoint = await BundleEndpoint.start({
    address: '127.0.0.1:0',
    log: silentLogger(),
    sources: {
      profile: 'https_spiffe',
      bundle: () => bundle,
      onBundleChange: (l) => (bundleListeners.add(l), () => bundleListeners.delete(l)),
      servingCert: () => identity,
      onServingCertChange: (l) => (identityListeners.add(l), () => identityListeners.delete(l)),
    },
    onClose: () => closed++,
  });
  t.after(() => endpoint.close());
  const roots = certificatesToPem([ca.rootDer]);

  const first = await get(endpoint.port, roots);
  assert.equal(bundleFromSpiffeJson('example.org', first.body).sequence, 1);
  assert.equal(first.leafSerial, new X509Certificate(identity.certChainPem).serialNumber);

  bundle = ca.bundle(2);
  for (const l of bundleListeners) l(bundle);
  identity = identityFrom(ca);
  for (const l of identityListeners) l(identity);
  const second = await get(endpoint.port, roots);
  assert.equal(bundleFromSpiffeJson('example.org', second.body).sequence, 2);
  assert.equal(second.leafSerial, new X509Certificate(identity.certChainPem).serialNumber, 'the renewed SVID is presented');
  assert.notEqual(second.leafSerial, first.leafSerial);

  await endpoint.close();
  assert.equal(bundleListeners.size + identityListeners.size, 0, 'close() unsubscribes');
  assert.equal(closed, 1, 'and releases what feeds the sources');
});
