import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../../src/common/log.js';
import { bundleService } from '../../../src/server/api/bundle-service.js';
import { certificatesToPem } from '../../../src/common/x509/pem.js';
import { TestCa } from '../../support/fake-sds-cache.js';
import { openTestCa, tempDir } from '../../support/server-kit.js';

type Answer = { bundles?: Array<{ trust_domain: string }>; dissociated_entries?: number };
type Handler = (call: { request: unknown }, cb: (err: ServiceError | null, res?: Answer) => void) => void;

test("the federated bundle calls: the own trust domain is refused, a set re-arms relationships anchored on it, a list leaves the own bundle out, a delete restricts by default", async (t) => {
  const tmp = tempDir();
  t.after(tmp.cleanup);
  const { ca, ds, clock, close } = await openTestCa(tmp.dir);
  t.after(close);
  const replaced: string[] = [];
  const svc = bundleService(ds, ca, { anchorsReplaced: (td) => void replaced.push(td) }, clock, silentLogger());
  const call = (method: string, request: unknown) =>
    new Promise<{ err: ServiceError | null; res?: Answer }>((resolve) => (svc[method] as unknown as Handler)({ request }, (err, res) => resolve({ err, res })));
  const partner = new TestCa('partner.org');
  t.after(() => partner.dispose());
  const pem = certificatesToPem([partner.rootDer]);

  for (const [method, request] of [['SetFederatedBundle', { trust_domain: 'example.org', bundle: pem }], ['DeleteFederatedBundle', { trust_domain: 'example.org' }]] as const) {
    const { err } = await call(method, request);
    assert.equal(err?.code, status.INVALID_ARGUMENT, method);
    assert.match(err!.details, /own trust domain; its bundle is managed by the CA/);
  }
  assert.equal((await call('SetFederatedBundle', { trust_domain: 'partner.org', bundle: pem })).err, null);
  assert.deepEqual(replaced, ['partner.org'], 'relationships anchored on partner.org are told of the new roots');
  assert.deepEqual((await call('ListFederatedBundles', {})).res!.bundles!.map((b) => b.trust_domain), ['partner.org']);

  await ds.createEntries([{
    spiffeId: 'spiffe://example.org/web', parentId: 'spiffe://example.org/meshid/agent/east/a', selectors: [{ type: 'unix', value: 'uid:1' }],
    x509SvidTtlSeconds: 0, jwtSvidTtlSeconds: 0, dnsNames: [], hint: '', federatesWith: ['partner.org'], admin: false, downstream: false,
  }]);
  const restricted = await call('DeleteFederatedBundle', { trust_domain: 'partner.org' });
  assert.notEqual(restricted.err, null, 'an entry federates with it: restrict, the default, refuses');
  assert.ok(await ds.getBundle('partner.org'));
  const dissociated = await call('DeleteFederatedBundle', { trust_domain: 'partner.org', mode: 'dissociate' });
  assert.equal(dissociated.err, null);
  assert.equal(dissociated.res!.dissociated_entries, 1);
  assert.equal(await ds.getBundle('partner.org'), undefined);
});
