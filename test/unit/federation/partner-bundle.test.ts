/**
 * What the poller makes of the documents a partner's bundle endpoint may serve, fetched over real HTTPS
 * (https_spiffe, under an SVID of the partner's test CA) into a real SQLite datastore, on a fake clock.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { bundleToSpiffeJson, type TrustBundle } from '../../../src/common/spiffe/bundle.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { FederatedBundlePoller, MAX_REFRESH_MS } from '../../../src/server/federation/bundle-poller.js';
import { fetchFederatedBundle } from '../../../src/server/federation/bundle-fetch.js';
import { federatedBundleFromText, storedFederatedBundle } from '../../../src/server/federation/federated-bundle.js';
import { compileRelationships, type FederationRelationship } from '../../../src/server/federation/relationship.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { partnerEndpoint } from '../../support/partner-endpoint.js';
import { withDatastore } from '../datastore/fixture.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const TD = 'partner.org';
const ENDPOINT_ID = 'spiffe://partner.org/bundle-endpoint';

type JsonKey = Record<string, unknown>;

/** The SPIFFE bundle document of `bundle`, its keys changed by `mutate`. */
function document(bundle: TrustBundle, mutate: (keys: JsonKey[]) => void = () => undefined): string {
  const doc = JSON.parse(bundleToSpiffeJson(bundle)) as { keys: JsonKey[] };
  mutate(doc.keys);
  return JSON.stringify(doc);
}

/** A logger whose lines the test reads. */
function recordingLogger(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { log: pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) }), lines };
}

const jwtKey = jobFreeKeyPair('ec', { namedCurve: 'P-256' }).publicKey;


test("keys a consumer must ignore are left out and logged once, not again at a poll that leaves out the same; the partner's root rotation still arrives", async (t) => {
  const ca = new TestCa(TD);
  const next = new TestCa(TD);
  t.after(() => [ca, next].forEach((c) => c.dispose()));
  const endpoint = await partnerEndpoint(t, ca);
  await withDatastore(async ({ ds, clock }) => {
    await ds.setBundle(storedFederatedBundle(TD, ca.bundle(1), undefined, clock.now()));
    const { log, lines } = recordingLogger();
    const poller = new FederatedBundlePoller([endpoint.rel], ds, clock, log);
    t.after(() => poller.stop());

    // The partner adds its next root, alongside keys that X509-SVID §6.2 and Bundle §4.2 say to ignore.
    const rotated: TrustBundle = { trustDomain: TD, x509Authorities: [ca.rootDer, next.rootDer], jwtAuthorities: [{ kid: 'k1', publicKey: jwtKey }], sequence: 2 };
    endpoint.body = document(rotated, (k) => {
      k[1]!['x5c'] = [next.rootDer.toString('base64'), ca.intermediateDer.toString('base64')]; // all but the first ignored
      k.push({ ...k[0]!, x5c: undefined }); // 3: no x5c
      k.push({ ...k[0]!, x5c: [] }); // 4: empty x5c
      k.push({ ...k[2]!, kty: undefined, kid: 'k2' }); // 5: no kty
      k.push({ ...k[2]!, crv: 'secp256k1', kid: 'k3' }); // 6: a curve meshid does not know
      k.push({ ...k[0]!, kid: 'root-with-kid' }); // 7: a kid on an x509-svid key (read, reported)
    });
    await poller.refresh(TD);
    assert.equal(poller.status(TD)!.lastError, undefined);
    const stored = (await ds.getBundle(TD))!;
    assert.deepEqual(stored.x509Authorities, [ca.rootDer, next.rootDer], 'the next root arrived; the intermediate in x5c[1] was not taken');
    assert.deepEqual(stored.jwtAuthorities.map((k) => k.kid), ['k1']);
    assert.equal(stored.sequence, 2);

    const warnings = (): Array<Record<string, unknown>> => lines.filter((l) => Array.isArray(l['ignored']));
    assert.equal(warnings().length, 1);
    const ignored = (warnings()[0]!['ignored'] as string[]).map((line) => line.replace(`SPIFFE bundle for ${TD}: `, ''));
    assert.deepEqual(ignored, [
      'keys[1]: an x509-svid key must have exactly one x5c certificate; the first is used, 1 more ignored',
      'keys[3]: an x509-svid key must have exactly one x5c certificate; the key is ignored',
      'keys[4]: an x509-svid key must have exactly one x5c certificate; the key is ignored',
      'keys[5] has no kty; the key is ignored',
      'keys[6]: unsupported EC curve "secp256k1" (expected P-256, P-384 or P-521); the key is ignored',
      'keys[7]: an x509-svid key must not have a kid; the kid is ignored',
    ]);
    // The next poll leaves out the same keys: no warning again (debug only), and nothing new stored.
    await poller.refresh(TD);
    assert.equal(warnings().length, 1);
    assert.equal((await ds.getBundle(TD))!.sequence, 2);
    assert.equal(endpoint.requests, 2);
  });
});

test('a spiffe_sequence and refresh hint beyond 2^53 are taken from the endpoint and from "bundle set"; the hint is bounded', async (t) => {
  const ca = new TestCa(TD);
  const next = new TestCa(TD);
  t.after(() => [ca, next].forEach((c) => c.dispose()));
  const endpoint = await partnerEndpoint(t, ca);
  const huge = (b: TrustBundle): string =>
    bundleToSpiffeJson({ ...b, sequence: 1, refreshHintSeconds: 1 })
      .replace('"spiffe_sequence":1', '"spiffe_sequence":18446744073709551615')
      .replace('"spiffe_refresh_hint":1', '"spiffe_refresh_hint":100000000000000000000');
  await withDatastore(async ({ ds, clock }) => {
    // An operator seeds the partner with a document of its own endpoint (SPIRE writes 64-bit sequences).
    await ds.setBundle(federatedBundleFromText(TD, huge(ca.bundle()), undefined, undefined, clock.now()));
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, [ca.rootDer]);
    // "bundle set" still refuses a document that leaves nothing to trust (an operator deletes a bundle instead), and
    // says why each key was ignored.
    assert.throws(
      () => federatedBundleFromText(TD, document(ca.bundle(), (k) => delete k[0]!['kty']), undefined, undefined, clock.now()),
      /holds no usable X\.509 authorities and no JWT keys \(SPIFFE bundle for partner\.org: keys\[0\] has no kty; the key is ignored\)/,
    );

    const poller = new FederatedBundlePoller([endpoint.rel], ds, clock, pino({ level: 'silent' }));
    t.after(() => poller.stop());
    endpoint.body = huge({ ...ca.bundle(), x509Authorities: [ca.rootDer, next.rootDer] });
    await poller.refresh(TD);
    const status = poller.status(TD)!;
    assert.equal(status.lastError, undefined);
    const stored = (await ds.getBundle(TD))!;
    assert.deepEqual(stored.x509Authorities, [ca.rootDer, next.rootDer]);
    assert.equal(stored.sequence, 2, "meshid's own count of changes");
    assert.equal(status.nextPollAt! - status.lastSuccessAt!, MAX_REFRESH_MS, 'a hint of 10^20 s is obeyed as an hour');
  });
});

test('an endpoint serving an empty bundle revokes every key: it is stored and the relationship says to re-seed; unusable keys alone are a failed poll', async (t) => {
  const ca = new TestCa(TD);
  t.after(() => ca.dispose());
  const endpoint = await partnerEndpoint(t, ca);
  await withDatastore(async ({ ds, clock }) => {
    const seed = document({ ...ca.bundle(), jwtAuthorities: [{ kid: 'k1', publicKey: jwtKey }] });
    const reseed = async (): Promise<void> => void (await ds.setBundle(federatedBundleFromText(TD, seed, 'spiffe', await ds.getBundle(TD), clock.now())));
    await reseed();
    const { log, lines } = recordingLogger();
    const poller = new FederatedBundlePoller([endpoint.rel], ds, clock, log);
    t.after(() => poller.stop());

    // Bundle §4.1.3: an empty key array revokes every previously published key.
    endpoint.body = '{"keys": [], "spiffe_sequence": 9}';
    await poller.refresh(TD);
    const revoked = (await ds.getBundle(TD))!;
    assert.deepEqual([revoked.x509Authorities, revoked.jwtAuthorities, revoked.sequence], [[], [], 2]);
    let status = poller.status(TD)!;
    assert.ok(status.lastSuccessAt !== undefined, 'the document was fetched and stored');
    assert.equal((status.lastError as { code?: string }).code, 'failed_precondition');
    assert.match(status.lastError!.message, /served a bundle of partner\.org with no keys, now stored: partner\.org is trusted for nothing, .*"meshid-server bundle set --trust-domain partner\.org"/);
    assert.ok(lines.some((l) => l['level'] === 40 && /revoked every key/.test(String(l['msg']))), 'the revocation is logged as a warning');

    // Nothing is left to authenticate the endpoint with: the next poll does not even connect, and says why.
    await poller.refresh(TD);
    assert.equal(endpoint.requests, 1);
    status = poller.status(TD)!;
    assert.match(status.lastError!.message, /the stored bundle of partner\.org has no X\.509 roots \(its endpoint revoked them\).*seed them with "meshid-server bundle set --trust-domain partner\.org"/);
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, []);

    // The operator re-seeds; polls work again.
    await reseed();
    endpoint.body = seed;
    await poller.refresh(TD);
    assert.equal(poller.status(TD)!.lastError, undefined);
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, [ca.rootDer]);
    // Keys served but none usable (a publishing bug: base64url in x5c) is not the revocation an empty bundle is: the
    // poll fails, saying why, and the stored bundle stays, so the next good document is fetched as before.
    endpoint.body = document(ca.bundle(), (k) => k.forEach((key) => (key['x5c'] = (key['x5c'] as string[]).map((c) => Buffer.from(c, 'base64').toString('base64url')))));
    await poller.refresh(TD);
    assert.match(poller.status(TD)!.lastError!.message, /served a key of partner\.org and none meshid can use, so the stored bundle is kept: .*x5c\[0\] is not standard base64/);
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, [ca.rootDer]);
    endpoint.body = seed;
    await poller.refresh(TD);
    assert.equal(poller.status(TD)!.lastError, undefined);

    // A document that is not a SPIFFE bundle at all is a failed poll: the stored bundle stays.
    await reseed();
    const before = (await ds.getBundle(TD))!;
    for (const body of ['<html>maintenance</html>', '{"keys": {}}', '{"spiffe_sequence": 3}']) {
      endpoint.body = body;
      await poller.refresh(TD);
      assert.match(poller.status(TD)!.lastError!.message, /served a document that is not a SPIFFE bundle/, body);
      assert.deepEqual(await ds.getBundle(TD), before, body);
    }
    // Nor is one past 1 MiB, whatever it holds (here a revocation): the server does not hold what an endpoint pads.
    endpoint.body = JSON.stringify({ keys: [], padding: 'a'.repeat(1 << 20) });
    await poller.refresh(TD);
    assert.match(poller.status(TD)!.lastError!.message, /: the document is larger than 1048576 bytes$/);
    assert.deepEqual(await ds.getBundle(TD), before);
  });
});

/**
 * An https_spiffe relationship for partner.org whose endpoint serves `partner`'s bundle under an SVID `host` issues
 * for `endpointId` (a hosting provider, or a mirror in this server's own trust domain).
 */
async function partnerEndpointUnder(t: TestContext, host: TestCa, endpointId: string, partner: TestCa): Promise<FederationRelationship> {
  const svid = host.issue(endpointId);
  const key = createPrivateKey({ key: svid.privateKey, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' });
  const server = https.createServer({ cert: certificatesToPem(svid.chain), key }, (_req, res) => res.writeHead(200).end(bundleToSpiffeJson(partner.bundle(3))));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const [rel] = compileRelationships(
    { [TD]: { bundle_endpoint_url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/`, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: endpointId } },
    'example.org',
  );
  return rel!;
}

test("an endpoint hosted by another trust domain (Bundle §5.2.2.2) is authenticated with that domain's stored bundle", async (t) => {
  const host = new TestCa('host.example');
  const partner = new TestCa(TD);
  t.after(() => [host, partner].forEach((c) => c.dispose()));
  // The hosting provider's server, under an SVID of its own trust domain, serving partner.org's bundle.
  const rel = await partnerEndpointUnder(t, host, 'spiffe://host.example/bundles', partner);
  await withDatastore(async ({ ds, clock }) => {
    const poller = new FederatedBundlePoller([rel], ds, clock, recordingLogger().log);
    t.after(() => poller.stop());
    await poller.refresh(TD);
    assert.match(poller.status(TD)!.lastError!.message, /no bundle of host\.example is stored to authenticate the bundle endpoint .* of partner\.org: seed it once with "meshid-server bundle set --trust-domain host\.example"/);
    assert.equal(await ds.getBundle(TD), undefined);

    await ds.setBundle(storedFederatedBundle('host.example', host.bundle(1), undefined, clock.now()));
    await poller.refresh(TD);
    assert.equal(poller.status(TD)!.lastError, undefined);
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, [partner.rootDer], "partner.org's bundle, fetched through the host's endpoint");
  });
});

test('redirects are followed to https without userinfo, authenticated anew, at most three times (Bundle §5.2.2.4)', async (t) => {
  const ca = new TestCa(TD);
  t.after(() => ca.dispose());
  const svid = ca.issue(ENDPOINT_ID);
  const key = createPrivateKey({ key: svid.privateKey, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' });
  let authorizations = 0;
  const server = https.createServer({ cert: certificatesToPem(svid.chain), key }, (req, res) => {
    if (req.headers.authorization !== undefined) authorizations++;
    const path = req.url ?? '/';
    if (path === '/moved') res.writeHead(302, { Location: '/bundle' }).end();
    else if (path === '/plain') res.writeHead(301, { Location: 'http://127.0.0.1:1/bundle' }).end();
    else if (path === '/userinfo') res.writeHead(302, { Location: `https://user:secret@127.0.0.1:${(server.address() as AddressInfo).port}/bundle` }).end();
    else if (path.startsWith('/loop')) res.writeHead(307, { Location: `/loop${path.length}` }).end();
    else res.writeHead(200).end(bundleToSpiffeJson(ca.bundle(2)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const rel = (path: string): FederationRelationship =>
    compileRelationships({ [TD]: { bundle_endpoint_url: `${base}${path}`, bundle_endpoint_profile: 'https_spiffe', endpoint_spiffe_id: ENDPOINT_ID } }, 'example.org')[0]!;
  const anchors = [ca.rootDer];
  assert.deepEqual((await fetchFederatedBundle(rel('/moved'), anchors)).bundle.x509Authorities, [ca.rootDer]);
  await assert.rejects(fetchFederatedBundle(rel('/plain'), anchors), /answered HTTP 301 to http:\/\/127\.0\.0\.1:1\/bundle, which is not https/);
  await assert.rejects(fetchFederatedBundle(rel('/loop'), anchors), /redirected more than 3 times/);
  // Bundle §5.2.2.1: no userinfo in a bundle endpoint URL. Followed, it went out as an Authorization header.
  await assert.rejects(fetchFederatedBundle(rel('/userinfo'), anchors), (err: Error) => {
    assert.match(err.message, /answered HTTP 302 to a URL with userinfo, which no bundle endpoint URL may carry/);
    assert.doesNotMatch(err.message, /secret/, 'the credentials are not repeated');
    return true;
  });
  assert.equal(authorizations, 0, 'no Authorization header was sent');
});

test('a partner dropping its last root beside an EdDSA jwt-svid key (a type meshid does not read) is a revocation: applied, not a failed poll', async (t) => {
  const ca = new TestCa(TD);
  t.after(() => ca.dispose());
  const endpoint = await partnerEndpoint(t, ca);
  await withDatastore(async ({ ds, clock }) => {
    // The partner publishes an EdDSA JWT key for its own consumers next to its X.509 root; meshid ignores that key.
    const eddsa = { kty: 'OKP', use: 'jwt-svid', kid: 'ed', crv: 'Ed25519', x: jobFreeKeyPair('ed25519').publicKey.export({ format: 'jwk' }).x };
    const withRoot = document(ca.bundle(), (k) => k.push(eddsa));
    await ds.setBundle(federatedBundleFromText(TD, withRoot, 'spiffe', undefined, clock.now()));
    const { log, lines } = recordingLogger();
    const poller = new FederatedBundlePoller([endpoint.rel], ds, clock, log);
    t.after(() => poller.stop());
    endpoint.body = withRoot;
    await poller.refresh(TD);
    assert.equal(poller.status(TD)!.lastError, undefined);
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, [ca.rootDer]);

    // Then it revokes the root (Bundle §4.1.3), its EdDSA key unchanged: the root is no longer trusted.
    endpoint.body = JSON.stringify({ keys: [eddsa], spiffe_sequence: 2 });
    await poller.refresh(TD);
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, [], 'the revoked root is not kept');
    const status = poller.status(TD)!;
    assert.ok(status.lastSuccessAt !== undefined, 'the document was applied, not a failed poll');
    // https_spiffe: nothing is left to authenticate the endpoint with, which the relationship says.
    assert.match(status.lastError!.message, /served a bundle of partner\.org with no keys meshid can use, now stored: partner\.org is trusted for nothing/);
    const revocation = lines.find((l) => /serves no key of its trust domain that meshid can use/.test(String(l['msg'])));
    assert.ok(revocation !== undefined && revocation['level'] === 40, 'logged as a warning');
    assert.match(String((revocation['ignored'] as string[])[0]), /a jwt-svid key of type "OKP", which meshid cannot use/);
  });
});

test("an endpoint hosted in this server's own trust domain is authenticated with the own bundle, which no bundle set can store", async (t) => {
  const own = new TestCa('example.org');
  const partner = new TestCa(TD);
  t.after(() => [own, partner].forEach((c) => c.dispose()));
  // A mirror run in this server's own trust domain, serving partner.org's bundle under an SVID of example.org.
  const rel = await partnerEndpointUnder(t, own, 'spiffe://example.org/bundle-mirror', partner);
  await withDatastore(async ({ ds, clock }) => {
    // The own bundle is the CA's, never stored as a federated one ("bundle set --trust-domain example.org" is refused).
    const poller = new FederatedBundlePoller([rel], ds, clock, recordingLogger().log, undefined, { trustDomain: 'example.org', roots: () => [own.rootDer] });
    t.after(() => poller.stop());
    await poller.refresh(TD);
    assert.equal(poller.status(TD)!.lastError, undefined);
    assert.deepEqual((await ds.getBundle(TD))!.x509Authorities, [partner.rootDer], "partner.org's bundle, fetched through the own domain's mirror");
  });
});

test("an endpoint of this server's own trust domain whose chain the own roots do not anchor is not told to be seeded with bundle set, which refuses the own trust domain", async (t) => {
  const own = new TestCa('example.org');
  const stranger = new TestCa('example.org');
  const partner = new TestCa(TD);
  t.after(() => [own, stranger, partner].forEach((c) => c.dispose()));
  // A mirror under an SVID of example.org signed by another CA (a second server started with its own data dir, say).
  const rel = await partnerEndpointUnder(t, stranger, 'spiffe://example.org/bundle-mirror', partner);
  await withDatastore(async ({ ds, clock }) => {
    const poller = new FederatedBundlePoller([rel], ds, clock, recordingLogger().log, undefined, { trustDomain: 'example.org', roots: () => [own.rootDer] });
    t.after(() => poller.stop());
    await poller.refresh(TD);
    const error = poller.status(TD)!.lastError!.message;
    assert.match(error, /does not chain to this server's own X\.509 roots \(example\.org is its trust domain, so its CA's bundle authenticates the endpoint\): the endpoint must present an SVID of this server's CA \(spiffe:\/\/example\.org\/bundle-mirror\)/);
    assert.doesNotMatch(error, /bundle set/);
    assert.equal(await ds.getBundle(TD), undefined);
  });
});
