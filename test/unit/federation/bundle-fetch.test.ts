import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { FakeClock } from '../../../src/common/clock.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { bundleToSpiffeJson } from '../../../src/common/spiffe/bundle.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { fetchFederatedBundle } from '../../../src/server/federation/bundle-fetch.js';
import { compileRelationships, type FederationRelationship } from '../../../src/server/federation/relationship.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { partnerEndpoint } from '../../support/partner-endpoint.js';


/**
 * A partner's https_spiffe bundle endpoint on loopback, its certificate from a test CA, answering with `handle`; the
 * relationship to it, and the CA whose root anchors it.
 */
async function spiffePartner(t: TestContext, handle: (res: ServerResponse) => void): Promise<{ ca: TestCa; url: string; rel: FederationRelationship }> {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  const svid = ca.issue('spiffe://partner.org/server');
  const key = createPrivateKey({ key: svid.privateKey, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' });
  const server = https.createServer({ cert: certificatesToPem(svid.chain), key }, (_req, res) => handle(res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const [rel] = compileRelationships({ 'partner.org': { bundle_endpoint_url: url, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: 'spiffe://partner.org/server' } }, 'example.org');
  return { ca, url, rel: rel! };
}

/** A fetch from `rel` with a 1 s deadline on a fake clock; `fetching` settles with the error it failed with. */
function fetchOnFakeClock(rel: FederationRelationship, ca: TestCa): { clock: FakeClock; fetching: Promise<unknown> } {
  const clock = new FakeClock();
  const fetching = fetchFederatedBundle(rel, [ca.rootDer], 1000, undefined, false, clock).then(
    () => assert.fail('the fetch succeeded'),
    (err: unknown) => err,
  );
  return { clock, fetching };
}

test('a bundle endpoint that trickles its answer is cut off at the deadline, not only when it falls silent', async (t) => {
  let answering: (res: ServerResponse) => void = () => undefined;
  const answer = new Promise<ServerResponse>((resolve) => (answering = resolve));
  const { ca, url, rel } = await spiffePartner(t, (res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write('{');
    answering(res);
  });
  const { clock, fetching } = fetchOnFakeClock(rel, ca);
  const res = await answer;
  // A byte every 250 ms of the fetch's clock: never silent (for the real-time silence bound, milliseconds pass), never
  // done. Bounded: an endpoint cut off only when silent would be fetched from for ever.
  let ended: unknown;
  for (let step = 0; ended === undefined; step++) {
    assert.ok(step < 40, `still fetching at ${step * 250} ms of a 1 s deadline`);
    res.write(' ');
    clock.advance(250);
    ended = await Promise.race([fetching, new Promise((r) => setTimeout(r, 10)).then(() => undefined)]);
  }
  assert.equal((ended as Error).message, `bundle endpoint ${url} of partner.org: no complete answer within 1 s`);
});

test('an https_spiffe endpoint whose chain the stored roots do not vouch for (the partner replaced them unseen) is refused, saying to re-seed', async (t) => {
  const stored = new TestCa('partner.org');
  const replaced = new TestCa('partner.org');
  t.after(() => [stored, replaced].forEach((c) => c.dispose()));
  // The partner's endpoint already serves under its new root, which this server never fetched.
  const endpoint = await partnerEndpoint(t, replaced);
  endpoint.body = bundleToSpiffeJson(replaced.bundle());
  await assert.rejects(
    fetchFederatedBundle(endpoint.rel, [stored.rootDer]),
    (err) =>
      isMeshidError(err, 'unavailable') &&
      err.message ===
        `bundle endpoint ${endpoint.url} of partner.org: the endpoint's certificate does not chain to the X.509 root stored for partner.org: ` +
          'if partner.org replaced its roots since they were stored, seed its current bundle with "meshid-server bundle set --trust-domain partner.org"; ' +
          'or the endpoint leaves out the intermediates its chain needs (unable to get local issuer certificate)',
  );
  assert.equal(endpoint.requests, 0, 'no request went to an endpoint that was not authenticated');
  // Seeded with the current roots (the old one beside them), it is fetched again.
  const fetched = await fetchFederatedBundle(endpoint.rel, [stored.rootDer, replaced.rootDer]);
  assert.deepEqual(fetched.bundle.x509Authorities, [replaced.rootDer]);
});

test('an https_web endpoint under a CA this server does not trust is refused, saying how to trust one', async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  // Say an operator gave the https_spiffe endpoint of the partner as https_web: no web PKI root vouches for its SVID.
  const endpoint = await partnerEndpoint(t, ca);
  const [rel] = compileRelationships({ 'partner.org': { bundle_endpoint_url: endpoint.url, bundle_endpoint_profile: 'https_web' } }, 'example.org');
  await assert.rejects(
    fetchFederatedBundle(rel!, undefined),
    (err) =>
      isMeshidError(err, 'unavailable') &&
      err.message.startsWith(
        `bundle endpoint ${endpoint.url} of partner.org: the endpoint's certificate does not chain to a CA this server trusts for https_web ` +
          "(Node's web PKI roots): add a CA of your own with NODE_EXTRA_CA_CERTS=ca.pem, or trust the system store with " +
          'NODE_OPTIONS=--use-openssl-ca; if the endpoint presents an X509-SVID, its profile is https_spiffe; or it leaves out the ' +
          'intermediates its chain needs (',
      ),
  );
});

test('a bundle endpoint that closes the connection halfway through the document is reported as such', async (t) => {
  const { ca, url, rel } = await spiffePartner(t, (res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 1000 });
    res.write('{"keys": [', () => res.socket?.destroy());
  });
  await assert.rejects(fetchFederatedBundle(rel, [ca.rootDer]), {
    message: `bundle endpoint ${url} of partner.org: closed the connection before the document was complete`,
  });
});

test('redirects share the fetch deadline: hops each quicker than it, but slower together, are cut off', async (t) => {
  // Each request waits here for the test to pass 400 ms of the fetch's clock and then answer it with a redirect.
  const requests: ServerResponse[] = [];
  let arrived: (() => void) | undefined;
  const { ca, url, rel } = await spiffePartner(t, (res) => {
    requests.push(res);
    arrived?.();
  });
  const { clock, fetching } = fetchOnFakeClock(rel, ca);
  let ended: unknown;
  for (let answered = 0; ended === undefined; ) {
    if (requests.length === answered) {
      const next = new Promise<void>((resolve) => (arrived = resolve));
      const outcome = await Promise.race([fetching.then((err) => ({ err })), next.then(() => undefined)]);
      if (outcome !== undefined) ended = outcome.err;
      continue;
    }
    const hop = answered++;
    clock.advance(400);
    requests[hop]!.writeHead(307, { Location: `/${hop + 1}` }).end();
  }
  // Under the 1 s deadline alone, each hop is; the third ends at 1.2 s. A deadline of each hop's own would have
  // followed a fourth (and ended "redirected more than 3 times") or failed it without "redirects included".
  assert.equal((ended as Error).message, `bundle endpoint ${url} of partner.org: no complete answer within 1 s, redirects included`);
  assert.equal(requests.length, 3, 'the fourth hop would start after the deadline');
});

test("an https_spiffe endpoint is authenticated by a stored CA that is not self-signed (a partner anchored on its PKI's intermediate), as go-spiffe does", async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  // The partner's bundle holds its intermediate alone: X509-SVID §6.1 asks for self-signed roots with a SHOULD, and
  // SPIRE (Go's verifier) takes every bundle certificate as a trust anchor, so such a partner federates with SPIRE.
  const endpoint = await partnerEndpoint(t, ca);
  endpoint.body = JSON.stringify({ keys: [] });
  const fetched = await fetchFederatedBundle(endpoint.rel, [ca.intermediateDer]);
  assert.deepEqual(fetched.bundle.x509Authorities, []);
  assert.equal(endpoint.requests, 1);
  // Still anchored: a chain the stored CA did not issue is refused.
  const other = new TestCa('partner.org');
  t.after(() => other.dispose());
  await assert.rejects(fetchFederatedBundle(endpoint.rel, [other.intermediateDer]), (err) => isMeshidError(err, 'unavailable') && /does not chain to the X\.509 root stored/.test(err.message));
});
