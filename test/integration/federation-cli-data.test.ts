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

test('federation create|update --data warns on stderr, as the flags do, of left-out keys of a SPIFFE bundle document and of a CA of another trust domain, naming each relationship', async (t) => {
  const tmp = tempDir('meshid-federation-data-warn-');
  teardown(t).after(tmp.cleanup);
  const server = await startServerProcess(path.join(tmp.dir, 'server'), ['--datacenter', 'east']);
  teardown(t).after(() => server.stop());
  const partner = new TestCa('half-read.example');
  teardown(t).after(() => partner.dispose());
  // A second root whose x5c is no standard base64 (a publisher's base64url, say): left out, the rest stored.
  const doc = JSON.parse(bundleToSpiffeJson(partner.bundle(1))) as { keys: Array<Record<string, unknown>> };
  doc.keys.push({ ...doc.keys[0]!, x5c: ['not-base64_url!'] });
  // This server's own bundle set for a partner: its root carries spiffe://example.org.
  const own = await server.cli(['bundle', 'show']);
  assert.equal(own.code, 0, own.err);
  const relationships = (verb: string): string => {
    const file = path.join(tmp.dir, `${verb}.json`);
    fs.writeFileSync(file, JSON.stringify({
      federationRelationships: [
        { trustDomain: 'half-read.example', bundleEndpointURL: 'https://127.0.0.1:1/', bundleEndpointProfile: 'https_web', trustDomainBundle: doc, trustDomainBundleFormat: 'spiffe' },
        { trustDomain: 'mixed-up.example', bundleEndpointURL: 'https://127.0.0.1:1/', bundleEndpointProfile: 'https_web', trustDomainBundle: own.out },
        { trustDomain: 'plain.example', bundleEndpointURL: 'https://127.0.0.1:1/', bundleEndpointProfile: 'https_web' },
      ],
    }));
    return file;
  };
  const warnings =
    `Warning: SPIFFE bundle for half-read.example: keys[${doc.keys.length - 1}]: x5c[0] is not standard base64; the key is ignored\n` +
    'Warning: the bundle of mixed-up.example holds a CA of another trust domain (root 1 carries spiffe://example.org), trusted for ' +
    "mixed-up.example all the same: if it is example.org's bundle, it was set for the wrong trust domain, and " +
    '"meshid-server bundle delete --trust-domain mixed-up.example" takes it out\n';

  const created = await server.cli(['federation', 'create', '--data', relationships('create')]);
  assert.equal(created.code, 0, created.err);
  assert.match(created.out, /^Created 3 of 3 federation relationships:/);
  assert.equal(created.err, warnings);
  const updated = await server.cli(['federation', 'update', '--data', relationships('update'), '--output', 'json']);
  assert.equal(updated.code, 0, updated.err);
  assert.equal((JSON.parse(updated.out) as { results: unknown[] }).results.length, 3, 'stdout stays one JSON document');
  assert.equal(updated.err, warnings);
});
