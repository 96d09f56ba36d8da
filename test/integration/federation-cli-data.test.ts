/**
 * `meshid-server federation create|update --data`, as `spire-server federation create|update -data`: a real server
 * process, the real CLI, a relationship file written the way SPIRE's documentation writes one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { bundleToSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { TestCa } from '../support/fake-sds-cache.js';
import { opensslCa } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess } from '../support/server-process.js';
import { teardown } from '../support/teardown.js';

test('federation create --data creates every relationship of a SPIRE file with its bundle, reports each refusal, and exits 1 for them', async (t) => {
  const tmp = tempDir('meshid-federation-data-');
  teardown(t).after(tmp.cleanup);
  const server = await startServerProcess(path.join(tmp.dir, 'server'), ['--datacenter', 'east']);
  teardown(t).after(() => server.stop());
  const spiffePartner = new TestCa('spiffe.example');
  teardown(t).after(() => spiffePartner.dispose());
  const pemRoot = opensslCa(tmp.dir, 'PEM Partner Root');
  const file = path.join(tmp.dir, 'relationships.json');
  fs.writeFileSync(file, JSON.stringify({
    federationRelationships: [
      {
        trustDomain: 'pem.example', bundleEndpointURL: 'https://127.0.0.1:1/', bundleEndpointProfile: 'https_spiffe',
        endpointSPIFFEID: 'spiffe://pem.example/spire/server', trustDomainBundle: fs.readFileSync(pemRoot.cert, 'utf8'), trustDomainBundleFormat: 'pem',
      },
      {
        trustDomain: 'spiffe.example', bundleEndpointURL: 'https://127.0.0.1:1/', bundleEndpointProfile: 'https_spiffe',
        endpointSPIFFEID: 'spiffe://spiffe.example/spire/server', trustDomainBundle: JSON.parse(bundleToSpiffeJson(spiffePartner.bundle(3))), trustDomainBundleFormat: 'spiffe',
      },
      { trustDomain: 'example.org', bundleEndpointURL: 'https://127.0.0.1:1/', bundleEndpointProfile: 'https_web' },
      { trustDomain: 'web.example', bundleEndpointURL: 'https://127.0.0.1:1/', bundleEndpointProfile: 'https_web' },
    ],
  }));

  const created = await server.cli(['federation', 'create', '-data', file]);
  assert.equal(created.code, 1, 'one relationship was refused');
  assert.match(created.out, /^Created 3 of 4 federation relationships:\n\nTrust domain +: pem\.example\n/);
  assert.match(created.out, /\nTrust domain +: spiffe\.example\n[^]*\nTrust domain +: web\.example\n/);
  assert.equal(created.err, 'Failed to create the federation relationship with example.org: InvalidArgument: relationship with example.org: that is this server\'s own trust domain\n');
  const listed = JSON.parse((await server.cli(['federation', 'list', '--output', 'json'])).out) as { federation_relationships: Array<{ trust_domain: string }> };
  assert.deepEqual(listed.federation_relationships.map((r) => r.trust_domain).sort(), ['pem.example', 'spiffe.example', 'web.example']);
  const bundles = JSON.parse((await server.cli(['bundle', 'list', '--output', 'json'])).out) as { bundles: Array<{ trust_domain: string }> };
  assert.deepEqual(bundles.bundles.map((b) => b.trust_domain).sort(), ['pem.example', 'spiffe.example'], 'each bundle stored with its relationship');

  // update -data moves them, in JSON output as spire-server prints results; the same file twice is refused by create.
  const moved = path.join(tmp.dir, 'moved.json');
  fs.writeFileSync(moved, JSON.stringify({ federationRelationships: [{ trustDomain: 'web.example', bundleEndpointURL: 'https://127.0.0.1:2/moved', bundleEndpointProfile: 'https_web' }, { trustDomain: 'nowhere.example', bundleEndpointURL: 'https://127.0.0.1:2/', bundleEndpointProfile: 'https_web' }] }));
  const updated = await server.cli(['federation', 'update', '--data', moved, '--output', 'json']);
  assert.equal(updated.code, 1);
  type Result = { status: { code: number; message: string }; federation_relationship?: { trust_domain: string; bundle_endpoint_url: string } };
  const results = (JSON.parse(updated.out) as { results: Result[] }).results;
  // A refused one has its status only, as spire-server prints it.
  assert.deepEqual(results.map((r) => [r.status.code, r.federation_relationship?.trust_domain, r.federation_relationship?.bundle_endpoint_url]), [
    [0, 'web.example', 'https://127.0.0.1:2/moved'],
    [5, undefined, undefined],
  ]);
  assert.match(results[1]!.status.message, /nowhere\.example has no federation relationship/);
  assert.match((await server.cli(['federation', 'create', '--data', file, '--trust-domain', 'x.org'])).err, /^Error: InvalidArgument: --data creates the relationships of its file: it cannot be combined with --trust-domain\n$/);
});
