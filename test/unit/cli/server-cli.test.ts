import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { parseArgs } from '../../../src/common/cli/args.js';
import { isMeshidError } from '../../../src/common/errors.js';
import { ADMIN_SOCKET_FLAG, adminSocketPath } from '../../../src/server/cli/admin-client.js';
import { checkSpiffeId } from '../../../src/server/cli/flags.js';
import { serverCli } from '../../../src/server/cli/server-cli.js';
import { captureIo } from './capture-io.js';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';

/** A socket path nobody listens on, so a test that reaches the network fails loudly instead of hitting a real server. */
const DEAD_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-cli-'));
const DEAD_SOCKET = path.join(DEAD_DIR, 'admin.sock');
after(() => fs.rmSync(DEAD_DIR, { recursive: true, force: true }));

async function run(argv: string[], env: NodeJS.ProcessEnv = { MESHID_ADMIN_SOCKET: DEAD_SOCKET }): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo(env);
  const code = await serverCli(argv, io);
  return { code, out: io.out(), err: io.err() };
}

test('a malformed SPIFFE ID is refused locally with the InvalidArgument line', async () => {
  const r = await run(['entry', 'create', '--spiffe-id', 'x', '--parent-id', 'spiffe://example.org/a', '--selector', 'unix:uid:1']);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'Error: InvalidArgument: SPIFFE ID "x" is not a SPIFFE ID: it must start with "spiffe://"\n');
  assert.equal(r.out, '');
});

test('local SPIFFE ID errors name the flag the operator gave', () => {
  const message = (value: string, label: string): string => {
    try {
      checkSpiffeId(value, label);
    } catch (err) {
      assert.ok(isMeshidError(err, 'invalid_argument'));
      return err.message;
    }
    return assert.fail('should have thrown');
  };
  assert.equal(message('http://x/y', 'Parent ID'), 'Parent ID "http://x/y" is not a SPIFFE ID: it must start with "spiffe://"');
  assert.equal(message('spiffe://Example.org/a', 'SPIFFE ID'), 'SPIFFE ID "spiffe://Example.org/a": the trust domain must be lowercase');
  assert.equal(checkSpiffeId('spiffe://example.org/a', 'SPIFFE ID'), 'spiffe://example.org/a');
});

test('a selector without type:value is refused locally', async () => {
  const r = await run(['entry', 'create', '--spiffe-id', 'spiffe://example.org/w', '--parent-id', 'spiffe://example.org/a', '--selector', 'unix']);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'Error: InvalidArgument: selector "unix" must have the form type:value (e.g. unix:uid:1000)\n');
});

test('entry create needs a parent or --node, not both, and at least one selector', async () => {
  const base = ['entry', 'create', '--spiffe-id', 'spiffe://example.org/w'];
  assert.match((await run([...base, '--selector', 'unix:uid:1'])).err, /flag --parent-id is required \(or --node/);
  assert.match((await run([...base, '--node', '--parent-id', 'spiffe://example.org/a', '--selector', 'a:b'])).err, /--node and --parent-id exclude each other/);
  assert.match((await run([...base, '--parent-id', 'spiffe://example.org/a'])).err, /at least one selector is required/);
});

test('entry create --node --federates-with is refused before the server is asked, as spire-server refuses it', async () => {
  const r = await run(['entry', 'create', '-node', '-spiffeID', 'spiffe://example.org/node/a', '-selector', 'meshid:datacenter:east', '-federatesWith', 'partner.org']);
  assert.equal(r.code, 1);
  assert.equal(
    r.err,
    'Error: InvalidArgument: --federates-with does not go with --node: a node alias issues no SVID, so no workload would get the federated bundles; give it to the workload entries parented to the alias\n',
  );
  assert.equal(r.out, '');
});

test('a bad TTL is an InvalidArgument naming the flag', async () => {
  const r = await run(['entry', 'update', '--entry-id', 'e-1', '--x509-svid-ttl', '10 minutes']);
  assert.equal(r.code, 1);
  assert.match(r.err, /^Error: InvalidArgument: flag --x509-svid-ttl "10 minutes" is not a valid duration/);
});

test('entry create -ttl 3600 -x509SVIDTTL 3600 names both spellings of the one flag given twice', async () => {
  const r = await run(['entry', 'create', '-spiffeID', 'spiffe://example.org/w', '-parentID', 'spiffe://example.org/a', '-selector', 'unix:uid:1', '-ttl', '3600', '-x509SVIDTTL', '3600']);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'Error: InvalidArgument: flags -ttl and -x509SVIDTTL are two spellings of one flag (--x509-svid-ttl): give it once\n');
});

test('entry update without any field to change is refused before calling the server', async () => {
  const r = await run(['entry', 'update', '--entry-id', 'e-1']);
  assert.match(r.err, /^Error: InvalidArgument: nothing to update: give at least one of --spiffe-id, /);
});

test('entry show --entry-id does not combine with filters', async () => {
  const r = await run(['entry', 'show', '--entry-id', 'e-1', '--hint', 'x']);
  assert.equal(r.err, 'Error: InvalidArgument: --entry-id cannot be combined with --hint\n');
});

test('an unreachable admin socket is an Unavailable line naming the socket', async () => {
  const r = await run(['healthcheck']);
  assert.equal(r.code, 1);
  assert.equal(
    r.err,
    `Error: Unavailable: cannot reach meshid-server on ${DEAD_SOCKET} (no socket there): is it running? Pass --admin-socket or set MESHID_ADMIN_SOCKET\n`,
  );
});

test('an admin socket path that is a directory or a plain file is named as such, not as a server that is down', async () => {
  const file = path.join(DEAD_DIR, 'plain-file');
  fs.writeFileSync(file, '');
  for (const [where, what] of [[DEAD_DIR, 'a directory'], [file, 'a regular file']] as const) {
    const r = await run(['healthcheck', '--admin-socket', where]);
    assert.equal(r.code, 1);
    assert.equal(
      r.err,
      `Error: Unavailable: cannot reach meshid-server on ${where} (${what}, not a socket): pass the admin socket's own path in --admin-socket or MESHID_ADMIN_SOCKET\n`,
    );
  }
});

test('bundle set and entry create --data - from a terminal say on stderr what they wait for, then read what is pasted', async () => {
  // A terminal where the operator pasted the input and pressed Ctrl-D: read and sent on (here, to no server).
  const terminal = (text: string): Readable => Object.assign(Readable.from([Buffer.from(text)]), { isTTY: true });
  const bundle = captureIo({ MESHID_ADMIN_SOCKET: DEAD_SOCKET });
  bundle.stdin = terminal('-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n');
  assert.equal(await serverCli(['bundle', 'set', '--trust-domain', 'partner.org'], bundle), 1);
  const [prompt, error] = bundle.err().split('\n');
  assert.equal(prompt, 'Reading the bundle (PEM or a SPIFFE bundle document; or pass --path FILE) from the terminal: paste it, then press Ctrl-D (Ctrl-C to stop)');
  assert.match(error!, /^Error: Unavailable: .*meshid-server/, 'the pasted bundle was read and sent on');
  const entries = captureIo({ MESHID_ADMIN_SOCKET: DEAD_SOCKET });
  entries.stdin = terminal('{"entries": []}');
  await serverCli(['entry', 'create', '--data', '-'], entries);
  assert.match(entries.err(), /^Reading the entries \(JSON, as spire-server entry create -data takes\) from the terminal/);
  // A pipe gets no such line: stderr stays for errors.
  const piped = captureIo({ MESHID_ADMIN_SOCKET: DEAD_SOCKET });
  piped.stdin = Readable.from([Buffer.from('-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n')]);
  await serverCli(['bundle', 'set', '--trust-domain', 'partner.org'], piped);
  assert.doesNotMatch(piped.err(), /Reading/);
});

test('entry create --data - with no entries names standard input, not "-", and says what to give', async () => {
  const io = captureIo({ MESHID_ADMIN_SOCKET: DEAD_SOCKET });
  io.stdin = Readable.from([Buffer.from('{"entries": []}')]);
  assert.equal(await serverCli(['entry', 'create', '--data', '-'], io), 1);
  assert.equal(io.err(), 'Error: InvalidArgument: standard input holds no entries: give at least one in its "entries" array\n');
  assert.equal(io.out(), '');
});

test('a file flag naming a directory or nothing says so in words', async () => {
  const dir = await run(['bundle', 'set', '--trust-domain', 'partner.org', '--path', DEAD_DIR]);
  assert.equal(dir.err, `Error: InvalidArgument: cannot read bundle file ${DEAD_DIR}: it is a directory, not a file (EISDIR)\n`);
  const none = await run(['entry', 'create', '--data', path.join(DEAD_DIR, 'nope.json')]);
  assert.equal(none.err, `Error: InvalidArgument: cannot read entry file ${path.join(DEAD_DIR, 'nope.json')}: no such file (ENOENT)\n`);
});

test("the server's own UNAVAILABLE that quotes a connect error (a partner refusing) is passed through, not blamed on the socket", async (t) => {
  // A stand-in for meshid-server's admin socket: its refresh answers what the poller reported.
  const socket = path.join(DEAD_DIR, 'standin.sock');
  const server = new grpc.Server();
  server.addService(serviceOf(loadProto(['meshid/v1/admin.proto']), 'meshid.admin.v1.Federation'), {
    RefreshBundle: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback({ code: grpc.status.UNAVAILABLE, details: 'bundle endpoint https://127.0.0.1:1/ of partner.org: connect ECONNREFUSED 127.0.0.1:1' }),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  t.after(() => server.forceShutdown());
  const r = await run(['federation', 'refresh', '--trust-domain', 'partner.org', '--admin-socket', socket]);
  assert.equal(r.code, 1);
  assert.equal(r.err, 'Error: Unavailable: bundle endpoint https://127.0.0.1:1/ of partner.org: connect ECONNREFUSED 127.0.0.1:1\n');
  // As the README says: --output json has no failure document; stdout stays empty, so a script's `jq` reads nothing.
  const json = await run(['federation', 'refresh', '--trust-domain', 'partner.org', '--admin-socket', socket, '--output', 'json']);
  assert.deepEqual(json, { code: 1, out: '', err: r.err });
});

/**
 * A stand-in admin socket whose Federation `rpc` commits (answering a partner.org relationship) and whose bundle
 * look-up after it answers UNAVAILABLE (a locked datastore): that failure cannot be made to happen on demand against
 * a real server. Returns the socket and how many times the rpc was called.
 */
async function lockedAfterFederationChange(t: TestContext, name: string, rpc: string): Promise<{ socket: string; calls: () => number }> {
  const socket = path.join(DEAD_DIR, name);
  const proto = loadProto(['meshid/v1/admin.proto']);
  const server = new grpc.Server();
  let calls = 0;
  server.addService(serviceOf(proto, 'meshid.admin.v1.Federation'), {
    [rpc]: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
      calls++;
      callback(null, { trust_domain: 'partner.org', bundle_endpoint_url: 'https://partner.org/b', bundle_endpoint_profile: 'https_web' });
    },
  });
  server.addService(serviceOf(proto, 'meshid.admin.v1.Bundles'), {
    ListFederatedBundles: (_call: unknown, callback: grpc.sendUnaryData<unknown>) =>
      callback({ code: grpc.status.UNAVAILABLE, details: 'the datastore is locked by another process; retry shortly' }),
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
  t.after(() => server.forceShutdown());
  return { socket, calls: () => calls };
}

test('federation delete that succeeded is reported as done even when the bundle look-up after it fails', async (t) => {
  const { socket, calls } = await lockedAfterFederationChange(t, 'standin-fed.sock', 'DeleteFederationRelationship');
  const r = await run(['federation', 'delete', '--trust-domain', 'partner.org', '--admin-socket', socket]);
  assert.equal(calls(), 1);
  assert.equal(r.err, '');
  assert.equal(r.code, 0, 'the relationship is gone: a retry would only be told NotFound');
  assert.equal(
    r.out,
    'Federation relationship with partner.org deleted; whether a bundle of it is stored could not be checked (Unavailable: the datastore is locked by another process; retry shortly): "meshid-server bundle delete --trust-domain partner.org" removes one.\n',
  );
});

test('federation delete --output json prints spire-server\'s result when the look-up after it fails (stand-in admin socket), and why on stderr', async (t) => {
  const { socket } = await lockedAfterFederationChange(t, 'standin-fed-json.sock', 'DeleteFederationRelationship');
  const r = await run(['federation', 'delete', '--trust-domain', 'partner.org', '--admin-socket', socket, '--output', 'json']);
  assert.equal(r.code, 0);
  assert.deepEqual(JSON.parse(r.out), { results: [{ status: { code: 0, message: 'OK' }, trust_domain: 'partner.org' }] });
  assert.equal(
    r.err,
    'Warning: whether a bundle of it is stored could not be checked (Unavailable: the datastore is locked by another process; retry shortly): "meshid-server bundle delete --trust-domain partner.org" removes one.\n',
  );
});

test('federation create --output json whose bundle look-up fails after the create prints the result without the bundle, and why on stderr (stand-in admin socket)', async (t) => {
  const { socket } = await lockedAfterFederationChange(t, 'standin-fed-create.sock', 'CreateFederationRelationship');
  const r = await run([
    'federation', 'create', '--trust-domain', 'partner.org', '--bundle-endpoint-url', 'https://partner.org/b', '--bundle-endpoint-profile', 'https_web',
    '--admin-socket', socket, '--output', 'json',
  ]);
  assert.equal(r.code, 0, 'the relationship was created: a retry would only be told AlreadyExists');
  assert.deepEqual(JSON.parse(r.out), {
    results: [{ status: { code: 0, message: 'OK' }, federation_relationship: { trust_domain: 'partner.org', bundle_endpoint_url: 'https://partner.org/b', https_web: {} } }],
  });
  assert.equal(r.err, 'Warning: the stored bundles could not be read (Unavailable: the datastore is locked by another process; retry shortly): trust_domain_bundle is left out\n');
});

test('x509 mint --write that the server does not answer leaves no directory it created behind', async () => {
  const parent = path.join(DEAD_DIR, 'mint-unanswered');
  const target = path.join(parent, 'nested');
  const r = await run(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--write', target]);
  assert.equal(r.code, 1);
  assert.match(r.err, /^Error: Unavailable: cannot reach meshid-server/);
  assert.equal(fs.existsSync(parent), false, 'the directories made for the files are gone again');
  fs.mkdirSync(parent);
  assert.equal((await run(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--write', target])).code, 1);
  assert.deepEqual(fs.readdirSync(parent), [], 'one that was there before stays');
  assert.equal(fs.existsSync(parent), true);

  // Through a link and '..': the directories the kernel made (under the link target's parent) are the ones removed.
  const elsewhere = path.join(DEAD_DIR, 'mint-elsewhere');
  fs.mkdirSync(path.join(elsewhere, 'target'), { recursive: true });
  fs.symlinkSync(path.join(elsewhere, 'target'), path.join(parent, 'link'));
  const viaLink = `${parent}/link/../made/nested`;
  assert.equal((await run(['x509', 'mint', '--spiffe-id', 'spiffe://example.org/tool', '--write', viaLink])).code, 1);
  assert.deepEqual(fs.readdirSync(elsewhere), ['target'], 'nothing left where the kernel made them');
});

test('the admin socket comes from --admin-socket, then MESHID_ADMIN_SOCKET, then the default', () => {
  const specs = [ADMIN_SOCKET_FLAG];
  assert.equal(adminSocketPath(parseArgs(['--admin-socket', '/a/b.sock'], specs), { MESHID_ADMIN_SOCKET: '/c.sock' }), '/a/b.sock');
  assert.equal(adminSocketPath(parseArgs(['-socketPath', '/s.sock'], specs), {}), '/s.sock');
  assert.equal(adminSocketPath(parseArgs([], specs), { MESHID_ADMIN_SOCKET: '/c.sock' }), '/c.sock');
  assert.equal(adminSocketPath(parseArgs([], specs), {}), '/tmp/meshid-server/private/admin.sock');
});

test('unknown commands and subcommands suggest the closest name', async () => {
  assert.equal((await run(['entyr'])).err, 'Error: InvalidArgument: unknown command "meshid-server entyr" (did you mean "entry"?)\n');
  assert.equal((await run(['bundle', 'lst'])).err, 'Error: InvalidArgument: unknown command "meshid-server bundle lst" (did you mean "list"?)\n');
});

test('spire-server commands meshid has under another name, or not at all, say what to run instead', async () => {
  const local = await run(['localauthority', 'x509', 'show']);
  assert.equal(local.code, 1);
  assert.equal(
    local.err,
    'Error: InvalidArgument: meshid-server has no "localauthority" command: spire-server\'s localauthority is meshid-server ca: x509|jwt show is ca show, ' +
      'x509 prepare is ca rotate-root and x509 activate is ca activate --id <prepared root> (JWT keys are prepared and activated on their own), taint and revoke are ca taint and ca revoke\n',
  );
  assert.match((await run(['upstreamauthority', 'taint'])).err, /^Error: InvalidArgument: meshid-server has no "upstreamauthority" command: .* is meshid-server ca /);
  assert.match((await run(['debug', 'getinfo'])).err, /^Error: InvalidArgument: meshid-server has no "debug" command: meshid-server has no debug API: `ca show`/);
  const jti = await run(['entry', 'create', '-spiffeID', 'spiffe://example.org/a', '-jwtSVIDIncludeJTI']);
  assert.equal(jti.code, 1);
  assert.match(jti.err, /^Error: InvalidArgument: flag -jwtSVIDIncludeJTI is not supported by meshid: meshid's JWT-SVIDs carry no jti/);
  assert.match((await run(['entry', 'update', '-entryID', 'x', '-entryExpiry', '5'])).err, /flag -entryExpiry is not supported by meshid: meshid entries do not expire/);
  assert.match((await run(['entry', 'create', '-disableX509SVIDPrefetch'])).err, /flag -disableX509SVIDPrefetch is not supported by meshid/);
  const purge = await run(['agent', 'purge', '-expiredFor', '24h']);
  assert.equal(purge.code, 1);
  assert.match(purge.err, /^Error: InvalidArgument: meshid-server agent has no "purge" command: meshid-server removes an agent once its agent SVID has expired/);
  // Not an inherited name: an object's own keys only.
  assert.match((await run(['constructor'])).err, /^Error: InvalidArgument: unknown command "meshid-server constructor"/);
});

/** The spellings scripts rely on (GNU long names and spire-server aliases), per command, as --help lists them. */
const CONTRACT: Record<string, string[]> = {
  'entry create': ['--spiffe-id', '-spiffeID', '--parent-id', '-parentID', '--selector', '--x509-svid-ttl', '-x509SVIDTTL', '-ttl', '--jwt-svid-ttl', '-jwtSVIDTTL', '--dns', '--node', '--hint', '--federates-with', '-federatesWith', '--admin', '--downstream'],
  'entry show': ['--entry-id', '-entryID', '--spiffe-id', '--parent-id', '--selector', '--federates-with', '--hint'],
  'entry update': ['--entry-id', '-entryID', '--spiffe-id', '--parent-id', '--selector', '--x509-svid-ttl', '--jwt-svid-ttl', '--dns', '--hint', '--federates-with', '--admin', '--downstream'],
  'entry delete': ['--entry-id', '-entryID'],
  'token generate': ['--datacenter', '--ttl', '--selector'],
  'token revoke': ['--token', '--all'],
  'bundle show': ['--format pem|spiffe'],
  'bundle list': ['--trust-domain', '-id', '--format'],
  'bundle set': ['--trust-domain', '-id', '--path', '-bundle-file', '--data', '--format'],
  'bundle delete': ['--trust-domain', '-id', '--mode restrict|dissociate'],
  'agent list': ['--datacenter'],
  'agent show': ['--spiffe-id', '-spiffeID'],
  'agent evict': ['--spiffe-id'],
  'agent ban': ['--spiffe-id'],
  'ca show': [],
  'x509 mint': ['--spiffe-id', '--ttl', '--dns', '--datacenter', '--write DIR'],
  'jwt mint': ['--spiffe-id', '--audience', '--ttl'],
  healthcheck: ['--timeout DURATION'],
  backup: ['--out DIR'],
};

test('every command has --help listing its contract flags, the admin socket and --output', async () => {
  for (const [command, flags] of Object.entries(CONTRACT)) {
    const r = await run([...command.split(' '), '--help']);
    assert.equal(r.code, 0, command);
    assert.match(r.out, new RegExp(`^Usage: meshid-server ${command} `), command);
    for (const flag of [...flags, '--admin-socket PATH', '-socketPath', '--output json|pretty']) {
      assert.ok(r.out.includes(flag), `${command} --help should list ${flag}:\n${r.out}`);
    }
  }
});

test('the top-level help lists every command group', async () => {
  const r = await run(['--help']);
  assert.equal(r.code, 0);
  for (const g of ['run', 'entry', 'token', 'bundle', 'agent', 'ca', 'x509', 'jwt', 'backup', 'healthcheck']) assert.match(r.out, new RegExp(`^  ${g} `, 'm'));
});

test('the top-level help names --version, which prints the version', async () => {
  assert.match((await run(['--help'])).out, /"meshid-server --version"/);
  const r = await run(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.out, /^meshid-server \d+\.\d+\.\d+\n$/);
});

test('a flag a command refuses to run without is marked required in its --help', async () => {
  const groups = (await run(['--help'])).out.match(/^ {2}(\S+) /gm)!.map((l) => l.trim()).filter((g) => !['run', 'validate', 'healthcheck', 'backup'].includes(g));
  let checked = 0;
  for (const group of groups) {
    for (const command of (await run([group, '--help'])).out.match(/^ {2}(\S+) /gm)!.map((l) => l.trim())) {
      const bare = await run([group, command]);
      const required = /flag (--[a-z-]+) is required/.exec(bare.err)?.[1];
      if (required === undefined) continue;
      checked++;
      const help = (await run([group, command, '--help'])).out;
      const line = help.split('\n').find((l) => l.trimStart().startsWith(`${required} `));
      assert.ok(line !== undefined && /\brequired\b/.test(line), `${group} ${command}: ${required} is required but its help says:\n${line}`);
    }
  }
  assert.ok(checked >= 10, `only ${checked} commands with a required flag were found`);
});

test('bundle delete --mode delete, spire-server\'s third mode, is refused saying what to do instead; another mode names the two there are', async () => {
  const del = await run(['bundle', 'delete', '-id', 'partner.org', '-mode', 'delete']);
  assert.equal(del.code, 1);
  assert.match(del.err, /^Error: InvalidArgument: flag --mode delete \(spire-server's, which deletes the entries that federate with the trust domain\) is not offered: delete those entries with "meshid-server entry delete" first, or .* --mode dissociate\n$/);
  assert.equal((await run(['bundle', 'delete', '--trust-domain', 'partner.org', '--mode', 'everything'])).err, 'Error: InvalidArgument: flag --mode must be one of restrict, dissociate, got "everything"\n');
});

test('ca show --help names the states it prints, ca rotate-root --help says how a prepared root activates, and ca --help lists activate, as SPIRE operators look for it', async () => {
  assert.match((await run(['ca', 'show', '--help'])).out, /prepared \(published, not signing yet\), active, old \(replaced; published while something chains to it\) or tainted/);
  const rotate = (await run(['ca', 'rotate-root', '--help'])).out;
  assert.match(rotate, /root_activation_delay, 24h by default; ca show says when, ca activate switches sooner/);
  assert.match((await run(['ca', '--help'])).out, /\bactivate\b.*Activates the prepared root now \(SPIRE's localauthority x509 activate\)/);
  const activate = await run(['ca', 'activate', '--help']);
  assert.match(activate.out.split('\n').find((l) => l.trimStart().startsWith('--id '))!, /\brequired\b/);
});

test('backup needs --out, marked required in its --help, and says its backup holds the CA keys', async () => {
  const bare = await run(['backup']);
  assert.equal(bare.code, 1);
  assert.match(bare.err, /^Error: InvalidArgument: flag --out is required \(the directory to write the backup into/);
  const help = (await run(['backup', '--help'])).out;
  assert.match(help.split('\n').find((l) => l.trimStart().startsWith('--out DIR'))!, /\brequired\b/);
  assert.match(help, /It holds the CA private keys: keep it as private as the data dir/);
});

test('bundle show and list with --format and --output json say on stderr that --format does not apply, as SPIRE ignores it', async () => {
  for (const command of [['bundle', 'show'], ['bundle', 'list']]) {
    const r = await run([...command, '--format', 'spiffe', '--output', 'json']);
    const [note, error] = r.err.split('\n');
    assert.equal(note, "Note: --format spiffe does not apply with --output json, which prints the bundle's fields (for the SPIFFE bundle document, drop --output json)");
    assert.match(error!, /^Error: Unavailable: /, 'and the command went on (here, to no server)');
  }
});

test("SPIRE's token generate -spiffeID is refused with the meshid way to name an agent, before any server is asked", async () => {
  const r = await run(['token', 'generate', '-spiffeID', 'spiffe://example.org/host']);
  assert.equal(r.code, 1);
  assert.equal(r.out, '');
  assert.match(r.err, /flag -spiffeID is not supported by meshid: an agent gets its SPIFFE ID .* when it attests/);
  assert.match(r.err, /entry create --node --spiffe-id <ID> --selector <the same selector>/);
});

test('entry update --help says a TTL flag left out keeps the entry TTL, where entry create --help says the server default', async () => {
  const ttlLines = (help: string): string[] => help.split('\n').filter((l) => /^ {2}--(x509|jwt)-svid-ttl /.test(l));
  const update = ttlLines((await run(['entry', 'update', '--help'])).out);
  assert.equal(update.length, 2);
  for (const line of update) {
    assert.match(line, /absent: unchanged/);
    assert.doesNotMatch(line, /absent: the server default/);
  }
  for (const line of ttlLines((await run(['entry', 'create', '--help'])).out)) assert.match(line, /0 or absent: the server default/);
});

test('restore without --data-dir, or with a --config setting no data_dir, is refused saying which, before it reads the backup', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-restore-no-data-dir-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // A --from that does not exist: were it looked at first, its refusal would come instead.
  const from = path.join(dir, 'no-such-backup');
  const bare = await run(['restore', '--from', from]);
  assert.equal(bare.code, 1);
  assert.equal(bare.err, 'Error: InvalidArgument: flag --data-dir is required: give the data dir the server runs with, or --config\n');
  const config = path.join(dir, 'server.json');
  fs.writeFileSync(config, JSON.stringify({ trust_domain: 'example.org' }));
  const configured = await run(['restore', '--from', from, '--config', config]);
  assert.equal(configured.code, 1);
  assert.equal(configured.err, `Error: InvalidArgument: flag --data-dir is required (${config} sets no data_dir): give the data dir the server runs with, or --config\n`);
  assert.deepEqual(fs.readdirSync(dir), ['server.json'], 'nothing made');
});

test('healthcheck is healthy on SERVING only: a health service answering UNKNOWN or SERVICE_UNKNOWN (stand-in admin socket) is not healthy', async (t) => {
  for (const status of ['UNKNOWN', 'SERVICE_UNKNOWN', 'NOT_SERVING', 'SERVING']) {
    const socket = path.join(DEAD_DIR, `standin-health-${status}.sock`);
    const server = new grpc.Server();
    server.addService(serviceOf(loadProto(['grpc/health/v1/health.proto']), 'grpc.health.v1.Health'), {
      Check: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { status }),
    });
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
    t.after(() => server.forceShutdown());
    const r = await run(['healthcheck', '--admin-socket', socket]);
    if (status === 'SERVING') {
      assert.deepEqual([r.code, r.out], [0, 'Server is healthy.\n']);
      continue;
    }
    assert.equal(r.code, 1, status);
    assert.equal(r.out, '');
    assert.match(r.err, new RegExp(`^Error: Unavailable: server is not healthy: status ${status} \\(`), status);
  }
});
