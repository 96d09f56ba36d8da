/**
 * meshid-server's CLI against a real server process, for bundles and federation (server-cli-tokens-and-svids.test.ts
 * has join tokens, agents, the CA and minted SVIDs, server-cli-entries.test.ts the entries): every admin command runs
 * as a child process, and its stdout, stderr and exit status are checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { bundleFromSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { isMeshidError } from '../../src/common/errors.js';
import { assertError, assertOk, cli, createEntry, dir, partnerBundle, serverOutput, socket, startServerCliFixture, TD } from '../support/server-cli-fixture.js';

startServerCliFixture('meshid-server-cli-bundles-');

test('bundle show prints the root CAs as PEM by default and as a SPIFFE bundle with --format spiffe', async () => {
  const pem = await cli(['bundle', 'show']);
  assertOk(pem);
  const roots = pemToDerList(pem.out);
  assert.ok(roots.length >= 1);
  for (const der of roots) {
    const cert = new X509Certificate(der);
    assert.equal(cert.ca, true);
    assert.equal(cert.subject, cert.issuer, 'bundles hold self-signed roots only');
  }

  const spiffe = await cli(['bundle', 'show', '--format', 'spiffe']);
  assertOk(spiffe);
  const doc = JSON.parse(spiffe.out) as { keys: Array<Record<string, unknown>>; spiffe_sequence: unknown };
  assert.ok(Number.isInteger(doc.spiffe_sequence));
  const x509Keys = doc.keys.filter((k) => k['use'] === 'x509-svid');
  const jwtKeys = doc.keys.filter((k) => k['use'] === 'jwt-svid');
  assert.equal(x509Keys.length, roots.length);
  for (const k of x509Keys) {
    assert.equal(k['kid'], undefined, 'x509-svid keys carry no kid');
    assert.equal((k['x5c'] as string[]).length, 1);
    assert.ok(roots.some((r) => r.toString('base64') === (k['x5c'] as string[])[0]));
  }
  assert.ok(jwtKeys.length >= 1 && jwtKeys.every((k) => typeof k['kid'] === 'string' && k['kid'] !== ''));
  // The document parses strictly as a SPIFFE bundle.
  assert.equal(bundleFromSpiffeJson(TD, spiffe.out).x509Authorities.length, roots.length);
});

test("the own bundle's JWT keys carry their expiry over the admin API (GetBundle), as the CA journal holds it", async () => {
  const admin = new AdminClient(socket);
  try {
    const bundle = await admin.call('Bundles', 'GetBundle', {});
    const journal = await admin.call('Authorities', 'ListAuthorities', {});
    const keys = bundle.jwt_authorities ?? [];
    assert.ok(keys.length > 0);
    for (const k of keys) {
      const authority = journal.authorities?.find((a) => a.kind === 'jwt' && a.fingerprint === k.kid);
      assert.ok(authority, `JWT key ${k.kid} is in the journal`);
      assert.equal(k.expires_at, authority.not_after, `JWT key ${k.kid} expires with its journal record, not at 0`);
    }
  } finally {
    admin.close();
  }
});

test('bundle set, list and delete manage a federated bundle', async () => {
  const partnerPem = partnerBundle('listed-partner.org');
  const pemFile = path.join(dir, 'partner.pem');
  fs.writeFileSync(pemFile, partnerPem);

  const set = await cli(['bundle', 'set', '--trust-domain', 'listed-partner.org', '--path', pemFile]);
  assertOk(set);
  assert.match(set.out, /^Bundle set for listed-partner\.org/);
  const viaStdin = await cli(['bundle', 'set', '-id', 'spiffe://third.org'], { stdin: partnerPem });
  assertOk(viaStdin);
  // `--path -` too, as the other commands' file flags take it (not a file named "-").
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'fourth.org', '--path', '-'], { stdin: partnerPem }));

  const list = await cli(['bundle', 'list']);
  assertOk(list);
  assert.match(list.out, /^Found \d+ federated bundles\n\n\*{40}\n/);
  assert.match(list.out, /^\* listed-partner\.org$/m);
  assert.match(list.out, /^\* third\.org$/m);
  assert.match(list.out, /^\* fourth\.org$/m);
  const one = await cli(['bundle', 'list', '--trust-domain', 'listed-partner.org', '--output', 'json']);
  assertOk(one);
  // spire-server's GetFederatedBundle answer: the one Bundle, not a list.
  const bundle = JSON.parse(one.out) as { trust_domain: string; x509_authorities: Array<{ asn1: string }> };
  assert.equal(bundle.trust_domain, 'listed-partner.org');
  assert.deepEqual(bundle.x509_authorities.map((a) => a.asn1), pemToDerList(partnerPem).map((d) => d.toString('base64')));

  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'listed-partner.org']));
  assertError(await cli(['bundle', 'list', '--trust-domain', 'listed-partner.org']), /^Error: NotFound: no federated bundle for listed-partner\.org$/);
  // The own trust domain is no federated one, as spire-server's bundle list -id answers it.
  assertError(
    await cli(['bundle', 'list', '-id', `spiffe://${TD}`]),
    /^Error: InvalidArgument: example\.org is this server's own trust domain, not a federated one: "meshid-server bundle show" prints its bundle$/,
  );
  assertError(await cli(['bundle', 'delete', '--trust-domain', 'listed-partner.org']), /^Error: NotFound: /);
  assertError(await cli(['bundle', 'set', '--trust-domain', TD, '--path', pemFile]), /^Error: InvalidArgument: .*own trust domain/);
  assertError(await cli(['bundle', 'set', '--trust-domain', 'x.org', '--data', 'not a bundle']), /^Error: InvalidArgument: /);
});

test('a bundle file that holds no bundle is refused naming the file, for bundle set and federation create', async () => {
  const notPem = path.join(dir, 'notes.txt');
  fs.writeFileSync(notPem, 'these are not certificates\n');
  const escaped = notPem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assertError(
    await cli(['bundle', 'set', '--trust-domain', 'typo-partner.org', '--path', notPem]),
    new RegExp(`^Error: InvalidArgument: bundle file ${escaped}: no PEM "CERTIFICATE" block found$`),
  );
  const badJson = path.join(dir, 'bundle.json');
  fs.writeFileSync(badJson, '{"keys": 3}');
  assertError(
    await cli(['bundle', 'set', '--trust-domain', 'typo-partner.org', '--path', badJson]),
    new RegExp(`^Error: InvalidArgument: bundle file ${badJson.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `),
  );
  assertError(
    await cli(['federation', 'create', '--trust-domain', 'typo-partner.org', '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_web', '--bundle-path', notPem]),
    new RegExp(`^Error: InvalidArgument: bundle file ${escaped}: no PEM "CERTIFICATE" block found$`),
  );
  assertError(await cli(['bundle', 'list', '--trust-domain', 'typo-partner.org']), /^Error: NotFound: /);
  const relationships = await cli(['federation', 'list', '--output', 'json']);
  assertOk(relationships);
  assert.doesNotMatch(relationships.out, /typo-partner\.org/, 'nothing was created');
});

test('bundle delete refuses while entries federate with the trust domain; --mode dissociate takes it out of them', async () => {
  fs.writeFileSync(path.join(dir, 'ally.pem'), partnerBundle('ally.org'));
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'ally.org', '--path', path.join(dir, 'ally.pem')]));
  const id = await createEntry([
    '--spiffe-id', `spiffe://${TD}/allied`, '--parent-id', `spiffe://${TD}/agent-3`, '--selector', 'unix:uid:4343', '--federates-with', 'ally.org',
  ]);
  assertError(await cli(['bundle', 'delete', '--trust-domain', 'ally.org']), new RegExp(`^Error: FailedPrecondition: 1 registration entry federates with ally\\.org \\(${id}\\)`));
  assertError(await cli(['bundle', 'delete', '--trust-domain', 'ally.org', '--mode', 'everything']), /^Error: InvalidArgument: .*restrict, dissociate/);
  assertOk(await cli(['bundle', 'list', '--trust-domain', 'ally.org']));

  const deleted = await cli(['bundle', 'delete', '--trust-domain', 'ally.org', '--mode', 'dissociate']);
  assertOk(deleted);
  assert.equal(deleted.out, 'Bundle deleted for ally.org. 1 entry no longer federates with it.\n');
  const entry = await cli(['entry', 'show', '--entry-id', id, '--output', 'json']);
  assert.deepEqual((JSON.parse(entry.out) as { entries: Array<{ federates_with?: string[] }> }).entries[0]!.federates_with ?? [], []);
});

test('bundle list --trust-domain prints that bundle alone, as bundle show does: redirected, it is a bundle file again', async () => {
  const spiffe = partnerBundle('export-partner.org', 'spiffe');
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'export-partner.org', '--data', spiffe]));

  const pem = await cli(['bundle', 'list', '--trust-domain', 'export-partner.org']);
  assertOk(pem);
  assert.match(pem.out, /^-----BEGIN CERTIFICATE-----\n/, 'no count or banner before the certificates');
  assert.deepEqual(pemToDerList(pem.out), bundleFromSpiffeJson('export-partner.org', spiffe).x509Authorities);

  const doc = await cli(['bundle', 'list', '-id', 'spiffe://export-partner.org', '-format', 'spiffe']);
  assertOk(doc);
  const exported = bundleFromSpiffeJson('export-partner.org', doc.out);
  assert.equal(exported.jwtAuthorities.length, bundleFromSpiffeJson('export-partner.org', spiffe).jwtAuthorities.length);
  const file = path.join(dir, 'export-partner.json');
  fs.writeFileSync(file, doc.out);
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'export-copy.org', '--path', file]));
  assert.deepEqual(pemToDerList((await cli(['bundle', 'list', '--trust-domain', 'export-copy.org'])).out), pemToDerList(pem.out));
});

test('bundle set accepts a SPIFFE bundle with JWT keys', async () => {
  const spiffe = partnerBundle('jwt-partner.org', 'spiffe');
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'jwt-partner.org', '--format', 'spiffe', '--data', spiffe]));
  const shown = await cli(['bundle', 'list', '--trust-domain', 'jwt-partner.org', '--format', 'spiffe']);
  assertOk(shown);
  assert.match(shown.out, /"use": "jwt-svid"/);
});

test('federation delete of a relationship whose endpoint never answered does not promise a bundle to delete', async () => {
  // Port 1 on loopback: nothing answers, so no bundle of never-polled.example is ever stored.
  const created = await cli(['federation', 'create', '--trust-domain', 'never-polled.example', '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_web']);
  assert.equal(created.code, 0, created.err);
  const deleted = await cli(['federation', 'delete', '--trust-domain', 'never-polled.example']);
  assertOk(deleted);
  assert.equal(deleted.out, 'Federation relationship with never-polled.example deleted; no bundle of it is stored.\n');
  // The server's log says the same, not that a bundle stays stored.
  const logged = serverOutput.split('\n').filter((l) => l.includes('"trustDomain":"never-polled.example"') && l.includes('federation relationship deleted'));
  assert.equal(logged.length, 1, serverOutput);
  assert.match(logged[0]!, /"bundleStored":false.*"msg":"federation relationship deleted; no bundle of it is stored"/);
  assertError(await cli(['bundle', 'delete', '--trust-domain', 'never-polled.example']), /^Error: NotFound: /);

  // --output json is spire-server's BatchDeleteFederationRelationshipResponse.
  assertOk(await cli(['federation', 'create', '--trust-domain', 'never-polled.example', '--bundle-endpoint-url', 'https://127.0.0.1:1/', '--bundle-endpoint-profile', 'https_web']));
  const deletedJson = await cli(['federation', 'delete', '--trust-domain', 'never-polled.example', '--output', 'json']);
  assertOk(deletedJson);
  assert.deepEqual(JSON.parse(deletedJson.out), { results: [{ status: { code: 0, message: 'OK' }, trust_domain: 'never-polled.example' }] });
});

test('federation update --bundle-path stores the bundle as create\'s does, and a file that holds none is refused naming it', async () => {
  const url = 'https://127.0.0.1:1/';
  const relationship = [
    '--trust-domain', 'moved-partner.org', '--bundle-endpoint-url', url, '--bundle-endpoint-profile', 'https_spiffe',
    '--endpoint-spiffe-id', 'spiffe://moved-partner.org/spire/server',
  ];
  assertOk(await cli(['federation', 'create', ...relationship]));
  assertError(await cli(['bundle', 'list', '--trust-domain', 'moved-partner.org']), /^Error: NotFound: /);

  const notPem = path.join(dir, 'moved-notes.txt');
  fs.writeFileSync(notPem, 'these are not certificates\n');
  const escaped = notPem.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  assertError(await cli(['federation', 'update', ...relationship, '--bundle-path', notPem]), new RegExp(`^Error: InvalidArgument: bundle file ${escaped}: no PEM "CERTIFICATE" block found$`));
  assertError(await cli(['federation', 'update', ...relationship, '--bundle-format', 'pem']), /^Error: InvalidArgument: --bundle-format goes with --bundle-path$/);
  assertError(await cli(['bundle', 'list', '--trust-domain', 'moved-partner.org']), /^Error: NotFound: /);

  // SPIRE's spelling; the bundle is the one later fetches of the https_spiffe endpoint are authenticated by.
  const seedPem = partnerBundle('moved-partner.org');
  const seedFile = path.join(dir, 'moved-partner.pem');
  fs.writeFileSync(seedFile, seedPem);
  const updated = await cli(['federation', 'update', ...relationship, '-trustDomainBundlePath', seedFile, '-trustDomainBundleFormat', 'pem']);
  assertOk(updated);
  assert.match(updated.out, /^Federation relationship with moved-partner\.org updated\.\n/);
  const stored = await cli(['bundle', 'list', '--trust-domain', 'moved-partner.org']);
  assertOk(stored);
  assert.deepEqual(pemToDerList(stored.out), pemToDerList(seedPem));
  const logged = serverOutput.split('\n').filter((l) => l.includes('"trustDomain":"moved-partner.org"') && l.includes('federation relationship updated'));
  assert.match(logged.at(-1) ?? '', /"seeded":true/, serverOutput);

  assertOk(await cli(['federation', 'delete', '--trust-domain', 'moved-partner.org']));
  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'moved-partner.org']));
});

test('federation create|update from flags: https_spiffe without --endpoint-spiffe-id, or https_web with it, is refused naming the flags, not the config keys', async () => {
  const base = ['--trust-domain', 'flags-partner.org', '--bundle-endpoint-url', 'https://127.0.0.1:1/'];
  const needsId =
    /^Error: InvalidArgument: --bundle-endpoint-profile https_spiffe needs --endpoint-spiffe-id: the SPIFFE ID of the SVID flags-partner\.org's bundle endpoint presents \(spiffe:\/\/flags-partner\.org\/spire\/server for a SPIRE server, spiffe:\/\/flags-partner\.org\/meshid\/server for a meshid-server\)$/;
  assertError(await cli(['federation', 'create', ...base, '--bundle-endpoint-profile', 'https_spiffe']), needsId);
  // SPIRE's spellings are answered alike: the long flag is the one --help lists.
  assertError(await cli(['federation', 'create', ...base, '-bundleEndpointProfile', 'https_spiffe']), needsId);
  const webWithId = /^Error: InvalidArgument: --endpoint-spiffe-id is for --bundle-endpoint-profile https_spiffe; https_web authenticates the URL's host name with the web PKI: leave it out$/;
  assertError(await cli(['federation', 'create', ...base, '--bundle-endpoint-profile', 'https_web', '--endpoint-spiffe-id', 'spiffe://flags-partner.org/spire/server']), webWithId);
  assertError(await cli(['federation', 'show', '--trust-domain', 'flags-partner.org']), /^Error: NotFound: /);

  assertOk(await cli(['federation', 'create', ...base, '--bundle-endpoint-profile', 'https_web']));
  assertError(await cli(['federation', 'update', ...base, '--bundle-endpoint-profile', 'https_spiffe']), needsId);
  assertError(await cli(['federation', 'update', ...base, '--bundle-endpoint-profile', 'https_web', '--endpoint-spiffe-id', 'spiffe://flags-partner.org/spire/server']), webWithId);
  assert.match((await cli(['federation', 'show', '--trust-domain', 'flags-partner.org'])).out, /^Bundle endpoint profile +: https_web$/m, 'left as it was');
  assertOk(await cli(['federation', 'delete', '--trust-domain', 'flags-partner.org']));

  // The admin API's own answer still names its field, which is what an API caller sets.
  const admin = new AdminClient(socket);
  try {
    await assert.rejects(
      admin.call('Federation', 'CreateFederationRelationship', {
        relationship: { trust_domain: 'flags-partner.org', bundle_endpoint_url: 'https://127.0.0.1:1/', bundle_endpoint_profile: 'https_spiffe' },
      }),
      (err: Error) => isMeshidError(err, 'invalid_argument') && /: https_spiffe needs endpoint_spiffe_id, the SPIFFE ID of the endpoint's server$/.test(err.message),
    );
  } finally {
    admin.close();
  }
});

test("a bundle set for one trust domain holding another's CA (this server's own bundle, say) is stored, with a warning naming the root and the way back", async () => {
  const own = (await cli(['bundle', 'show'])).out;
  const ownFile = path.join(dir, 'own-as-partner.pem');
  fs.writeFileSync(ownFile, own);
  const warning =
    `Warning: the bundle of mixed-up.org holds a CA of another trust domain (root 1 carries spiffe://${TD}), trusted for ` +
    `mixed-up.org all the same: if it is ${TD}'s bundle, it was set for the wrong trust domain, and ` +
    '"meshid-server bundle delete --trust-domain mixed-up.org" takes it out\n';
  const set = await cli(['bundle', 'set', '--trust-domain', 'mixed-up.org', '--path', ownFile]);
  assert.equal(set.code, 0, set.err);
  assert.match(set.out, /^Bundle set for mixed-up\.org/);
  assert.equal(set.err, warning);
  assert.match(serverOutput, /"trustDomain":"mixed-up\.org".*"the federated bundle set holds a CA of another trust domain"/);
  // The same through federation create's --bundle-path, which stores it as the relationship's seed.
  const seeded = await cli([
    'federation', 'create', '--trust-domain', 'mixed-up.org', '--bundle-endpoint-url', 'https://127.0.0.1:1/',
    '--bundle-endpoint-profile', 'https_web', '--bundle-path', ownFile,
  ]);
  assert.equal(seeded.code, 0, seeded.err);
  assert.equal(seeded.err, warning);
  assert.match(serverOutput, /"trustDomain":"mixed-up\.org".*"the relationship's bundle holds a CA of another trust domain"/);
  assertOk(await cli(['federation', 'delete', '--trust-domain', 'mixed-up.org']));
  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'mixed-up.org']));
  // A partner's own root carries no other domain's ID: no warning.
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'mixed-up.org'], { stdin: partnerBundle('mixed-up.org') }));
});

test('a relationship whose https_spiffe endpoint is of a third trust domain with no stored bundle is made, with a warning naming the bundle to set; none once it is stored', async () => {
  const create = [
    'federation', 'create', '--trust-domain', 'hosted.org', '--bundle-endpoint-url', 'https://127.0.0.1:1/',
    '--bundle-endpoint-profile', 'https_spiffe', '--endpoint-spiffe-id', 'spiffe://host.org/bundle-endpoint',
  ];
  const warned = (): string[] =>
    serverOutput.split('\n').filter((l) => l.includes('"trustDomain":"hosted.org"') && l.includes('"endpointTrustDomain":"host.org"'));
  assertOk(await cli(create));
  assert.equal(warned().length, 1, serverOutput);
  assert.match(warned()[0]!, /"level":"?(40|warn)"?/);
  assert.match(warned()[0]!, /none is stored: every fetch fails until \\"meshid-server bundle set --trust-domain host\.org\\" stores it/);
  assertOk(await cli(['federation', 'delete', '--trust-domain', 'hosted.org']));

  assertOk(await cli(['bundle', 'set', '--trust-domain', 'host.org'], { stdin: partnerBundle('host.org') }));
  assertOk(await cli(create));
  assert.equal(warned().length, 1, 'no second warning once host.org has a bundle');
  assertOk(await cli(['federation', 'delete', '--trust-domain', 'hosted.org']));
  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'host.org']));
});

test('a SPIFFE bundle document one of whose keys is left out is stored with a warning naming that key and why, from bundle set and federation create --bundle-path, and in the server log', async () => {
  const doc = JSON.parse(partnerBundle('half-read.org', 'spiffe')) as { keys: Array<Record<string, unknown>> };
  // A second root whose x5c is no standard base64 (a publisher's base64url, say): ignored, the rest stored.
  doc.keys.push({ ...doc.keys[0]!, x5c: ['not-base64_url!'] });
  const file = path.join(dir, 'half-read.json');
  fs.writeFileSync(file, JSON.stringify(doc));
  const warning = `Warning: SPIFFE bundle for half-read.org: keys[${doc.keys.length - 1}]: x5c[0] is not standard base64; the key is ignored\n`;

  const set = await cli(['bundle', 'set', '--trust-domain', 'half-read.org', '--path', file]);
  assert.equal(set.code, 0, set.err);
  assert.match(set.out, /^Bundle set for half-read\.org/);
  assert.equal(set.err, warning);
  assert.match(serverOutput, /"trustDomain":"half-read\.org","ignored":\["SPIFFE bundle for half-read\.org: keys\[\d\]: x5c\[0\] is not standard base64; the key is ignored"\].*"the federated bundle set holds keys meshid leaves out or reads with a flaw, as each line of ignored says; the rest is stored"/);
  const listed = await cli(['bundle', 'list', '--trust-domain', 'half-read.org']);
  assert.equal(pemToDerList(listed.out).length, 1, 'the other root is stored');

  const created = await cli([
    'federation', 'create', '--trust-domain', 'half-read.org', '--bundle-endpoint-url', 'https://127.0.0.1:1/',
    '--bundle-endpoint-profile', 'https_web', '--bundle-path', file,
  ]);
  assert.equal(created.code, 0, created.err);
  assert.equal(created.err, warning);
  assert.match(serverOutput, /"trustDomain":"half-read\.org","ignored":\[.*"the relationship's bundle holds keys meshid leaves out or reads with a flaw, as each line of ignored says; the rest is stored"/);
  assertOk(await cli(['federation', 'delete', '--trust-domain', 'half-read.org']));
  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'half-read.org']));
});
