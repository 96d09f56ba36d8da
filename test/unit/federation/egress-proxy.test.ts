/**
 * Bundle endpoints through HTTPS_PROXY, as spire-server (Go's net/http) fetches them: NO_PROXY read as Go reads it, and
 * a real CONNECT proxy on loopback that tunnels to a real https_spiffe endpoint. The proxy resolves the endpoint's
 * name itself (partner.test is nowhere in DNS), so a fetch that succeeds went through it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bundleToSpiffeJson } from '../../../src/common/spiffe/bundle.js';
import { fetchFederatedBundle } from '../../../src/server/federation/bundle-fetch.js';
import { egressProxyFromEnv, proxyFor, withoutPassword, type EgressProxy } from '../../../src/server/federation/egress-proxy.js';
import { compileRelationships } from '../../../src/server/federation/relationship.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { partnerEndpoint } from '../../support/partner-endpoint.js';
import { connectProxy } from '../../support/connect-proxy.js';

/** The proxy as the start-up log names it. */
const shown = (egress: EgressProxy | undefined): string => withoutPassword(egress!.proxy as URL);

test("NO_PROXY is read as Go's net/http reads it; localhost and loopback never go through the proxy", () => {
  const egress = egressProxyFromEnv({
    https_proxy: 'proxy.internal:3128',
    NO_PROXY: 'corp.example, .sub.example:8443, 10.0.0.0/8, 192.168.1.7, [fd00::1]:443, *.wild.example',
  })!;
  assert.equal(shown(egress), 'http://proxy.internal:3128', 'a bare host:port is an http:// proxy');
  const via = (host: string, port = 443): string => (proxyFor(egress, host, port) === undefined ? 'direct' : 'proxy');
  assert.equal(via('corp.example'), 'direct');
  assert.equal(via('a.corp.example'), 'direct', 'a domain covers its subdomains');
  assert.equal(via('notcorp.example'), 'proxy');
  assert.equal(via('sub.example', 8443), 'proxy', 'a leading dot: subdomains only');
  assert.equal(via('x.sub.example', 8443), 'direct');
  assert.equal(via('x.sub.example', 443), 'proxy', 'a port given must match');
  assert.equal(via('10.1.2.3'), 'direct');
  assert.equal(via('11.1.2.3'), 'proxy');
  assert.equal(via('192.168.1.7'), 'direct');
  assert.equal(via('[fd00::1]'), 'direct');
  assert.equal(via('a.wild.example'), 'direct');
  assert.equal(via('wild.example'), 'proxy', '*.domain is subdomains only');
  assert.equal(via('localhost'), 'direct');
  assert.equal(via('127.0.0.53'), 'direct');
  assert.equal(via('[::1]'), 'direct');
  assert.equal(via('Partner.Example'), 'proxy');

  assert.equal(proxyFor(egressProxyFromEnv({ HTTPS_PROXY: 'http://p:1', NO_PROXY: '*' }), 'anything.example', 443), undefined);
  assert.equal(egressProxyFromEnv({ HTTP_PROXY: 'http://p:1' }), undefined, 'bundle endpoints are https: HTTP_PROXY plays no part');
  assert.equal(shown(egressProxyFromEnv({ HTTPS_PROXY: 'http://u:secret@p:1' })), 'http://u:***@p:1');
  assert.equal(shown(egressProxyFromEnv({ HTTPS_PROXY: 'http://upper:1', https_proxy: 'http://lower:1' })), 'http://upper:1');
});

test('an https_spiffe endpoint is fetched through the HTTPS_PROXY CONNECT tunnel, authenticated as on a direct connection', async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  const endpoint = await partnerEndpoint(t, ca);
  endpoint.body = bundleToSpiffeJson(ca.bundle());
  const proxy = await connectProxy(t);
  const endpointPort = Number(new URL(endpoint.url).port);
  const [rel] = compileRelationships(
    { 'partner.org': { bundle_endpoint_url: `https://partner.test:${endpointPort}/`, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: endpoint.endpointId } },
    'example.org',
  );
  const egress = egressProxyFromEnv({ HTTPS_PROXY: `http://ops:s3cret@127.0.0.1:${proxy.port}`, NO_PROXY: 'corp.example' });

  const fetched = await fetchFederatedBundle(rel!, [ca.rootDer], 5000, egress);
  assert.deepEqual(fetched.bundle.x509Authorities, [ca.rootDer]);
  assert.deepEqual(proxy.connects, [{ target: `partner.test:${endpointPort}`, authorization: `Basic ${Buffer.from('ops:s3cret').toString('base64')}` }]);

  // Inside the tunnel the endpoint is still authenticated: roots that do not vouch for it refuse it.
  const stranger = new TestCa('partner.org');
  t.after(() => stranger.dispose());
  await assert.rejects(fetchFederatedBundle(rel!, [stranger.rootDer], 5000, egress), /does not chain to the X\.509 root stored for partner\.org/);

  proxy.refuseWith = 407;
  await assert.rejects(fetchFederatedBundle(rel!, [ca.rootDer], 5000, egress), (err: Error) => {
    assert.equal(
      err.message,
      `bundle endpoint https://partner.test:${endpointPort}/ of partner.org: the proxy http://ops:***@127.0.0.1:${proxy.port} (HTTPS_PROXY) ` +
        `answered HTTP 407 to CONNECT partner.test:${endpointPort}`,
    );
    return true;
  });

  // A loopback endpoint is fetched directly, as Go fetches it.
  const before = proxy.connects.length;
  assert.deepEqual((await fetchFederatedBundle(endpoint.rel, [ca.rootDer], 5000, egress)).bundle.x509Authorities, [ca.rootDer]);
  assert.equal(proxy.connects.length, before);
});

test('an HTTPS_PROXY meshid cannot use fails each proxied fetch saying why, and leaves exempt hosts alone', async (t) => {
  const ca = new TestCa('partner.org');
  t.after(() => ca.dispose());
  const endpoint = await partnerEndpoint(t, ca);
  endpoint.body = bundleToSpiffeJson(ca.bundle());
  const egress = egressProxyFromEnv({ HTTPS_PROXY: 'socks5://127.0.0.1:1080' });
  const [rel] = compileRelationships(
    { 'partner.org': { bundle_endpoint_url: 'https://partner.test:8443/', bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: endpoint.endpointId } },
    'example.org',
  );
  await assert.rejects(fetchFederatedBundle(rel!, [ca.rootDer], 5000, egress), {
    message: 'bundle endpoint https://partner.test:8443/ of partner.org: HTTPS_PROXY names a socks5 proxy; meshid-server reaches bundle endpoints through http:// or https:// proxies only',
  });
  assert.equal((await fetchFederatedBundle(endpoint.rel, [ca.rootDer], 5000, egress)).bundle.x509Authorities.length, 1);

  // Credentials with a broken %-escape (Go's url.Parse refuses them too): said as such, not as "URI malformed".
  const broken = egressProxyFromEnv({ HTTPS_PROXY: 'http://ops%zz:secret@127.0.0.1:3128' });
  await assert.rejects(fetchFederatedBundle(rel!, [ca.rootDer], 5000, broken), {
    message: 'bundle endpoint https://partner.test:8443/ of partner.org: HTTPS_PROXY has a user name or password with a malformed %-escape: encode "%" as %25',
  });
});
