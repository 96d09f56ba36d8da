import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { fetchFederatedBundle } from '../../../src/server/federation/bundle-fetch.js';
import { compileRelationships } from '../../../src/server/federation/relationship.js';
import { TestCa } from '../../support/fake-sds-cache.js';

test('a bundle endpoint that trickles its answer is cut off at the deadline, not only when it falls silent', async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  const svid = ca.issue('spiffe://partner.org/server');
  const key = createPrivateKey({ key: svid.privateKey, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' });
  const timers = new Set<NodeJS.Timeout>();
  const server = https.createServer({ cert: certificatesToPem(svid.chain), key }, (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{');
    // One byte every 100 ms: never silent for long, never done.
    const drip = setInterval(() => res.write(' '), 100);
    timers.add(drip);
    res.on('close', () => clearInterval(drip));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const timer of timers) clearInterval(timer);
    server.closeAllConnections();
    server.close();
  });
  const [rel] = compileRelationships(
    { 'partner.org': { bundle_endpoint_url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/`, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://partner.org/server' } },
    'example.org',
  );
  await assert.rejects(fetchFederatedBundle(rel!, [ca.rootDer], 1000), /no complete answer within 1 s/);
});
