import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { unavailable } from '../../../src/common/errors.js';
import { FakeClock } from '../../../src/common/clock.js';
import { pemToDerList } from '../../../src/common/x509/pem.js';
import { parseJwtSvid } from '../../../src/common/jwt/jwt-svid.js';
import { apiCommand } from '../../../src/agent/cli/api.js';
import { healthcheckCommand } from '../../../src/agent/cli/healthcheck.js';
import { foreignBundle, TestCa } from '../../support/fake-workload-cache.js';
import { opensslVerify } from '../../support/openssl.js';
import { captureIo } from '../cli/capture-io.js';
import { AGENT_MAIN } from '../../support/cluster.js';
import { APP_A, eventually, FOREIGN_TD, SELECTOR_A, startWorkloadHarness, TD, within, type WorkloadHarness } from '../workload/workload-harness.js';

let ca: TestCa;
let partner: TestCa;
let h: WorkloadHarness;
let tmp: string;

before(async () => {
  ca = new TestCa(TD);
  partner = new TestCa(FOREIGN_TD);
  h = await startWorkloadHarness(ca, (cache) => {
    cache.addEntry(SELECTOR_A, APP_A, { federatesWith: [FOREIGN_TD] });
    cache.setFederatedBundle(foreignBundle(partner, 1));
  });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-agent-cli-'));
});
after(async () => {
  await h.close();
  ca.dispose();
  partner.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs `meshid-agent api …` in-process against the harness socket. */
async function api(args: string[], env: NodeJS.ProcessEnv = {}, stdin?: string): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo(env, stdin);
  const code = await apiCommand(args, io);
  return { code, out: io.out(), err: io.err() };
}

const mode = (file: string): number => fs.statSync(file).mode & 0o777;

describe('meshid-agent api fetch x509 (attestation stubbed: caller has unix:uid:1001)', () => {
  test('--write DIR writes svid.0.pem (chain), svid.0.key (0600), bundle.0.pem and federated_bundle.0.0.pem like spire-agent', async () => {
    const dir = path.join(tmp, 'svid');
    const r = await api(['fetch', 'x509', '--socket-path', h.socketPath, '--write', dir]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['bundle.0.pem', 'federated_bundle.0.0.pem', 'svid.0.key', 'svid.0.pem']);
    const chain = pemToDerList(fs.readFileSync(path.join(dir, 'svid.0.pem'), 'utf8'));
    assert.equal(chain.length, 2);
    assert.deepEqual(chain[1], ca.intermediateDer);
    const key = createPrivateKey(fs.readFileSync(path.join(dir, 'svid.0.key'), 'utf8'));
    assert.ok(new X509Certificate(chain[0]!).checkPrivateKey(key), 'the key file matches the leaf');
    assert.match(fs.readFileSync(path.join(dir, 'svid.0.key'), 'utf8'), /^-----BEGIN PRIVATE KEY-----/);
    assert.equal(mode(path.join(dir, 'svid.0.key')), 0o600);
    for (const f of ['svid.0.pem', 'bundle.0.pem', 'federated_bundle.0.0.pem']) assert.equal(mode(path.join(dir, f)), 0o644, f);
    const roots = pemToDerList(fs.readFileSync(path.join(dir, 'bundle.0.pem'), 'utf8'));
    assert.deepEqual(roots, [ca.rootDer]);
    assert.deepEqual(pemToDerList(fs.readFileSync(path.join(dir, 'federated_bundle.0.0.pem'), 'utf8')), [partner.rootDer]);
    const verdict = opensslVerify({ roots, intermediates: [chain[1]!], leaf: chain[0]!, purpose: 'sslserver' });
    assert.ok(verdict.ok, verdict.output);
    assert.match(r.out, /Writing key #0 to file .*svid\.0\.key\./);
  });

  test("bare api fetch is fetch x509, as spire-agent's is: its flags after it (SPIRE's -socketPath too)", async () => {
    const r = await api(['fetch', '-socketPath', h.socketPath]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^Received 1 svid after /);
    assert.match(r.out, new RegExp(`SPIFFE ID\\s+: ${APP_A}`));
    const bare = await api(['fetch'], { SPIFFE_ENDPOINT_SOCKET: `unix://${h.socketPath}` });
    assert.equal(bare.code, 0, bare.err);
    assert.match(bare.out, /^Received 1 svid after /);
    const help = await api(['fetch', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /Commands:\n\s+x509\s+.*the default of api fetch/);
  });

  test('prints the SPIFFE ID and the validity of the SVID, its intermediate and the CA', async () => {
    const r = await api(['fetch', 'x509', '--socket-path', h.socketPath]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^Received 1 svid after [\d.]+ms\n/);
    assert.match(r.out, new RegExp(`SPIFFE ID\\s+: ${APP_A.replace(/[/.]/g, '\\$&')}\\n`));
    for (const label of ['SVID Valid After', 'SVID Valid Until', 'Intermediate #1 Valid After', 'CA #1 Valid Until']) {
      assert.match(r.out, new RegExp(`${label}\\s+: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d \\+0000 UTC`), label);
    }
    assert.match(r.out, /Federated bundle\s+: spiffe:\/\/partner\.example \(1 CA\)/);
  });

  test('finds the socket through SPIFFE_ENDPOINT_SOCKET (unix:/path form); --output json is the response with base64 bytes', async () => {
    const r = await api(['fetch', 'x509', '--output', 'json'], { SPIFFE_ENDPOINT_SOCKET: `unix:${h.socketPath}` });
    assert.equal(r.code, 0, r.err);
    const doc = JSON.parse(r.out) as { svids: Array<{ spiffe_id: string; bundle: string; hint: string }>; crl: unknown; federated_bundles: Record<string, string> };
    assert.equal(doc.svids[0]!.spiffe_id, APP_A);
    assert.deepEqual(Buffer.from(doc.svids[0]!.bundle, 'base64'), ca.rootDer);
    // As spire-agent prints it (protojson, unset fields included): an empty hint and CRL list are there, not missing.
    assert.equal(doc.svids[0]!.hint, '');
    assert.deepEqual(doc.crl, []);
    assert.deepEqual(Buffer.from(doc.federated_bundles['spiffe://partner.example']!, 'base64'), partner.rootDer);
  });

  test("--silent (spire-agent's -silent) prints no description; with -write only the files written", async () => {
    const quiet = await api(['fetch', 'x509', '-silent', '-socketPath', h.socketPath]);
    assert.equal(quiet.code, 0, quiet.err);
    assert.equal(quiet.out, '');
    const dir = path.join(tmp, 'silent');
    const written = await api(['fetch', 'x509', '-silent', '-write', dir, '-socketPath', h.socketPath]);
    assert.equal(written.code, 0, written.err);
    assert.match(written.out, /^Writing SVID #0 to file .*svid\.0\.pem\.\nWriting key #0 .*\n(Writing .*\n)+$/);
    assert.ok(fs.existsSync(path.join(dir, 'svid.0.key')));
  });

  test('an unregistered caller: one "Error: PermissionDenied: …" line on stderr and exit 1', async () => {
    h.caller = [{ type: 'unix', value: 'uid:4242' }];
    try {
      const r = await api(['fetch', 'x509', '--socket-path', h.socketPath]);
      assert.equal(r.code, 1);
      assert.equal(r.out, '');
      assert.match(r.err, /^Error: PermissionDenied: .+\n$/);
      assert.equal(r.err.split('\n').length, 2);
    } finally {
      h.caller = [{ type: 'unix', value: 'uid:1001' }];
    }
  });

  test('no agent on the socket: one Unavailable error line naming the socket, within the timeout', async () => {
    const missing = path.join(tmp, 'nothing-here.sock');
    const r = await within(api(['fetch', 'x509', '--socket-path', missing, '--timeout', '2s']), 'the command to give up');
    assert.equal(r.code, 1);
    assert.match(r.err, /^Error: Unavailable: .*nothing-here\.sock.*\n$/);
  });

  test('a socket file nobody listens on (the agent died): Unavailable naming the socket, within the timeout', async () => {
    const stale = path.join(tmp, 'stale.sock');
    // A listener killed outright leaves its socket file behind: connecting to it is ECONNREFUSED.
    const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await new Promise((resolve) => child.once('exit', resolve));
    assert.ok(fs.statSync(stale).isSocket());
    const r = await within(api(['fetch', 'x509', '--socket-path', stale, '--timeout', '2s']), 'the command to give up');
    assert.equal(r.code, 1);
    assert.equal(r.err, `Error: Unavailable: cannot reach the Workload API on ${stale} (nothing is listening): is meshid-agent running? Pass --socket-path or set SPIFFE_ENDPOINT_SOCKET\n`);
  });

  test('a --socket-path that is a directory or a plain file is named as such, not as an agent that is down', async () => {
    const file = path.join(tmp, 'not-a-socket');
    fs.writeFileSync(file, '');
    for (const [where, what] of [[tmp, 'a directory'], [file, 'a regular file']] as const) {
      const r = await within(api(['fetch', 'x509', '--socket-path', where, '--timeout', '2s']), 'the command to give up');
      assert.equal(r.code, 1);
      assert.equal(
        r.err,
        `Error: Unavailable: cannot reach the Workload API on ${where} (${what}, not a socket): pass the agent socket's own path in --socket-path or SPIFFE_ENDPOINT_SOCKET\n`,
      );
    }
  });
});

describe('meshid-agent api fetch jwt / fetch bundle / validate jwt (attestation stubbed)', () => {
  test('an Unavailable the agent sends (its own link to meshid-server is down) keeps its text: the socket is not blamed', async () => {
    // What the agent answered when meshid-server was stopped: grpc-js's text for the agent's failed connection.
    const reason = 'No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:8091. Resolution note: ';
    const original = h.cache.fetchJwtSvids;
    h.cache.fetchJwtSvids = () => Promise.reject(unavailable(reason));
    try {
      const r = await api(['fetch', 'jwt', '--audience', 'x', '--socket-path', h.socketPath]);
      assert.equal(r.code, 1);
      assert.equal(r.err, `Error: Unavailable: ${reason}\n`);
    } finally {
      h.cache.fetchJwtSvids = original;
    }
  });

  test('fetch jwt prints token(<id>) and a token for the audience; validate jwt accepts it', async () => {
    const r = await api(['fetch', 'jwt', '--audience', 'db,cache', '--socket-path', h.socketPath]);
    assert.equal(r.code, 0, r.err);
    const m = /^token\((.+)\):\n\t(\S+)\n/.exec(r.out);
    assert.ok(m, r.out);
    assert.equal(m[1], APP_A);
    assert.deepEqual(parseJwtSvid(m[2]!).claims['aud'], ['db', 'cache']);
    const v = await api(['validate', 'jwt', '--audience', 'cache', '--svid', m[2]!, '--socket-path', h.socketPath]);
    assert.equal(v.code, 0, v.err);
    assert.match(v.out, /^SVID is valid\.\nSPIFFE ID : spiffe:\/\/example\.org\/ns\/default\/sa\/frontend\nClaims    : \{.*"aud":\["db","cache"\]/);
    const wrong = await api(['validate', 'jwt', '--audience', 'payments', '--svid', m[2]!, '--socket-path', h.socketPath]);
    assert.equal(wrong.code, 1);
    assert.match(wrong.err, /^Error: InvalidArgument: token audience does not include "payments"\n$/);
  });

  test("fetch jwt prints the JWT bundles after the tokens, and -output json is spire-agent's [svids, bundles] array", async () => {
    const r = await api(['fetch', 'jwt', '-audience', 'db', '-socketPath', h.socketPath]);
    assert.equal(r.code, 0, r.err);
    const lines = r.out.split('\n');
    assert.equal(lines[0], `token(${APP_A}):`);
    assert.equal(lines[2], `bundle(spiffe://${TD}):`);
    assert.equal(lines[4], 'bundle(spiffe://partner.example):');
    const ownKeys = JSON.parse(lines[3]!.slice(1)) as { keys: Array<{ kid: string }> };
    assert.ok(ownKeys.keys.length > 0);
    const json = await api(['fetch', 'jwt', '-audience', 'db', '-socketPath', h.socketPath, '-output', 'json']);
    assert.equal(json.code, 0, json.err);
    // The idiom of spire-agent users: jq '.[0].svids[0].svid' and '.[1].bundles["spiffe://…"]' (base64 of the JWKS).
    const [svids, bundles] = JSON.parse(json.out) as [{ svids: Array<{ spiffe_id: string; svid: string; hint: string }> }, { bundles: Record<string, string> }];
    assert.equal(svids.svids[0]!.spiffe_id, APP_A);
    assert.deepEqual(parseJwtSvid(svids.svids[0]!.svid).claims['aud'], ['db']);
    assert.equal(svids.svids[0]!.hint, '');
    assert.deepEqual(JSON.parse(Buffer.from(bundles.bundles[`spiffe://${TD}`]!, 'base64').toString('utf8')), ownKeys);
  });

  test('validate jwt --svid - reads the token from standard input, keeping it off the process list', async () => {
    const r = await api(['fetch', 'jwt', '--audience', 'cache', '--socket-path', h.socketPath]);
    const token = /^token\(.+\):\n\t(\S+)\n/.exec(r.out)![1]!;
    const v = await api(['validate', 'jwt', '--audience', 'cache', '--svid', '-', '--socket-path', h.socketPath], {}, `${token}\n`);
    assert.equal(v.code, 0, v.err);
    assert.match(v.out, /^SVID is valid\.\nSPIFFE ID : spiffe:\/\/example\.org\/ns\/default\/sa\/frontend\n/);
    const none = await api(['validate', 'jwt', '--audience', 'cache', '--svid', '-', '--socket-path', h.socketPath], {}, '\n');
    assert.equal(none.code, 1);
    assert.equal(none.err, 'Error: InvalidArgument: --svid - found no token on standard input\n');
  });

  test('the meshid-agent executable reads --svid - from its standard input too', async () => {
    const r = await api(['fetch', 'jwt', '--audience', 'cache', '--socket-path', h.socketPath]);
    const token = /^token\(.+\):\n\t(\S+)\n/.exec(r.out)![1]!;
    // As an operator runs it (`… --svid - < token`), not with a CliIo a test made: the binary must hand over its stdin.
    const child = spawn(process.execPath, [AGENT_MAIN, 'api', 'validate', 'jwt', '--audience', 'cache', '--svid', '-', '--socket-path', h.socketPath], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdin.end(`${token}\n`);
    const code = await within(new Promise((resolve) => child.once('close', resolve)), 'the command to end');
    assert.equal(code, 0, err);
    assert.match(out, /^SVID is valid\.\nSPIFFE ID : spiffe:\/\/example\.org\/ns\/default\/sa\/frontend\n/);
  });

  test('fetch jwt without --audience fails locally; validate jwt without --svid fails locally', async () => {
    const r = await api(['fetch', 'jwt', '--socket-path', h.socketPath]);
    assert.equal(r.code, 1);
    assert.match(r.err, /--audience is required/);
    // A list with no audience in it (an unset shell variable between commas) is no audience either.
    const blank = await api(['fetch', 'jwt', '--audience', ' , ', '--socket-path', h.socketPath]);
    assert.equal(blank.code, 1);
    assert.match(blank.err, /--audience is required/);
    const v = await api(['validate', 'jwt', '--audience', 'db', '--socket-path', h.socketPath]);
    assert.equal(v.code, 1);
    assert.match(v.err, /--svid is required/);
  });

  test('fetch bundle prints each trust domain\'s roots as PEM under a "# spiffe://<td>" line', async () => {
    const r = await api(['fetch', 'bundle', '--socket-path', h.socketPath]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^# spiffe:\/\/example\.org\n-----BEGIN CERTIFICATE-----/);
    const [own, foreign] = r.out.split(/\n(?=# )/);
    assert.deepEqual(pemToDerList(own!), [ca.rootDer]);
    assert.match(foreign!, /^# spiffe:\/\/partner\.example\n/);
    assert.deepEqual(pemToDerList(foreign!), [partner.rootDer]);
  });

  test('fetch bundle lists the trust domains by name, one sorting before the own first (the agent sends the own bundle first)', async () => {
    const alpha = new TestCa('alpha.example');
    h.cache.setFederatedBundle(foreignBundle(alpha, 1));
    h.cache.setFederatesWith(APP_A, ['alpha.example', FOREIGN_TD]);
    try {
      const r = await api(['fetch', 'bundle', '--socket-path', h.socketPath]);
      assert.equal(r.code, 0, r.err);
      assert.deepEqual(r.out.match(/^# .*$/gm), ['# spiffe://alpha.example', '# spiffe://example.org', '# spiffe://partner.example']);
      const json = await api(['fetch', 'bundle', '--output', 'json', '--socket-path', h.socketPath]);
      assert.deepEqual(Object.keys((JSON.parse(json.out) as { bundles: Record<string, string> }).bundles), ['spiffe://alpha.example', 'spiffe://example.org', 'spiffe://partner.example']);
    } finally {
      h.cache.setFederatesWith(APP_A, [FOREIGN_TD]);
      alpha.dispose();
    }
  });
});

describe('meshid-agent api watch and healthcheck (attestation stubbed)', () => {
  test('watch --count 2 prints the first message and the rotation, then exits and leaves no subscription', async () => {
    const io = captureIo();
    const done = apiCommand(['watch', '--count', '2', '--socket-path', h.socketPath], io);
    await eventually(() => io.out().includes('Received 1 svid'), 'the first message');
    const serialOf = (text: string): number => (text.match(/Received 1 svid/g) ?? []).length;
    assert.equal(serialOf(io.out()), 1);
    h.cache.rotate(APP_A);
    assert.equal(await within(done, 'watch to end after 2 messages'), 0, io.err());
    assert.equal(serialOf(io.out()), 2);
    await eventually(() => h.cache.subscriberCount() === 0, 'the watch subscription to go');
  });

  test('watch --output json prints one JSON document per line', async () => {
    const io = captureIo();
    const code = await within(apiCommand(['watch', '--count', '1', '--output', 'json', '--socket-path', h.socketPath], io), 'watch');
    assert.equal(code, 0, io.err());
    const lines = io.out().trimEnd().split('\n');
    assert.equal(lines.length, 1);
    assert.equal((JSON.parse(lines[0]!) as { svids: Array<{ spiffe_id: string }> }).svids[0]!.spiffe_id, APP_A);
  });

  test("watch --output json prints each message in fetch x509 --output json's shape, unset fields present (hint \"\", crl [])", async () => {
    const io = captureIo();
    const code = await within(apiCommand(['watch', '--count', '1', '--output', 'json', '--socket-path', h.socketPath], io), 'watch');
    assert.equal(code, 0, io.err());
    const fetched = await api(['fetch', 'x509', '--output', 'json', '--socket-path', h.socketPath]);
    assert.equal(fetched.code, 0, fetched.err);
    const shape = (doc: Record<string, unknown>): unknown => ({
      top: Object.keys(doc).sort(),
      svid: Object.keys((doc['svids'] as Array<Record<string, unknown>>)[0]!).sort(),
    });
    const watched = JSON.parse(io.out().trimEnd().split('\n')[0]!) as Record<string, unknown>;
    assert.deepEqual(shape(watched), shape(JSON.parse(fetched.out) as Record<string, unknown>));
    assert.deepEqual(watched['crl'], []);
    assert.equal((watched['svids'] as Array<{ hint: string }>)[0]!.hint, '');
  });

  test('watch --count must be a positive number', async () => {
    const r = await api(['watch', '--count', '0', '--socket-path', h.socketPath]);
    assert.equal(r.code, 1);
    assert.match(r.err, /--count must be a positive whole number/);
  });

  test('healthcheck prints "Agent is healthy." when serving, and fails with one line when not', async () => {
    const ok = captureIo();
    assert.equal(await healthcheckCommand(['--socket-path', h.socketPath], ok), 0, ok.err());
    assert.equal(ok.out(), 'Agent is healthy.\n');
    const shallow = captureIo();
    assert.equal(await healthcheckCommand(['-socketPath', h.socketPath, '-shallow'], shallow), 0, 'a SPIRE probe runs unchanged');
    const verbose = captureIo();
    assert.equal(await healthcheckCommand(['-socketPath', h.socketPath, '-shallow', '-verbose'], verbose), 0, "SPIRE's -verbose too");
    assert.equal(verbose.out(), 'Agent is healthy.\n');
    assert.equal(verbose.err(), `Checking meshid-agent on ${h.socketPath}...\n`);
    h.cache.isReady = false;
    try {
      const bad = captureIo();
      assert.equal(await healthcheckCommand(['--socket-path', h.socketPath], bad), 1);
      assert.equal(
        bad.err(),
        "Error: Unavailable: agent is not healthy: status NOT_SERVING (it has nothing to serve yet, was banned, or is stopping: its log, or the health_checks listener's ready path, says which)\n",
      );
    } finally {
      h.cache.isReady = true;
    }
  });

  test('api without a subcommand prints its help to stderr; an unknown one suggests the closest', async () => {
    const r = await api([]);
    assert.equal(r.code, 1);
    assert.match(r.err, /fetch\s+Fetch X509-SVIDs/);
    const typo = await api(['fetc']);
    assert.match(typo.err, /did you mean "fetch"/);
  });
});

describe('meshid-agent api watch --timeout (attestation stubbed: caller entitled, SVID never issued)', () => {
  test('gives up with one Unavailable line when the first message does not come in time', async () => {
    h.cache.addEntry('unix:uid:1003', 'spiffe://example.org/pending', { issued: false });
    h.caller = [{ type: 'unix', value: 'uid:1003' }];
    const before = h.cache.subscriberCount();
    try {
      const io = Object.assign(captureIo(), { clock: new FakeClock() });
      let ended = false;
      // Longer than the test may run: only the clock the command was given can end it in time.
      const done = apiCommand(['watch', '--timeout', '10m', '--socket-path', h.socketPath], io).finally(() => (ended = true));
      // Subscribed: the command has set its timer (at once after opening the stream).
      await eventually(() => h.cache.subscriberCount() > before, 'the watch to subscribe');
      io.clock.advance(10 * 60_000 - 1);
      for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
      assert.equal(ended, false, 'still waiting 1 ms before its timeout');
      io.clock.advance(1);
      assert.equal(await within(done, 'watch to give up'), 1);
      assert.match(io.err(), /^Error: Unavailable: no X509-SVID message from .* within 10m\n$/);
      await eventually(() => h.cache.subscriberCount() === before, 'the subscription to go');
    } finally {
      h.caller = [{ type: 'unix', value: 'uid:1001' }];
      h.cache.removeEntry('spiffe://example.org/pending');
    }
  });

  test('the timeout is for the first message only: a watch that got it outlasts the timeout and prints the next update', async () => {
    const io = Object.assign(captureIo(), { clock: new FakeClock() });
    const done = apiCommand(['watch', '--count', '2', '--timeout', '300ms', '--socket-path', h.socketPath], io);
    await eventually(() => io.out().includes('Received 1 svid'), 'the first message');
    // The watch's timeout runs out, on the clock the command was given.
    io.clock.advance(300);
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
    h.cache.rotate(APP_A);
    assert.equal(await within(done, 'the first watch to end after 2 messages'), 0, io.err());
    assert.equal((io.out().match(/Received 1 svid/g) ?? []).length, 2, 'the update after the timeout was printed');
  });
});

describe('meshid-agent api --timeout that runs out (attestation stubbed: caller entitled, SVID never issued)', () => {
  const timedOut = (socket: string, timeout: string): string =>
    `Error: Unavailable: the agent on ${socket} did not answer within the timeout (${timeout}): is meshid-agent running and not overloaded? A longer --timeout gives it more time\n`;

  test('an agent whose answer does not come within --timeout: one line naming the socket and the timeout, not grpc-js\'s "waiting for name resolution"', async () => {
    // The SVID is never issued, so no answer comes whatever the machine's load: the timeout always runs out first,
    // at 1 ms before the connection is even made (grpc-js said "waiting for name resolution"), at 300 ms after.
    h.cache.addEntry('unix:uid:1004', 'spiffe://example.org/pending-fetch', { issued: false });
    h.caller = [{ type: 'unix', value: 'uid:1004' }];
    try {
      for (const timeout of ['1ms', '300ms']) {
        const r = await within(api(['fetch', 'x509', '--timeout', timeout, '--socket-path', h.socketPath]), 'fetch to give up', 5000);
        assert.equal(r.code, 1);
        assert.equal(r.err, timedOut(h.socketPath, timeout));
      }
    } finally {
      h.caller = [{ type: 'unix', value: 'uid:1001' }];
      h.cache.removeEntry('spiffe://example.org/pending-fetch');
    }
  });
});

test('a flag an api command refuses to run without is marked required in its --help', async () => {
  let checked = 0;
  for (const command of [['fetch', 'x509'], ['fetch', 'jwt'], ['fetch', 'bundle'], ['validate', 'jwt'], ['watch']]) {
    const bare = await api([...command, '--socket-path', path.join(tmp, 'none.sock'), '--timeout', '1s']);
    const required = /flag (--[a-z-]+) is required/.exec(bare.err)?.[1];
    if (required === undefined) continue;
    checked++;
    const line = (await api([...command, '--help'])).out.split('\n').find((l) => l.trimStart().startsWith(`${required} `));
    assert.ok(line !== undefined && /\brequired\b/.test(line), `api ${command.join(' ')}: ${required} is required but its help says:\n${line}`);
  }
  assert.ok(checked >= 2, `only ${checked} commands with a required flag were found`);
});
