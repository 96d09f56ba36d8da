import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import https from 'node:https';
import net from 'node:net';
import tls, { type PeerCertificate } from 'node:tls';
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

/** The suite a TLS 1.2 client offering only `cipher` gets, or "refused". */
function tls12Suite(port: number, cipher: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ciphers: cipher, maxVersion: 'TLSv1.2', rejectUnauthorized: false }, () => {
      resolve(socket.getCipher().name);
      socket.destroy();
    });
    socket.on('error', () => resolve('refused'));
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
  // The renewed certificate's context keeps Mozilla intermediate's suites (Federation §5.1): no CBC under TLS 1.2.
  assert.equal(await tls12Suite(endpoint.port, 'ECDHE-ECDSA-AES128-SHA'), 'refused');
  assert.equal(await tls12Suite(endpoint.port, 'ECDHE-ECDSA-AES128-GCM-SHA256'), 'ECDHE-ECDSA-AES128-GCM-SHA256');

  await endpoint.close();
  assert.equal(bundleListeners.size + identityListeners.size, 0, 'close() unsubscribes');
  assert.equal(closed, 1, 'and releases what feeds the sources');
});

/** An https_spiffe endpoint serving `ca`'s bundle with a 300 ms timeout, closed when the test ends. */
async function shortTimeoutEndpoint(t: TestContext): Promise<{ ca: TestCa; endpoint: BundleEndpoint }> {
  const ca = new TestCa('example.org');
  t.after(() => ca.dispose());
  const identity = identityFrom(ca);
  const endpoint = await BundleEndpoint.start({
    address: '127.0.0.1:0',
    log: silentLogger(),
    timeoutMs: 300,
    sources: {
      profile: 'https_spiffe',
      bundle: () => ca.bundle(1),
      onBundleChange: () => () => undefined,
      servingCert: () => identity,
      onServingCertChange: () => () => undefined,
    },
  });
  t.after(() => endpoint.close());
  return { ca, endpoint };
}

test('the bundle endpoint closes a connection that never starts TLS, and caps the connections of one source', async (t) => {
  const { ca, endpoint } = await shortTimeoutEndpoint(t);
  const open = (): Promise<{ closed: Promise<void>; isClosed: () => boolean }> =>
    new Promise((resolve, reject) => {
      let closed = false;
      const socket = net.connect(endpoint.port, '127.0.0.1', () =>
        resolve({ closed: new Promise((r) => socket.once('close', () => r())), isClosed: () => closed }),
      );
      socket.once('close', () => (closed = true));
      socket.on('error', () => undefined);
      socket.once('error', reject);
    });
  const idle = await Promise.all(Array.from({ length: 16 }, open));
  const extra = await open();
  // The 17th from the same address is closed at once, while the 16 idle ones are still open...
  await extra.closed;
  assert.equal(idle.filter((c) => c.isClosed()).length, 0);
  // ...and those are closed when TLS has not started in time (Node's default would hold them 120 s).
  const late = new Promise<string>((r) => setTimeout(() => r('still open after 5 s'), 5_000).unref());
  assert.equal(await Promise.race([Promise.all(idle.map((c) => c.closed)).then(() => 'closed'), late]), 'closed');
  // And the endpoint serves again once they are gone.
  const served = await get(endpoint.port, certificatesToPem([ca.rootDer]));
  assert.equal(bundleFromSpiffeJson('example.org', served.body).sequence, 1);
});

test('the bundle endpoint closes a connection that completes TLS and then sends no request, or trickles one', async (t) => {
  const { endpoint } = await shortTimeoutEndpoint(t);
  /**
   * A TLS connection that, once up, does `then` with its socket; resolves when the endpoint closes it (a write the
   * endpoint cut off, EPIPE or ECONNRESET, is that close too).
   */
  const connect = (then: (socket: tls.TLSSocket) => void): Promise<void> =>
    new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port: endpoint.port, rejectUnauthorized: false }, () => then(socket));
      socket.once('close', () => resolve());
      socket.on('error', () => undefined);
    });
  const drips = new Set<NodeJS.Timeout>();
  t.after(() => drips.forEach((d) => clearInterval(d)));
  // Both would otherwise hold one of the endpoint's few connections for good (silent) or for Node's 30 s check
  // interval (trickling), so a handful of sources could keep partners from polling.
  const silent = connect(() => undefined);
  const trickling = connect((socket) => {
    socket.write('GET / HTTP/1.1\r\n');
    const drip = setInterval(() => socket.write('X-Slow: 1\r\n'), 100);
    drips.add(drip);
    socket.once('close', () => clearInterval(drip));
  });
  const late = new Promise<string>((r) => setTimeout(() => r('still open after 5 s'), 5_000).unref());
  assert.equal(await Promise.race([silent.then(() => 'closed'), late]), 'closed', 'silent after TLS');
  assert.equal(await Promise.race([trickling.then(() => 'closed'), late]), 'closed', 'trickling its headers');
});

test('a bundle change while the endpoint is starting to listen is served, not the bundle read before it', async (t) => {
  const ca = new TestCa('example.org');
  t.after(() => ca.dispose());
  let bundle: TrustBundle = ca.bundle(1);
  const bundleListeners = new Set<(b: TrustBundle) => void>();
  let changeScheduled = false;
  const endpoint = await BundleEndpoint.start({
    address: '127.0.0.1:0',
    log: silentLogger(),
    sources: {
      profile: 'https_spiffe',
      bundle: () => {
        // The CA publishes a new root while the endpoint binds its port (its timers run on meanwhile).
        if (!changeScheduled) {
          changeScheduled = true;
          process.nextTick(() => {
            bundle = ca.bundle(2);
            for (const l of bundleListeners) l(bundle);
          });
        }
        return bundle;
      },
      onBundleChange: (l) => (bundleListeners.add(l), () => bundleListeners.delete(l)),
      servingCert: () => identityFrom(ca),
      onServingCertChange: () => () => undefined,
    },
  });
  t.after(() => endpoint.close());
  assert.equal(bundle.sequence, 2, 'the change happened during start');
  const served = await get(endpoint.port, certificatesToPem([ca.rootDer]));
  assert.equal(bundleFromSpiffeJson('example.org', served.body).sequence, 2);
});

function request(port: number, rootsPem: string, method: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .request({ host: '127.0.0.1', port, path: '/', method, ca: rootsPem, checkServerIdentity: () => undefined, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject)
      .end();
  });
}

test('the bundle endpoint serves GET and HEAD uncached, with the document and its length, and refuses other methods with 405', async (t) => {
  const ca = new TestCa('example.org');
  t.after(() => ca.dispose());
  const bundle = ca.bundle(7);
  const identity = identityFrom(ca);
  const endpoint = await BundleEndpoint.start({
    address: '127.0.0.1:0',
    log: silentLogger(),
    sources: { profile: 'https_spiffe', bundle: () => bundle, onBundleChange: () => () => {}, servingCert: () => identity, onServingCertChange: () => () => {} },
  });
  t.after(() => endpoint.close());
  const roots = certificatesToPem([ca.rootDer]);
  const got = await request(endpoint.port, roots, 'GET');
  assert.equal(got.status, 200);
  assert.equal(got.headers['cache-control'], 'no-store', 'a cache must not hold a bundle past a revocation');
  assert.equal(got.headers['content-type'], 'application/json');
  assert.equal(bundleFromSpiffeJson('example.org', got.body).sequence, 7);
  const head = await request(endpoint.port, roots, 'HEAD');
  assert.deepEqual([head.status, head.body, head.headers['content-length']], [200, '', String(Buffer.byteLength(got.body))]);
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const refused = await request(endpoint.port, roots, method);
    assert.deepEqual([refused.status, refused.headers.allow], [405, 'GET, HEAD'], method);
    assert.doesNotMatch(refused.body, /"keys"/, method);
  }
});
