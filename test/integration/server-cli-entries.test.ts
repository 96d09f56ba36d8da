/**
 * meshid-server's CLI against a real server process, for registration entries (entry create, show, update, delete,
 * and create --data files): every admin command runs as a child process, as an operator or a script would run it, and
 * its stdout, stderr and exit status are checked. (server-cli.test.ts has health checks, empty lists, unknown flags and
 * the key types bundle set takes.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import path from 'node:path';
import { AdminClient } from '../../src/server/cli/admin-client.js';
import { assertError, assertOk, cli, createEntry, dir, field, partnerBundle, serverOutput, socket, startServerCliFixture, TD, type Result } from '../support/server-cli-fixture.js';

startServerCliFixture('meshid-server-cli-entries-');

test('entry create prints the entry with its ID, TTLs and one line per selector', async () => {
  const r = await cli([
    'entry', 'create', '--spiffe-id', `spiffe://${TD}/web`, '--parent-id', `spiffe://${TD}/agent-1`,
    '--selector', 'unix:uid:1000', '--selector', 'unix:gid:0', '--x509-svid-ttl', '1h', '--jwt-svid-ttl=120', '--dns', 'web.local',
  ]);
  assertOk(r);
  assert.match(field(r.out, 'Entry ID'), /^\S+$/);
  assert.equal(field(r.out, 'SPIFFE ID'), `spiffe://${TD}/web`);
  assert.equal(field(r.out, 'Parent ID'), `spiffe://${TD}/agent-1`);
  assert.match(field(r.out, 'Revision'), /^\d+$/);
  assert.equal(field(r.out, 'X509-SVID TTL'), '3600');
  assert.equal(field(r.out, 'JWT-SVID TTL'), '120');
  assert.equal(field(r.out, 'DNS name'), 'web.local');
  assert.deepEqual(r.out.match(/^Selector *: .*$/gm)?.map((l) => l.replace(/^Selector *: /, '')).sort(), ['unix:gid:0', 'unix:uid:1000']);
});

test("entry create accepts spire-server's flag spellings", async () => {
  const r = await cli([
    'entry', 'create', '-spiffeID', `spiffe://${TD}/spire-style`, '-parentID', `spiffe://${TD}/agent-1`,
    '-selector', 'unix:uid:1001', '-x509SVIDTTL', '600', '-jwtSVIDTTL', '60', '-socketPath', socket, '-output', 'json',
  ]);
  assertOk(r);
  const doc = JSON.parse(r.out) as { results: Array<{ status: { code: number }; entry: Record<string, unknown> }> };
  assert.equal(doc.results[0]!.status.code, 0);
  assert.deepEqual(doc.results[0]!.entry['spiffe_id'], { trust_domain: TD, path: '/spire-style' });
  assert.equal(doc.results[0]!.entry['x509_svid_ttl'], 600);
  assert.equal(doc.results[0]!.entry['jwt_svid_ttl'], 60);
});

test("--admin and --downstream are stored as SPIRE stores them, with a note on stderr that meshid grants nothing for them", async () => {
  const created = await cli(['entry', 'create', '-spiffeID', `spiffe://${TD}/admin-flagged`, '-parentID', `spiffe://${TD}/agent-1`, '-selector', 'unix:uid:1002', '-admin', '-output', 'json']);
  assert.equal(created.code, 0, created.err);
  assert.equal(created.err, "Note: admin is recorded, as SPIRE's -admin, but grants nothing: meshid's admin API is only on the server's local socket\n");
  const entry = (JSON.parse(created.out) as { results: Array<{ entry: { id: string; admin: boolean } }> }).results[0]!.entry;
  assert.equal(entry.admin, true);
  const updated = await cli(['entry', 'update', '--entry-id', entry.id, '--downstream']);
  assert.equal(updated.code, 0, updated.err);
  assert.equal(updated.err, "Note: downstream is recorded, as SPIRE's -downstream, but grants nothing: meshid has no nested servers\n");
  assertOk(await cli(['entry', 'update', '--entry-id', entry.id, '--hint', 'quiet']));
});

test('a workload selector of another type than unix is stored, with a note on stderr saying what was probably meant; node aliases take any selector', async () => {
  const created = await cli(['entry', 'create', '--spiffe-id', `spiffe://${TD}/typo`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'uid:1003', '--selector', 'k8s:ns:web']);
  assert.equal(created.code, 0, created.err);
  const id = field(created.out, 'Entry ID');
  assert.equal(
    created.err,
    `Note: entry ${id} selector k8s:ns:web can match no workload: meshid-agent gives workloads unix: selectors only\n` +
      `Note: entry ${id} selector uid:1003 can match no workload: meshid-agent gives workloads unix: selectors only; did you mean unix:uid:1003?\n`,
  );
  const fixed = await cli(['entry', 'update', '--entry-id', id, '--selector', 'unix:uid:1003']);
  assert.equal(fixed.code, 0, fixed.err);
  assert.equal(fixed.err, '');
  const alias = await cli(['entry', 'create', '--node', '--spiffe-id', `spiffe://${TD}/node/any`, '--selector', 'k8s_psat:cluster:east']);
  assert.equal(alias.code, 0, alias.err);
  assert.equal(alias.err, '');
});

test('an entry whose first DNS name is over 64 characters is stored, with a note on stderr and a server warning that its SVIDs get no subject CN', async () => {
  const long = `${'a'.repeat(56)}.svc.test`;
  const note = (id: string): string =>
    `Note: entry ${id} has a first DNS name of 65 characters (${long}): its X509-SVIDs get no subject CN, which holds at most 64; ` +
    'the name stays a DNS SAN. If a tool reads the CN (PostgreSQL, Kafka, nginx), put a name of at most 64 characters first\n';
  const warned = (id: string): number =>
    serverOutput.split('\n').filter((l) => l.includes(`"entryId":"${id}"`) && l.includes('its X509-SVIDs get no CN')).length;
  const created = await cli(['entry', 'create', '--spiffe-id', `spiffe://${TD}/long-cn`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:1010', '--dns', long, '--dns', 'short.local']);
  assert.equal(created.code, 0, created.err);
  const id = field(created.out, 'Entry ID');
  assert.equal(created.err, note(id));
  assert.equal(warned(id), 1, serverOutput);
  // A short name first: a CN again, and nothing to say; a change of other fields says nothing either.
  assertOk(await cli(['entry', 'update', '--entry-id', id, '--dns', 'short.local', '--dns', long]));
  assertOk(await cli(['entry', 'update', '--entry-id', id, '--hint', 'long-cn']));
  const back = await cli(['entry', 'update', '--entry-id', id, '--dns', long]);
  assert.equal(back.code, 0, back.err);
  assert.equal(back.err, note(id));
  assert.equal(warned(id), 2, serverOutput);
  const file = path.join(dir, 'long-cn.json');
  fs.writeFileSync(file, JSON.stringify({ entries: [{ spiffe_id: `spiffe://${TD}/long-cn-file`, parent_id: `spiffe://${TD}/agent-1`, selectors: [{ type: 'unix', value: 'uid:1011' }], dns_names: [long] }] }));
  const fromFile = await cli(['entry', 'create', '--data', file]);
  assert.equal(fromFile.code, 0, fromFile.err);
  assert.equal(fromFile.err, note(field(fromFile.out, 'Entry ID')));
});

test('a node alias given unix selectors (a workload entry re-parented to the server, or created so) is stored with a warning saying it matches no agent without such a token', async () => {
  const server = `spiffe://${TD}/meshid/server`;
  const warning = (id: string, selectors: string[]): string =>
    `Warning: entry ${id} is a node alias (parent ${server}) with the workload selector${selectors.length === 1 ? '' : 's'} ${selectors.join(', ')}: ` +
    'it issues no SVID to a workload, and matches only agents that attested with a join token generated with ' +
    `${selectors.map((u) => `--selector ${u}`).join(' ')} (agents carry meshid:datacenter:<dc> and their token's selectors, no unix: ones of their own); ` +
    'for a workload entry, give an agent or node alias as --parent-id\n';
  const id = await createEntry(['--spiffe-id', `spiffe://${TD}/reparented`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:1004', '--selector', 'unix:gid:1004']);
  const reparented = await cli(['entry', 'update', '--entry-id', id, '--parent-id', server]);
  assert.equal(reparented.code, 0, reparented.err);
  assert.equal(field(reparented.out, 'Parent ID'), server, 'stored as asked: a warning, not a refusal');
  assert.equal(reparented.err, warning(id, ['unix:gid:1004', 'unix:uid:1004']));
  const created = await cli(['entry', 'create', '--node', '--spiffe-id', `spiffe://${TD}/node/by-uid`, '--selector', 'unix:uid:1005', '--output', 'json']);
  assert.equal(created.code, 0, created.err);
  const createdId = (JSON.parse(created.out) as { results: Array<{ entry: { id: string } }> }).results[0]!.entry.id;
  assert.equal(created.err, warning(createdId, ['unix:uid:1005']));
  // What an agent does carry, and a change that leaves the selectors and parent alone, say nothing.
  const datacenter = await cli(['entry', 'create', '--node', '--spiffe-id', `spiffe://${TD}/node/east-alias`, '--selector', 'meshid:datacenter:east']);
  assertOk(datacenter);
  assertOk(await cli(['entry', 'update', '--entry-id', createdId, '--hint', 'quiet']));
});

test('a node alias given a meshid: selector no agent carries (meshid:dc:east, meshid:datacenter:East) is stored with a warning naming the one agents carry', async () => {
  const warning = (id: string, value: string, meant: string): string =>
    `Warning: entry ${id} is a node alias with the selector meshid:${value}, which no agent carries: ` +
    `agents carry meshid:datacenter:<dc> (a lowercase datacenter name) and their join token's selectors, none of type meshid; did you mean meshid:datacenter:${meant}?\n`;
  for (const [value, meant] of [['dc:east', 'east'], ['datacenter:East', 'east']] as const) {
    const created = await cli(['entry', 'create', '--node', '--spiffe-id', `spiffe://${TD}/node/typo-${meant}-${value.length}`, '--selector', `meshid:${value}`]);
    assert.equal(created.code, 0, created.err);
    assert.equal(created.err, warning(field(created.out, 'Entry ID'), value, meant));
  }
  const fine = await cli(['entry', 'create', '--node', '--spiffe-id', `spiffe://${TD}/node/carried`, '--selector', 'meshid:datacenter:west']);
  assertOk(fine);
});

test('a workload entry given two values of a one-valued unix selector (unix:uid:1000 and unix:uid:1001) is stored with a note that no process matches both', async () => {
  const created = await cli(['entry', 'create', '--spiffe-id', `spiffe://${TD}/either-uid`, '--parent-id', `spiffe://${TD}/agent-1`,
    '--selector', 'unix:uid:3001', '--selector', 'unix:uid:3002', '--selector', 'unix:supplementary_gid:1', '--selector', 'unix:supplementary_gid:2']);
  assert.equal(created.code, 0, created.err);
  assert.equal(
    created.err,
    `Note: entry ${field(created.out, 'Entry ID')} selectors unix:uid:3001 and unix:uid:3002 can match no workload together: a process has one uid, and ` +
      'a workload must match every selector of an entry; to serve each, create an entry per selector\n',
  );
});

test("entry create --data creates a spire-server -data file's entries; what is refused goes to stderr with why, and exit 1", async () => {
  const file = path.join(path.dirname(socket), '..', 'entries.json');
  fs.writeFileSync(file, JSON.stringify({
    entries: [
      { spiffe_id: `spiffe://${TD}/from-file/a`, parent_id: `spiffe://${TD}/agent-1`, selectors: [{ type: 'unix', value: 'uid:2001' }], ttl: 600 },
      { spiffe_id: `spiffe://${TD}/from-file/b`, parent_id: `spiffe://${TD}/agent-1`, selectors: [{ type: 'unix', value: 'uid:2002' }], dns_names: ['b.local'] },
      { spiffe_id: `spiffe://${TD}/from-file/c`, parent_id: `spiffe://${TD}/agent-1`, selectors: [{ type: 'Bad Type', value: 'x' }] },
    ],
  }));
  const r = await cli(['entry', 'create', '-data', file]);
  assert.equal(r.code, 1, r.err);
  assert.match(r.out, /^Created 2 of 3 entries:\n\nEntry ID/);
  assert.equal(r.out.match(/^SPIFFE ID *: spiffe:\/\/example\.org\/from-file\/[ab]$/gm)?.length, 2);
  assert.match(r.out, /^X509-SVID TTL *: 600$/m);
  assert.match(r.err, /^Failed to create spiffe:\/\/example\.org\/from-file\/c \(parent spiffe:\/\/example\.org\/agent-1\): InvalidArgument: selector 1: type "Bad Type" is invalid/m);
  const shown = await cli(['entry', 'show', '--spiffe-id', `spiffe://${TD}/from-file/b`]);
  assert.equal(field(shown.out, 'DNS name'), 'b.local');
  assertError(await cli(['entry', 'create', '--data', file, '--hint', 'x']), /^Error: InvalidArgument: --data creates the entries of its file: it cannot be combined with --hint/);
  assertError(await cli(['entry', 'create', '--data', path.join(path.dirname(file), 'nope.json')]), /^Error: InvalidArgument: cannot read entry file .*nope\.json: no such file \(ENOENT\)/);

  // Saved with a UTF-8 byte order mark (some Windows editors), from a file or standard input: the mark is no content.
  const bom = (name: string): string =>
    '\uFEFF' + JSON.stringify({ entries: [{ spiffe_id: `spiffe://${TD}/from-file/${name}`, parent_id: `spiffe://${TD}/agent-1`, selectors: [{ type: 'unix', value: 'uid:2003' }] }] });
  const bomFile = path.join(path.dirname(file), 'entries-bom.json');
  fs.writeFileSync(bomFile, bom('bom-file'));
  assertOk(await cli(['entry', 'create', '--data', bomFile]));
  assertOk(await cli(['entry', 'create', '--data', '-'], { stdin: bom('bom-stdin') }));
  for (const name of ['bom-file', 'bom-stdin']) assertOk(await cli(['entry', 'show', '--spiffe-id', `spiffe://${TD}/from-file/${name}`]));
});

test("entry create --data takes a SPIRE export's node alias (parent spiffe://<td>/spire/server) as a node alias, and says which entries hang under SPIRE agent IDs", async () => {
  const file = path.join(dir, 'spire-export.json');
  fs.writeFileSync(file, JSON.stringify({
    entries: [
      { spiffe_id: `spiffe://${TD}/spire-export/nodes`, parent_id: `spiffe://${TD}/spire/server`, selectors: [{ type: 'meshid', value: 'datacenter:east' }] },
      { spiffe_id: `spiffe://${TD}/spire-export/web`, parent_id: `spiffe://${TD}/spire/agent/join_token/0e5f`, selectors: [{ type: 'unix', value: 'uid:2101' }] },
    ],
  }));
  const r = await cli(['entry', 'create', '--data', file]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^Note: 1 entry parented to SPIRE's server ID \(spiffe:\/\/<td>\/spire\/server\) is a node alias: created with meshid's \(spiffe:\/\/<td>\/meshid\/server\)$/m);
  assert.match(r.err, /^Note: 1 entry is parented to SPIRE agent IDs \(spiffe:\/\/<td>\/spire\/agent\/\.\.\.\), which no meshid agent has: they match no workload until re-parented/m);
  const alias = await cli(['entry', 'show', '--spiffe-id', `spiffe://${TD}/spire-export/nodes`]);
  assert.equal(field(alias.out, 'Parent ID'), `spiffe://${TD}/meshid/server`);
  const web = await cli(['entry', 'show', '--spiffe-id', `spiffe://${TD}/spire-export/web`]);
  assert.equal(field(web.out, 'Parent ID'), `spiffe://${TD}/spire/agent/join_token/0e5f`, 'left for the operator to re-parent');
});

test('entry create --data with many entries meshid-agent cannot match prints the first 20 notes and counts the rest', async () => {
  const file = path.join(dir, 'k8s-export.json');
  const entries = Array.from({ length: 25 }, (_, i) => ({
    spiffe_id: `spiffe://${TD}/k8s-export/${i}`,
    parent_id: `spiffe://${TD}/agent-1`,
    selectors: [{ type: 'k8s', value: `ns:team-${i}` }],
  }));
  fs.writeFileSync(file, JSON.stringify({ entries }));
  const r = await cli(['entry', 'create', '--data', file]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err.match(/^Note: entry \S+ selector k8s:ns:team-\d+ can match no workload/gm)?.length, 20, r.err);
  assert.match(r.err, /^Note: 5 more notes like these left out \(entry show --selector <type>:<value> finds the entries\)$/m);
});

test('an entry file or a bundle file holding a key twice is refused naming the key and both lines, and nothing is created', async () => {
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const file = path.join(dir, 'dup-entries.json');
  fs.writeFileSync(file, [
    '{',
    '  "entries": [',
    `    {"spiffe_id": "spiffe://${TD}/dup-file/a", "parent_id": "spiffe://${TD}/agent-1", "selectors": [{"type": "unix", "value": "uid:3001"}]},`,
    '    {',
    `      "spiffe_id": "spiffe://${TD}/dup-file/b",`,
    `      "parent_id": "spiffe://${TD}/agent-1",`,
    `      "spiffe_id": "spiffe://${TD}/dup-file/c",`,
    '      "selectors": [{"type": "unix", "value": "uid:3002"}]',
    '    }',
    '  ]',
    '}',
  ].join('\n'));
  assertError(
    await cli(['entry', 'create', '--data', file]),
    new RegExp(`^Error: InvalidArgument: ${escape(file)}, line 7: duplicate key "spiffe_id" in entries\\[1\\] \\(first on line 5; names match whatever their case\\): only the last would take effect; remove one of them$`),
  );
  // spire-server's files match names whatever their case, so "TYPE" is "type" given a second time.
  const stdin = JSON.stringify({ entries: [{ spiffe_id: `spiffe://${TD}/dup-file/d`, parent_id: `spiffe://${TD}/agent-1`, selectors: [{ type: 'unix', TYPE: 'k8s', value: 'uid:3003' }] }] });
  assertError(
    await cli(['entry', 'create', '--data', '-'], { stdin }),
    /^Error: InvalidArgument: standard input, line 1: duplicate key "TYPE" in entries\[0\]\.selectors\[0\] \(first on line 1; names match whatever their case\)/,
  );
  const listed = await cli(['entry', 'show', '--output', 'json']);
  assertOk(listed);
  assert.doesNotMatch(listed.out, /dup-file/, 'no entry of either file was created');

  // A SPIFFE bundle document with "keys" twice: the server would have trusted the second list alone.
  const own = await cli(['bundle', 'show', '--format', 'spiffe']);
  assertOk(own);
  const bundleFile = path.join(dir, 'dup-bundle.json');
  fs.writeFileSync(bundleFile, own.out.replace('{', '{\n  "keys": [],'));
  assertError(
    await cli(['bundle', 'set', '--trust-domain', 'dup-partner.org', '--path', bundleFile]),
    new RegExp(`^Error: InvalidArgument: bundle file ${escape(bundleFile)}, line \\d+: duplicate key "keys" \\(first on line 2\\): only the last would take effect; remove one of them$`),
  );
  assertError(await cli(['bundle', 'list', '--trust-domain', 'dup-partner.org']), /^Error: NotFound: /);
});

test('creating the same entry twice is AlreadyExists', async () => {
  const args = ['--spiffe-id', `spiffe://${TD}/dup`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:7'];
  await createEntry(args);
  assertError(await cli(['entry', 'create', ...args]), /^Error: AlreadyExists: /);
});

test('invalid input is InvalidArgument, whether caught locally or by the server', async () => {
  const base = (id: string, parent: string, selector: string, ...rest: string[]): string[] =>
    ['entry', 'create', '--spiffe-id', id, '--parent-id', parent, '--selector', selector, ...rest];
  const good = `spiffe://${TD}/w`;
  const parent = `spiffe://${TD}/agent-1`;
  assertError(await cli(base('x', parent, 'unix:uid:1')), /^Error: InvalidArgument: SPIFFE ID "x" is not a SPIFFE ID: it must start with "spiffe:\/\/"$/);
  assertError(await cli(base(`spiffe://${TD}/a/../b`, parent, 'unix:uid:1')), /^Error: InvalidArgument: SPIFFE ID .*"\.\." path segment/);
  assertError(await cli(base(`spiffe://other.org/w`, parent, 'unix:uid:1')), /^Error: InvalidArgument: .*not in trust domain "example\.org"/);
  assertError(await cli(base(`spiffe://${TD}`, parent, 'unix:uid:1')), /^Error: InvalidArgument: .*must have a path/);
  assertError(await cli(base(good, parent, 'nocolon')), /^Error: InvalidArgument: selector "nocolon" must have the form type:value/);
  assertError(await cli(base(good, parent, 'UNIX:uid:1')), /^Error: InvalidArgument: selector 1: type "UNIX" is invalid/);
  // unix selectors that no process could ever have: a misspelt key, a uid that is not a number.
  assertError(await cli(base(good, parent, 'unix:foo:1000')), /^Error: InvalidArgument: selector 1: unix:foo:1000 is not a selector the unix attestor makes: use uid:, user:, gid:/);
  assertError(await cli(base(good, parent, 'unix:uid:abc')), /^Error: InvalidArgument: selector 1: unix:uid: needs a numeric uid, got "abc"/);
  assertError(await cli(base(good, parent, 'unix:path:bin/sh')), /^Error: InvalidArgument: selector 1: unix:path: needs an absolute path/);
  assertError(await cli(base(good, parent, 'unix:uid:1', '--x509-svid-ttl', 'soon')), /^Error: InvalidArgument: flag --x509-svid-ttl "soon" is not a valid duration/);
  assertError(await cli(base(good, parent, 'unix:uid:1', '--x509-svid-ttl', '30d')), /^Error: InvalidArgument: x509_svid_ttl 30d exceeds the server's max_x509_svid_ttl/);
  assertError(await cli(base(good, parent, 'unix:uid:1', '--federates-with', 'Bad Domain')), /^Error: InvalidArgument: trust domain "Bad Domain" is invalid/);
  assertError(await cli(base(`spiffe://${TD}/meshid/server2`, parent, 'unix:uid:1')), /^Error: InvalidArgument: .*reserved \/meshid namespace \(server and agent identities\)$/);
});

test('entry create --node makes a node-alias entry parented by the server', async () => {
  const r = await cli(['entry', 'create', '--node', '--spiffe-id', `spiffe://${TD}/nodes/east`, '--selector', 'join_token:dc:east']);
  assertOk(r);
  assert.equal(field(r.out, 'Parent ID'), `spiffe://${TD}/meshid/server`);
});

test('entry create refuses federates_with a trust domain without a bundle, naming the command that sets one', async () => {
  const refused = await cli([
    'entry', 'create', '--spiffe-id', `spiffe://${TD}/typo`, '--parent-id', `spiffe://${TD}/agent-6`, '--selector', 'unix:uid:4244',
    '--federates-with', 'partner.ogr',
  ]);
  assertError(refused, /^Error: FailedPrecondition: federates_with names partner\.ogr, whose bundle this server does not have: set it first with "meshid-server bundle set --trust-domain partner\.ogr"/);
  const id = await createEntry(['--spiffe-id', `spiffe://${TD}/typo`, '--parent-id', `spiffe://${TD}/agent-6`, '--selector', 'unix:uid:4244']);
  assertError(await cli(['entry', 'update', '--entry-id', id, '--federates-with', 'partner.ogr']), /^Error: FailedPrecondition: federates_with names partner\.ogr/);
});

test('entry create takes an entry ID of the operator\'s choosing (SPIRE\'s -entryID); a taken or malformed one is refused', async () => {
  const make = (id: string, name = 'chosen'): Promise<Result> =>
    cli(['entry', 'create', '-entryID', id, '--spiffe-id', `spiffe://${TD}/${name}`, '--parent-id', `spiffe://${TD}/agent-5`, '--selector', `unix:uid:${id.length}`]);
  const r = await make('payments-web');
  assertOk(r);
  assert.equal(field(r.out, 'Entry ID'), 'payments-web');
  assertError(await make('payments-web', 'other'), /^Error: AlreadyExists: registration entry id payments-web is already in use/);
  // The same entry again (a file exported with its IDs, created twice) is told as the twin it is, as SPIRE tells it.
  assertError(await make('payments-web'), /^Error: AlreadyExists: an entry with SPIFFE ID .* already exists \(payments-web\)/);
  assertError(await make('has space'), /^Error: InvalidArgument: entry id "has space" must be 1-255 printable ASCII characters/);
});

test('entry show finds entries by ID and by every filter', async () => {
  fs.writeFileSync(path.join(dir, 'partner-for-filter.pem'), partnerBundle('partner.org'));
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'partner.org', '--path', path.join(dir, 'partner-for-filter.pem')]));
  const id = await createEntry([
    '--spiffe-id', `spiffe://${TD}/filtered`, '--parent-id', `spiffe://${TD}/agent-2`, '--selector', 'unix:uid:4242',
    '--selector', 'unix:gid:42', '--hint', 'blue', '--federates-with', 'partner.org',
  ]);
  const byId = await cli(['entry', 'show', '--entry-id', id]);
  assertOk(byId);
  assert.match(byId.out, /^Found 1 entry\n/);
  assert.equal(field(byId.out, 'Entry ID'), id);
  assert.equal(field(byId.out, 'Hint'), 'blue');
  assert.equal(field(byId.out, 'FederatesWith'), 'partner.org');

  const ids = async (...filters: string[]): Promise<string[]> => {
    const r = await cli(['entry', 'show', ...filters, '--output', 'json']);
    assertOk(r);
    return (JSON.parse(r.out) as { entries: Array<{ id: string }> }).entries.map((e) => e.id);
  };
  assert.deepEqual(await ids('--spiffe-id', `spiffe://${TD}/filtered`), [id]);
  assert.deepEqual(await ids('--parent-id', `spiffe://${TD}/agent-2`), [id]);
  assert.deepEqual(await ids('--selector', 'unix:uid:4242'), [id], 'default match is superset: the entry holds the given selector');
  assert.deepEqual(await ids('--selector', 'unix:uid:4242', '--match', 'exact'), []);
  assert.deepEqual(await ids('-selector', 'unix:uid:4242', '-selector', 'unix:gid:42', '-matchSelectorsOn', 'exact'), [id]);
  assert.deepEqual(await ids('--hint', 'blue'), [id]);
  assert.deepEqual(await ids('--federates-with', 'partner.org'), [id]);
  // SPIRE's repeatable -federatesWith and -matchFederatesWithOn (default superset: every one given).
  assert.deepEqual(await ids('-federatesWith', 'partner.org', '-federatesWith', 'other.org'), []);
  assert.deepEqual(await ids('-federatesWith', 'partner.org', '-federatesWith', 'other.org', '-matchFederatesWithOn', 'any'), [id]);
  assert.deepEqual(await ids('--federates-with', 'partner.org', '--federates-with', 'other.org', '--match-federates-with', 'subset'), [id]);
  assertError(await cli(['entry', 'show', '--match-federates-with', 'any']), /^Error: InvalidArgument: --match-federates-with needs at least one --federates-with/);
  // Over the API too, a trust domain filter is read as one: SPIRE's spiffe:// form finds it, a malformed one is refused.
  const admin = new AdminClient(socket);
  try {
    const listed = await admin.call('Entries', 'ListEntries', { federates_with: 'spiffe://partner.org' });
    assert.deepEqual(listed.entries?.map((e) => e.id), [id]);
    await assert.rejects(admin.call('Entries', 'ListEntries', { federates_with: 'Not A TD!' }), (err: Error) => /invalid/i.test(err.message) && (err as { code?: string }).code === 'invalid_argument');
  } finally {
    admin.close();
  }
  assert.ok((await ids()).includes(id));
  assert.deepEqual(await ids('--spiffe-id', `spiffe://${TD}/nobody`), []);
});

test('over the admin API: an empty parent_id is named, and more than 128 selectors or trust domains in an entry or a filter are refused', async () => {
  const admin = new AdminClient(socket);
  try {
    const many = Array.from({ length: 129 }, (_, i) => ({ type: 'unix', value: `uid:${i}` }));
    const created = await admin.call('Entries', 'CreateEntries', {
      entries: [
        { spiffe_id: `spiffe://${TD}/no-parent`, selectors: [{ type: 'unix', value: 'uid:1' }] },
        { spiffe_id: `spiffe://${TD}/many`, parent_id: `spiffe://${TD}/agent-1`, selectors: many },
        { spiffe_id: `spiffe://${TD}/enough`, parent_id: `spiffe://${TD}/agent-1`, selectors: many.slice(0, 128) },
        {
          spiffe_id: `spiffe://${TD}/wide`, parent_id: `spiffe://${TD}/agent-1`, selectors: many.slice(0, 1),
          federates_with: Array.from({ length: 129 }, (_, i) => `td${i}.example`),
        },
      ],
    });
    assert.deepEqual(created.results?.map((r) => [r.status?.code ?? 0, r.status?.message ?? '']), [
      [3, 'parent_id: SPIFFE ID is empty'],
      [3, '129 selectors: at most 128 are accepted'],
      [0, ''],
      [3, '129 federates_with trust domains: at most 128 are accepted'],
    ]);
    // Before the bound, a filter of ~500 selectors failed INTERNAL at SQLite's expression depth.
    for (const selector_match of ['exact', 'any', 'subset']) {
      const found = await admin.call('Entries', 'ListEntries', { selectors: many.slice(0, 128), selector_match });
      assert.ok(found.entries?.some((e) => e.spiffe_id === `spiffe://${TD}/enough`), `${selector_match} finds the entry of 128 selectors`);
      await assert.rejects(
        admin.call('Entries', 'ListEntries', { selectors: many, selector_match }),
        (err: Error) => (err as { code?: string }).code === 'invalid_argument' && /129 selectors: at most 128/.test(err.message),
      );
    }
  } finally {
    admin.close();
  }
});

test('entry show of an unknown ID is NotFound', async () => {
  assertError(await cli(['entry', 'show', '--entry-id', 'no-such-entry']), /^Error: NotFound: /);
});

test('entry update changes only the fields given and bumps the revision', async () => {
  const id = await createEntry(['--spiffe-id', `spiffe://${TD}/upd`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:5', '--dns', 'a.local']);
  const before = await cli(['entry', 'show', '--entry-id', id]);
  const r = await cli(['entry', 'update', '--entry-id', id, '--selector', 'unix:uid:6', '--hint', 'green', '-x509SVIDTTL', '2h']);
  assertOk(r);
  assert.equal(field(r.out, 'Entry ID'), id);
  assert.equal(field(r.out, 'Selector'), 'unix:uid:6');
  assert.equal(field(r.out, 'Hint'), 'green');
  assert.equal(field(r.out, 'X509-SVID TTL'), '7200');
  assert.equal(field(r.out, 'DNS name'), 'a.local', 'fields without a flag stay as they were');
  assert.equal(field(r.out, 'SPIFFE ID'), `spiffe://${TD}/upd`);
  assert.ok(Number(field(r.out, 'Revision')) > Number(field(before.out, 'Revision')));

  // SPIRE's -x509SVIDTTL 0 (the server default) and empty values clear what was set.
  const cleared = await cli(['entry', 'update', '--entry-id', id, '-x509SVIDTTL', '0', '-jwtSVIDTTL', '0s', '--hint', '', '--dns', '']);
  assertOk(cleared);
  assert.equal(field(cleared.out, 'X509-SVID TTL'), 'default');
  assert.equal(field(cleared.out, 'JWT-SVID TTL'), 'default');
  assert.doesNotMatch(cleared.out, /^(Hint|DNS name) /m);
  assert.equal(field(cleared.out, 'Selector'), 'unix:uid:6', 'fields without a flag stay as they were');
  assertError(await cli(['entry', 'update', '--entry-id', id, '--selector', '']), /^Error: InvalidArgument: flag --selector has an empty value/);

  assertError(await cli(['entry', 'update', '--entry-id', 'no-such-entry', '--hint', 'x']), /^Error: NotFound: /);
  assertError(await cli(['entry', 'update', '--entry-id', id, '--parent-id', 'nope']), /^Error: InvalidArgument: Parent ID "nope" is not a SPIFFE ID/);
});

test('entry update --output json prints results as entry create does: the status, and the entry or why it was refused', async () => {
  const created = await cli(['entry', 'create', '--spiffe-id', `spiffe://${TD}/upd-json`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:7', '--output', 'json']);
  assertOk(created);
  type Results = { results: Array<{ status: { code: number; message: string }; entry?: Record<string, unknown> }> };
  const createdDoc = JSON.parse(created.out) as Results;
  const id = createdDoc.results[0]!.entry!['id'] as string;

  const r = await cli(['entry', 'update', '--entry-id', id, '--hint', 'blue', '--output', 'json']);
  assertOk(r);
  const doc = JSON.parse(r.out) as Results;
  assert.deepEqual(Object.keys(doc), Object.keys(createdDoc));
  assert.deepEqual(doc.results.map((x) => x.status), [{ code: 0, message: 'OK' }]);
  assert.deepEqual(Object.keys(doc.results[0]!.entry!), Object.keys(createdDoc.results[0]!.entry!), 'the same entry fields as create');
  assert.equal(doc.results[0]!.entry!['id'], id);
  assert.equal(doc.results[0]!.entry!['hint'], 'blue');

  // A refusal of the entry is its result on stdout too, with the error line on stderr and exit 1, as create does.
  const missing = await cli(['entry', 'update', '--entry-id', 'no-such-entry', '--hint', 'x', '--output', 'json']);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /^Error: NotFound: registration entry no-such-entry not found\n$/);
  const refused = (JSON.parse(missing.out) as Results).results;
  assert.deepEqual(refused.map((x) => x.status), [{ code: 5, message: 'registration entry no-such-entry not found' }]);
  assert.equal(refused[0]!.entry!['id'], 'no-such-entry', 'the entry as sent, as spire-server fills it in');
  const twin = await cli(['entry', 'create', '--spiffe-id', `spiffe://${TD}/upd-json`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:7', '--output', 'json']);
  assert.equal(twin.code, 1);
  // A twin's result carries the entry it duplicates, as SPIRE's BatchCreateEntry answers it.
  const twinResult = (JSON.parse(twin.out) as Results).results[0]!;
  assert.equal(twinResult.status.code, 6);
  assert.equal(twinResult.entry!['id'], id);
});

test('entry delete removes the entry; deleting it again is NotFound', async () => {
  const id = await createEntry(['--spiffe-id', `spiffe://${TD}/del`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:9']);
  const r = await cli(['entry', 'delete', '--entry-id', id]);
  assertOk(r);
  assert.equal(r.out, `Deleted entry with ID: ${id}\n`);
  assertError(await cli(['entry', 'show', '--entry-id', id]), /^Error: NotFound: /);
  assertError(await cli(['entry', 'delete', '-entryID', id]), /^Error: NotFound: /);
});

test('entry delete of several IDs deletes what it can and names every ID it could not delete, exit 1', async () => {
  const id = await createEntry(['--spiffe-id', `spiffe://${TD}/del-many`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:9']);
  const r = await cli(['entry', 'delete', '--entry-id', 'no-such-1', '--entry-id', id, '--entry-id', 'no-such-2']);
  assert.equal(r.code, 1);
  assert.equal(r.out, `Deleted entry with ID: ${id}\n`);
  assert.equal(r.err, 'Error: NotFound: registration entry no-such-1 not found\nError: NotFound: registration entry no-such-2 not found\n');
  const json = await cli(['entry', 'delete', '--entry-id', 'no-such-1', '--entry-id', 'no-such-2', '--output', 'json']);
  assert.equal(json.code, 1);
  assert.deepEqual((JSON.parse(json.out) as { results: Array<{ id: string }> }).results.map((x) => x.id), ['no-such-1', 'no-such-2']);
  assert.equal(json.err.split('\n').filter((l) => l !== '').length, 2);
});


test('an entry stored before ids were checked (unix:uid:04343) is still found by its own selector, and deleted', async () => {
  // Written through the API as uid 4343, then given the leading zero such an entry had when the server accepted it.
  const id = await createEntry(['--spiffe-id', `spiffe://${TD}/legacy-id`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:4343']);
  const db = new Database(path.join(dir, 'data', 'datastore.sqlite3'));
  try {
    db.prepare("UPDATE entry_selectors SET value = 'uid:04343' WHERE entry_id = ?").run(id);
    db.prepare('UPDATE registration_entries SET selectors = ? WHERE id = ?').run(JSON.stringify([{ type: 'unix', value: 'uid:04343' }]), id);
  } finally {
    db.close();
  }
  const found = await cli(['entry', 'show', '--selector', 'unix:uid:04343', '--output', 'json']);
  assertOk(found);
  assert.deepEqual((JSON.parse(found.out) as { entries: Array<{ id: string }> }).entries.map((e) => e.id), [id]);
  assertError(
    await cli(['entry', 'create', '--spiffe-id', `spiffe://${TD}/legacy-id2`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:04343']),
    /^Error: InvalidArgument: selector 1: unix:uid:04343 can never match: the attestor writes ids without leading zeros; write unix:uid:4343$/,
  );
  assertOk(await cli(['entry', 'delete', '--entry-id', id]));
});
