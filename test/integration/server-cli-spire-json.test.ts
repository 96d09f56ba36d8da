/**
 * `--output json` of the commands meshid-server shares with spire-server, against a real server process: each prints
 * the protojson spire-server prints (spire-api-sdk's messages: proto field names, every field present, int64 as
 * strings, bytes as base64, SPIFFE IDs as {trust_domain, path}), so an operator's script written for spire-server
 * (`jq '.entries[].spiffe_id.path'`) reads it unchanged. One test per command family.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { attestAgent } from '../support/node-api-client.js';
import { startServerProcess, type CliResult, type ServerProcess } from '../support/server-process.js';
import { tempDir } from '../support/server-kit.js';

const TD = 'example.org';
/** spire.api.types.Entry's fields, as protojson names them. */
const ENTRY_FIELDS = [
  'admin', 'created_at', 'dns_names', 'downstream', 'expires_at', 'federates_with', 'hint', 'id', 'jwt_svid_ttl', 'parent_id',
  'revision_number', 'selectors', 'spiffe_id', 'store_svid', 'x509_svid_ttl',
];
const AGENT_FIELDS = ['agent_version', 'attestation_type', 'banned', 'can_reattest', 'id', 'selectors', 'x509svid_expires_at', 'x509svid_serial_number'];
const BUNDLE_FIELDS = ['jwt_authorities', 'refresh_hint', 'sequence_number', 'trust_domain', 'wit_authorities', 'x509_authorities'];
const OK = { code: 0, message: 'OK' };

let dir: string;
let cleanup: () => void;
let server: ServerProcess;

before(async () => {
  ({ dir, cleanup } = tempDir('meshid-spire-json-'));
  server = await startServerProcess(dir);
});

after(async () => {
  await server.stop();
  cleanup();
});

/** Runs a command that must succeed quietly and returns its parsed stdout. */
async function json(args: string[]): Promise<Record<string, any>> {
  const r: CliResult = await server.cli([...args, '-output', 'json']);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.err}`);
  return JSON.parse(r.out) as Record<string, any>;
}

const keys = (o: object): string[] => Object.keys(o).sort();
const isInt64 = (v: unknown): boolean => typeof v === 'string' && /^-?\d+$/.test(v);

test('entry create, show, count, update and delete print spire-server\'s Batch*EntryResponse, ListEntriesResponse and CountEntriesResponse', async () => {
  const created = await json([
    'entry', 'create', '-spiffeID', `spiffe://${TD}/json/web`, '-parentID', `spiffe://${TD}/json/node`, '-selector', 'unix:uid:1000',
    '-x509SVIDTTL', '600', '-dnsName', 'web.local',
  ]);
  assert.deepEqual(keys(created), ['results']);
  assert.deepEqual(created['results'][0].status, OK);
  const entry = created['results'][0].entry;
  assert.deepEqual(keys(entry), ENTRY_FIELDS);
  assert.deepEqual(entry.spiffe_id, { trust_domain: TD, path: '/json/web' });
  assert.deepEqual(entry.parent_id, { trust_domain: TD, path: '/json/node' });
  assert.deepEqual(entry.selectors, [{ type: 'unix', value: 'uid:1000' }]);
  assert.equal(entry.x509_svid_ttl, 600, 'int32 stays a number');
  assert.equal(entry.jwt_svid_ttl, 0);
  assert.deepEqual(entry.dns_names, ['web.local']);
  assert.equal(entry.expires_at, '0');
  assert.ok(isInt64(entry.revision_number) && isInt64(entry.created_at) && Number(entry.created_at) > 0, JSON.stringify(entry));
  assert.equal(entry.store_svid, false);

  const shown = await json(['entry', 'show', '-spiffeID', `spiffe://${TD}/json/web`]);
  assert.deepEqual(keys(shown), ['entries', 'next_page_token']);
  assert.equal(shown['next_page_token'], '');
  // What `jq '.entries[].spiffe_id.path'` reads.
  assert.deepEqual(shown['entries'].map((e: { spiffe_id: { path: string } }) => e.spiffe_id.path), ['/json/web']);
  assert.deepEqual(shown['entries'][0], entry);
  assert.deepEqual(await json(['entry', 'show', '-entryID', entry.id]), shown);
  assert.deepEqual(await json(['entry', 'count', '-spiffeID', `spiffe://${TD}/json/web`]), { count: 1 });

  const updated = await json(['entry', 'update', '-entryID', entry.id, '-hint', 'blue']);
  assert.deepEqual(updated['results'][0].status, OK);
  assert.deepEqual(keys(updated['results'][0].entry), ENTRY_FIELDS);
  assert.equal(updated['results'][0].entry.hint, 'blue');
  assert.equal(updated['results'][0].entry.revision_number, String(Number(entry.revision_number) + 1));

  // A refused entry is a result with its status and the entry as sent, as spire-server fills it in.
  const twin = await server.cli([
    'entry', 'create', '-spiffeID', `spiffe://${TD}/json/web`, '-parentID', `spiffe://${TD}/json/node`, '-selector', 'unix:uid:1000', '-output', 'json',
  ]);
  assert.equal(twin.code, 1);
  const refused = (JSON.parse(twin.out) as { results: Array<{ status: { code: number }; entry: object }> }).results[0]!;
  assert.equal(refused.status.code, 6);
  assert.deepEqual(keys(refused.entry), ENTRY_FIELDS);

  assert.deepEqual(await json(['entry', 'delete', '-entryID', entry.id]), { results: [{ status: OK, id: entry.id }] });
});

test('agent list, show, count, evict and ban print spire-server\'s ListAgentsResponse, Agent, CountAgentsResponse and Empty', async () => {
  const roots = (await server.cli(['bundle', 'show'])).out;
  const agent = await attestAgent(server, roots);
  const listed = await json(['agent', 'list']);
  assert.deepEqual(keys(listed), ['agents', 'next_page_token']);
  const [a] = listed['agents'].filter((x: { id: { path: string } }) => `spiffe://${TD}${x.id.path}` === agent.id);
  assert.ok(a, JSON.stringify(listed));
  assert.deepEqual(keys(a), AGENT_FIELDS);
  assert.deepEqual(a.id, { trust_domain: TD, path: agent.id.slice(`spiffe://${TD}`.length) });
  assert.equal(a.attestation_type, 'join_token');
  const cert = new X509Certificate(agent.chain[0]!);
  assert.equal(a.x509svid_serial_number, BigInt(`0x${cert.serialNumber}`).toString(10), 'the serial in decimal, as SPIRE prints it');
  assert.equal(a.x509svid_expires_at, String(Math.floor(Date.parse(cert.validTo) / 1000)));
  assert.deepEqual(a.selectors, [{ type: 'meshid', value: 'datacenter:east' }]);
  assert.deepEqual([a.banned, a.can_reattest, a.agent_version], [false, false, '']);

  assert.deepEqual(await json(['agent', 'show', '-spiffeID', agent.id]), a);
  assert.deepEqual(await json(['agent', 'count', '-attestationType', 'join_token']), { count: listed['agents'].length });
  assert.deepEqual(await json(['agent', 'ban', '-spiffeID', agent.id]), {});
  assert.equal((await json(['agent', 'show', '-spiffeID', agent.id]))['banned'], true);
  assert.deepEqual(await json(['agent', 'evict', '-spiffeID', agent.id]), {});
});

test('bundle show, list, count, set and delete print spire-server\'s Bundle, ListFederatedBundlesResponse, CountBundlesResponse and Batch*FederatedBundleResponse', async () => {
  const pem = (await server.cli(['bundle', 'show'])).out;
  const own = await json(['bundle', 'show']);
  assert.deepEqual(keys(own), BUNDLE_FIELDS);
  assert.equal(own['trust_domain'], TD);
  assert.deepEqual(own['x509_authorities'], pemToDerList(pem).map((der) => ({ asn1: der.toString('base64'), tainted: false })));
  assert.equal(own['jwt_authorities'].length, 1);
  const jwt = own['jwt_authorities'][0];
  assert.deepEqual(keys(jwt), ['expires_at', 'key_id', 'public_key', 'tainted']);
  assert.ok(isInt64(jwt.expires_at) && Number(jwt.expires_at) > Date.now() / 1000, `the key's expiry, not 0: ${jwt.expires_at}`);
  assert.ok(isInt64(own['refresh_hint']) && isInt64(own['sequence_number']));
  assert.deepEqual(own['wit_authorities'], []);

  const file = path.join(dir, 'partner.pem');
  fs.writeFileSync(file, pem);
  const set = await json(['bundle', 'set', '-id', 'spiffe://json-partner.org', '-path', file]);
  assert.deepEqual(keys(set), ['results']);
  assert.deepEqual(set['results'][0].status, OK);
  assert.deepEqual(keys(set['results'][0].bundle), BUNDLE_FIELDS);
  assert.equal(set['results'][0].bundle.trust_domain, 'json-partner.org');

  const listed = await json(['bundle', 'list']);
  assert.deepEqual(keys(listed), ['bundles', 'next_page_token']);
  assert.deepEqual(listed['bundles'].map((b: { trust_domain: string }) => b.trust_domain), ['json-partner.org']);
  assert.deepEqual(await json(['bundle', 'list', '-id', 'spiffe://json-partner.org']), listed['bundles'][0], '-id prints the one Bundle');
  assert.deepEqual(await json(['bundle', 'count']), { count: 2 }, 'every bundle, the own one included, as spire-server counts them');
  assert.deepEqual(await json(['bundle', 'delete', '-id', 'spiffe://json-partner.org']), { results: [{ status: OK, trust_domain: 'json-partner.org' }] });
  assert.equal((await server.cli(['bundle', 'count'])).out, '1 bundle\n');
});

test('a tainted root is marked tainted in bundle show, as spire-server marks it', async () => {
  const { dir: own, cleanup: clean } = tempDir('meshid-spire-json-taint-');
  const s = await startServerProcess(own);
  try {
    assert.equal((await s.cli(['ca', 'rotate-root'])).code, 0);
    const journal = JSON.parse((await s.cli(['ca', 'show', '--output', 'json'])).out) as { authorities: Array<{ id: string; kind: string; state: string; fingerprint: string }> };
    const first = journal.authorities.find((a) => a.kind === 'root' && a.state === 'active')!;
    assert.equal((await s.cli(['ca', 'taint', '--id', first.id])).code, 0);
    const shown = JSON.parse((await s.cli(['bundle', 'show', '-output', 'json'])).out) as { x509_authorities: Array<{ asn1: string; tainted: boolean }> };
    const fingerprint = (b64: string): string => new X509Certificate(Buffer.from(b64, 'base64')).fingerprint256.replace(/:/g, '').toLowerCase();
    assert.deepEqual(shown.x509_authorities.map((a) => [fingerprint(a.asn1) === first.fingerprint, a.tainted]).sort(), [[false, false], [true, true]]);
  } finally {
    await s.stop();
    clean();
  }
});

test('federation create, list, show, update, refresh and delete print spire-server\'s trustdomain API answers', async () => {
  const file = path.join(dir, 'fed-partner.pem');
  fs.writeFileSync(file, (await server.cli(['bundle', 'show'])).out);
  const url = 'https://127.0.0.1:1/';
  const created = await json([
    'federation', 'create', '-trustDomain', 'fed-partner.org', '-bundleEndpointURL', url, '-bundleEndpointProfile', 'https_web', '-trustDomainBundlePath', file,
  ]);
  assert.deepEqual(keys(created), ['results']);
  assert.deepEqual(created['results'][0].status, OK);
  const relationship = created['results'][0].federation_relationship;
  assert.deepEqual(keys(relationship), ['bundle_endpoint_url', 'https_web', 'trust_domain', 'trust_domain_bundle']);
  assert.deepEqual([relationship.trust_domain, relationship.bundle_endpoint_url, relationship.https_web], ['fed-partner.org', url, {}]);
  assert.deepEqual(keys(relationship.trust_domain_bundle), BUNDLE_FIELDS);

  const listed = await json(['federation', 'list']);
  assert.deepEqual(keys(listed), ['federation_relationships', 'next_page_token']);
  assert.deepEqual(listed['federation_relationships'], [relationship]);
  assert.deepEqual(await json(['federation', 'show', '-trustDomain', 'fed-partner.org']), relationship);

  const updated = await json([
    'federation', 'update', '-trustDomain', 'fed-partner.org', '-bundleEndpointURL', url, '-bundleEndpointProfile', 'https_spiffe',
    '-endpointSpiffeID', 'spiffe://fed-partner.org/server',
  ]);
  assert.deepEqual(updated['results'][0].status, OK);
  assert.deepEqual(updated['results'][0].federation_relationship.https_spiffe, { endpoint_spiffe_id: 'spiffe://fed-partner.org/server' });
  assert.equal(updated['results'][0].federation_relationship.https_web, undefined, 'the profile is a oneof');

  // Refused: its status only, as spire-server prints a refused relationship, and the error line.
  const refused = await server.cli(['federation', 'update', '-trustDomain', 'nowhere.org', '-bundleEndpointURL', url, '-bundleEndpointProfile', 'https_web', '-output', 'json']);
  assert.equal(refused.code, 1);
  const status = (JSON.parse(refused.out) as { results: Array<Record<string, unknown>> }).results;
  assert.deepEqual(status.map((r) => keys(r)), [['status']]);
  assert.equal((status[0]!['status'] as { code: number }).code, 5);

  assert.deepEqual(await json(['federation', 'delete', '-id', 'fed-partner.org']), { results: [{ status: OK, trust_domain: 'fed-partner.org' }] });
});

test('token generate, jwt mint and x509 mint print spire-server\'s JoinToken, MintJWTSVIDResponse and mint result', async () => {
  const token = await json(['token', 'generate']);
  assert.deepEqual(keys(token), ['expires_at', 'value']);
  assert.ok(isInt64(token['expires_at']) && token['value'].length >= 20);

  const minted = await json(['jwt', 'mint', '-spiffeID', `spiffe://${TD}/json/tool`, '-audience', 'db']);
  assert.deepEqual(keys(minted), ['svid']);
  const svid = minted['svid'];
  assert.deepEqual(keys(svid), ['expires_at', 'hint', 'id', 'issued_at', 'token']);
  assert.deepEqual(svid.id, { trust_domain: TD, path: '/json/tool' });
  const claims = JSON.parse(Buffer.from(svid.token.split('.')[1], 'base64url').toString()) as { exp: number; iat: number };
  assert.deepEqual([svid.expires_at, svid.issued_at], [String(claims.exp), String(claims.iat)]);

  const x509 = await json(['x509', 'mint', '-spiffeID', `spiffe://${TD}/json/tool`]);
  assert.deepEqual(keys(x509), ['private_key', 'root_cas', 'x509_svid']);
  const leaf = new X509Certificate(Buffer.from(x509['x509_svid'][0], 'base64'));
  assert.equal(leaf.subjectAltName, `URI:spiffe://${TD}/json/tool`);
  assert.deepEqual(x509['root_cas'], pemToDerList((await server.cli(['bundle', 'show'])).out).map((d) => d.toString('base64')));
  assert.ok(leaf.checkPrivateKey(createPrivateKey({ key: Buffer.from(x509['private_key'], 'base64'), format: 'der', type: 'pkcs8' })));
});

test('bundle set, bundle delete and federation delete refused print their Batch… result with the refusal\'s code, as entry and federation create do', async () => {
  for (const [args, fields] of [
    [['bundle', 'delete', '-id', 'spiffe://never-stored.org'], { trust_domain: 'never-stored.org' }],
    [['federation', 'delete', '-id', 'never-related.org'], { trust_domain: 'never-related.org' }],
    [['bundle', 'set', '-id', 'spiffe://bad-bundle.org', '-data', 'not a bundle'], {}],
  ] as const) {
    const r = await server.cli([...args, '-output', 'json']);
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.err}`);
    const results = (JSON.parse(r.out) as { results: Array<{ status: { code: number; message: string } }> }).results;
    assert.equal(results.length, 1, r.out);
    const { status, ...rest } = results[0]!;
    assert.equal(status.code, args[0] === 'bundle' && args[1] === 'set' ? 3 : 5, r.out);
    assert.deepEqual(rest, fields);
    assert.match(r.err, /^Error: /);
    assert.ok(r.err.includes(status.message), 'the error line says what the result says');
  }
});
