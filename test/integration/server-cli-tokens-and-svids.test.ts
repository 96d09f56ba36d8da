/**
 * meshid-server's CLI against a real server process, for join tokens, agents, the CA and minted SVIDs
 * (server-cli-bundles.test.ts has bundles and federation, server-cli-entries.test.ts the entries): every admin command
 * runs as a child process, and its stdout, stderr and exit status are checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { bundleFromSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { validateJwtSvid } from '../../src/common/jwt/jwt-svid.js';
import { opensslVerify } from '../support/openssl.js';
import { assertError, assertOk, cli, dir, field, serverOutput, startServerCliFixture, TD } from '../support/server-cli-fixture.js';

startServerCliFixture('meshid-server-cli-tokens-');

test("token generate prints spire-server's one line, Token: <value>, on stdout (so `| awk '{print $2}'` gets the token alone), its expiry and datacenter on stderr", async () => {
  const r = await cli(['token', 'generate', '--datacenter', 'west', '--ttl', '5m']);
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split('\n');
  assert.match(r.out, /^Token: [A-Za-z0-9_-]{20,}\n$/);
  const awk = r.out.split('\n').filter((line) => line !== '').map((line) => line.split(/\s+/)[1]);
  assert.deepEqual(awk, [lines[0]!.slice('Token: '.length)], "awk '{print $2}' prints the token and nothing else");
  const notes = r.err.split('\n');
  assert.match(notes[0]!, /^Expires at: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.deepEqual(notes.slice(1), ['Datacenter: west', '']);

  const json = await cli(['token', 'generate', '--output', 'json']);
  assertOk(json);
  const doc = JSON.parse(json.out) as { value: string; expires_at: string };
  assert.deepEqual(Object.keys(doc), ['value', 'expires_at'], "spire-server's JoinToken");
  assert.ok(doc.value.length >= 20 && Number(doc.expires_at) > 0);
  assert.notEqual(doc.value, lines[0]!.slice('Token: '.length), 'every token is new');
  assert.match((await cli(['token', 'generate'])).err, /^Datacenter: east$/m, 'the first datacenter is the default');
});

test('token generate refuses an unknown datacenter and a bad TTL', async () => {
  assertError(await cli(['token', 'generate', '--datacenter', 'north']), /^Error: InvalidArgument: datacenter "north" is not served/);
  assertError(await cli(['token', 'generate', '--datacenter', 'east', '--selector', 'meshid:datacenter:west']), /^Error: InvalidArgument: selector type "meshid" is reserved/);
  assertError(await cli(['token', 'generate', '--ttl', '-5']), /^Error: InvalidArgument: flag --ttl needs a value/);
  assertError(await cli(['token', 'generate', '--ttl', '30d']), /^Error: InvalidArgument: ttl must be between/);
});

test('--ttl 0 means the server default, as the admin API and the help say, for token generate, jwt mint and x509 mint', async () => {
  for (const command of [['token', 'generate'], ['jwt', 'mint'], ['x509', 'mint']]) {
    assert.match((await cli([...command, '--help'])).out, /--ttl DURATION +.*; 0 or absent: the server default/, command.join(' '));
  }
  // The server's default is 600 s: the token expires 600 s after a moment between these two readings of the clock.
  const before = Math.floor(Date.now() / 1000);
  const zero = await cli(['token', 'generate', '--ttl', '0', '--output', 'json']);
  const after = Math.ceil(Date.now() / 1000);
  assertOk(zero);
  const expiresAt = Number((JSON.parse(zero.out) as { expires_at: string }).expires_at);
  assert.ok(expiresAt >= before + 600 && expiresAt <= after + 600, `expires at ${expiresAt}, made between ${before} and ${after}`);
  const jwt = await cli(['jwt', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--audience', 'db', '--ttl', '0s']);
  assertOk(jwt);
  const claims = JSON.parse(Buffer.from(jwt.out.trim().split('.')[1]!, 'base64url').toString()) as { exp: number; iat: number };
  assert.equal(claims.exp - claims.iat, 300, 'the default JWT-SVID TTL, 5m');
  assertOk(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--ttl', '0']));
});

test('token revoke takes an unused token out, from the flag or standard input; a second revoke is NotFound', async () => {
  const generated = await cli(['token', 'generate', '--datacenter', 'west', '--output', 'json']);
  const { value: token, expires_at } = JSON.parse(generated.out) as { value: string; expires_at: string };
  const r = await cli(['token', 'revoke', '-token', token]);
  assertOk(r);
  assert.equal(r.out, `Join token revoked.\nDatacenter: west\nWould have expired at: ${new Date(Number(expires_at) * 1000).toISOString()}\n`);
  assertError(
    await cli(['token', 'revoke', '--token', token]),
    /^Error: NotFound: no unused join token has this value: it is mistyped, was revoked already, expired, or was used by an agent \(see `meshid-server agent list`/,
  );

  const piped = (await cli(['token', 'generate'])).out.split('\n')[0]!.slice('Token: '.length);
  const json = await cli(['token', 'revoke', '--token', '-', '--output', 'json'], { stdin: `${piped}\n` });
  assertOk(json);
  assert.equal((JSON.parse(json.out) as { datacenter: string }).datacenter, 'east');

  // `token generate | token revoke --token -`: the whole output piped, the token read from its Token: line.
  const whole = (await cli(['token', 'generate', '--datacenter', 'west'])).out;
  const wholeRevoked = await cli(['token', 'revoke', '--token', '-'], { stdin: whole });
  assertOk(wholeRevoked);
  assert.match(wholeRevoked.out, /^Join token revoked\.\nDatacenter: west\n/);

  assert.equal(serverOutput.includes(token) || serverOutput.includes(piped), false, 'the server logs no token');
});

test('token revoke --token - refuses standard input holding more than one token, without showing it', async () => {
  const tokens = [(await cli(['token', 'generate'])).out, (await cli(['token', 'generate'])).out].map((out) => /^Token: (\S+)$/m.exec(out)![1]!);
  const r = await cli(['token', 'revoke', '--token', '-'], { stdin: `${tokens.join('\n')}\n` });
  assertError(r, /^Error: InvalidArgument: --token - found more than a join token on standard input \(not shown, as it may hold one\): standard input must hold the join token alone, as `meshid-server token generate` prints it after "Token: ", or that command's whole output$/);
  for (const token of tokens) assert.equal(r.err.includes(token.slice(0, 12)), false, 'no token is shown');
  // Neither was revoked: each still revokes on its own.
  for (const token of tokens) assertOk(await cli(['token', 'revoke', '--token', token]));
});

test('token revoke refuses a missing, empty or never-issued token', async () => {
  assertError(await cli(['token', 'revoke']), /^Error: InvalidArgument: flag --token is required \(the join token to revoke, or - to read it from standard input; --all revokes every unused one\)$/);
  assertError(await cli(['token', 'revoke', '--token', '-'], { stdin: '\n' }), /^Error: InvalidArgument: --token - found no token on standard input$/);
  assertError(await cli(['token', 'revoke', '--token', 'deadbeef']), /^Error: NotFound: no unused join token has this value/);
  const help = await cli(['token', 'revoke', '--help']);
  assertOk(help);
  assert.match(help.out, /--token TOKEN/);
  assert.match(help.out, /- reads it from standard input/);
});

test('agent commands list agents and report unknown or malformed agent IDs', async () => {
  const list = await cli(['agent', 'list']);
  assertOk(list);
  assert.equal(list.out, 'Found 0 attested agents\n');
  const json = await cli(['agent', 'list', '--datacenter', 'east', '--output', 'json']);
  assertOk(json);
  assert.deepEqual(JSON.parse(json.out), { agents: [], next_page_token: '' });
  // A misspelt datacenter is refused as token generate refuses it, not answered with an empty list.
  const unserved = /^Error: InvalidArgument: datacenter "esat" is not served by this server \(configured: east, west\)$/;
  assertError(await cli(['agent', 'list', '--datacenter', 'esat']), unserved);
  assertError(await cli(['token', 'generate', '--datacenter', 'esat']), unserved);
  assertError(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/t`, '--datacenter', 'esat']), unserved);
  for (const sub of ['show', 'evict', 'ban']) {
    assertError(await cli(['agent', sub, '--spiffe-id', `spiffe://${TD}/meshid/agent/ghost`]), /^Error: NotFound: agent .* not found$/);
    assertError(await cli(['agent', sub, '-spiffeID', 'ghost']), /^Error: InvalidArgument: SPIFFE ID "ghost" is not a SPIFFE ID/);
  }
});

test('ca show lists the root, one intermediate per datacenter and the JWT key, with state, expiry and fingerprint', async () => {
  const r = await cli(['ca', 'show']);
  assertOk(r);
  assert.equal(field(r.out, 'Trust domain'), TD);
  const blocks = r.out.split('\n\n').slice(1);
  const kinds = blocks.map((b) => `${field(b, 'Kind')}/${field(b, 'Datacenter')}`).sort();
  assert.deepEqual(kinds, ['intermediate/east', 'intermediate/west', 'jwt/-', 'root/-']);
  for (const b of blocks) {
    assert.equal(field(b, 'State'), 'active');
    assert.match(field(b, 'Not after'), /^\d{4}-\d\d-\d\dT/);
    assert.notEqual(field(b, 'Fingerprint'), '');
  }
  const json = await cli(['ca', 'show', '--output', 'json']);
  assertOk(json);
  const doc = JSON.parse(json.out) as { trust_domain: string; authorities: Array<{ kind: string; fingerprint: string; upstream_ca: boolean }> };
  assert.equal(doc.trust_domain, TD);
  const root = doc.authorities.find((a) => a.kind === 'root')!;
  assert.equal(root.upstream_ca, false, 'a root meshid made is not marked as an upstream CA');
  const rootDer = pemToDerList((await cli(['bundle', 'show'])).out)[0]!;
  assert.equal(root.fingerprint.replace(/:/g, '').toLowerCase(), new X509Certificate(rootDer).fingerprint256.replace(/:/g, '').toLowerCase());
});

test('x509 mint --write leaves an SVID that openssl verifies strictly, its private key (0600) and the bundle', async () => {
  const out = path.join(dir, 'minted');
  const r = await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--ttl', '1h', '--dns', 'tool.local', '--datacenter', 'west', '--write', out]);
  assertOk(r);
  assert.match(r.out, /svid\.pem/);
  const chain = pemToDerList(fs.readFileSync(path.join(out, 'svid.pem'), 'utf8'));
  const roots = pemToDerList(fs.readFileSync(path.join(out, 'bundle.pem'), 'utf8'));
  assert.equal(chain.length, 2, 'leaf and the DC intermediate');
  const verdict = opensslVerify({ roots, intermediates: chain.slice(1), leaf: chain[0]! });
  assert.ok(verdict.ok, verdict.output);

  const leaf = new X509Certificate(chain[0]!);
  assert.match(leaf.subjectAltName ?? '', new RegExp(`URI:spiffe://${TD}/tool`));
  assert.match(leaf.subjectAltName ?? '', /DNS:tool\.local/);
  assert.match(new X509Certificate(chain[1]!).subject, /OU=west/);
  const lifetime = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
  assert.ok(lifetime <= 3600_000 + 60_000 && lifetime >= 3600_000 - 60_000, `lifetime ${lifetime} ms`);

  const keyFile = path.join(out, 'key.pem');
  assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
  const keyPem = fs.readFileSync(keyFile, 'utf8');
  assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8');
  assert.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)), 'the key matches the certificate');

  // --output json: the paths written, and the expiry in Unix seconds. A document of meshid's own, not in spire-server's
  // shape (it prints lines here), so the int64 is a JSON number, as in `ca show` and `backup`, not protojson's string.
  const json = await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--write', out, '--output', 'json']);
  assertOk(json);
  const doc = JSON.parse(json.out) as Record<string, unknown>;
  assert.deepEqual(Object.keys(doc), ['spiffe_id', 'expires_at', 'svid_path', 'key_path', 'bundle_path']);
  assert.equal(typeof doc['expires_at'], 'number');
  const minted = new X509Certificate(pemToDerList(fs.readFileSync(path.join(out, 'svid.pem'), 'utf8'))[0]!);
  assert.equal(doc['expires_at'], Date.parse(minted.validTo) / 1000, "the leaf's notAfter, in Unix seconds");
  assert.deepEqual([doc['svid_path'], doc['key_path'], doc['bundle_path']], ['svid.pem', 'key.pem', 'bundle.pem'].map((f) => path.join(out, f)));
});

test('x509 mint --write: a file where the directory should be is refused before signing; a new directory is 0700', async () => {
  const file = path.join(dir, 'mint-target-file');
  fs.writeFileSync(file, 'keep');
  assertError(
    await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--write', file]),
    /^Error: FailedPrecondition: --write .*mint-target-file is a file, not a directory: name the directory the PEM files go to$/,
  );
  assert.equal(fs.readFileSync(file, 'utf8'), 'keep');
  const fresh = path.join(dir, 'mint-new', 'nested');
  assertOk(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--write', fresh]));
  assert.equal(fs.statSync(fresh).mode & 0o777, 0o700, 'it receives a private key, as api fetch --write');
});

test('x509 mint --write cut short leaves no new svid.pem beside a key or bundle it did not write, and no temp file: the SVID is written last', async () => {
  const out = path.join(dir, 'mint-cut-short');
  for (const blocked of ['key.pem', 'bundle.pem']) {
    assertOk(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--write', out]));
    const before = fs.readFileSync(path.join(out, 'svid.pem'), 'utf8');
    // A directory where the file goes makes its rename fail (EISDIR), for real, as a kill between renames would stop.
    fs.rmSync(path.join(out, blocked));
    fs.mkdirSync(path.join(out, blocked));
    assertError(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--write', out]), /^Error: FailedPrecondition: cannot write to .*: EISDIR$/);
    assert.equal(fs.readFileSync(path.join(out, 'svid.pem'), 'utf8'), before, `svid.pem replaced though ${blocked} was not`);
    assert.deepEqual(fs.readdirSync(out).filter((n) => n.endsWith('.tmp')), []);
    fs.rmdirSync(path.join(out, blocked));
  }
});

test('x509 mint without --write prints the SVID, key and bundle', async () => {
  const r = await cli(['x509', 'mint', '-spiffeID', `spiffe://${TD}/tool2`]);
  assertOk(r);
  assert.match(r.out, /^X509-SVID .*:\n-----BEGIN CERTIFICATE-----/);
  assert.match(r.out, /\nPrivate key:\n-----BEGIN PRIVATE KEY-----/);
  assert.match(r.out, /\nRoot CAs:\n-----BEGIN CERTIFICATE-----/);
  assertError(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/meshid/agent/x`]), /^Error: InvalidArgument: .*reserved/);
  // The namespace's root too, which no identity of meshid's uses yet.
  assertError(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/meshid`]), /^Error: InvalidArgument: spiffe:\/\/example\.org\/meshid is in the reserved \/meshid namespace \(server and agent identities\) and cannot be minted$/);
  assertError(await cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/t`, '--datacenter', 'north']), /^Error: InvalidArgument: datacenter "north"/);
});

test('jwt mint prints a JWT-SVID that validates against the JWT keys of bundle show', async () => {
  const r = await cli(['jwt', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--audience', 'db', '--audience', 'cache', '--ttl', '60']);
  assertOk(r);
  const token = r.out.trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
  const bundle = bundleFromSpiffeJson(TD, (await cli(['bundle', 'show', '--format', 'spiffe'])).out);
  const valid = validateJwtSvid(token, {
    audience: 'cache',
    now: Date.now(),
    findKey: (td, kid) => (td === TD ? bundle.jwtAuthorities.find((k) => k.kid === kid)?.publicKey : undefined),
  });
  assert.equal(valid.spiffeId, `spiffe://${TD}/tool`);
  assert.deepEqual(valid.claims['aud'], ['db', 'cache']);
  assert.equal(Number(valid.claims['exp']) - Number(valid.claims['iat']), 60);

  assertError(await cli(['jwt', 'mint', '--spiffe-id', `spiffe://${TD}/tool`]), /^Error: InvalidArgument: flag --audience is required/);
  assertError(await cli(['jwt', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--audience', 'a', '--ttl', '1d']), /^Error: InvalidArgument: ttl 1d exceeds .*: ask for less, or raise max_jwt_svid_ttl in the server config/);
  // The bounds the Workload API and the agent's SignJwtSvid hold, so that no path mints an unbounded token.
  const many = Array.from({ length: 65 }, (_, i) => ['--audience', `a${i}`]).flat();
  assertError(await cli(['jwt', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, ...many]), /^Error: InvalidArgument: too many audiences: 65 \(at most 64\)/);
  assertError(await cli(['jwt', 'mint', '--spiffe-id', `spiffe://${TD}/tool`, '--audience', 'x'.repeat(1025)]), /^Error: InvalidArgument: audience\[0\] is longer than 1024 bytes/);
});

test('--help works for every command without a server', async () => {
  for (const command of [['entry', 'create'], ['bundle', 'show'], ['x509', 'mint'], ['healthcheck']]) {
    const r = await cli([...command, '--help'], { env: { MESHID_ADMIN_SOCKET: path.join(dir, 'none.sock') } });
    assertOk(r);
    assert.match(r.out, new RegExp(`^Usage: meshid-server ${command.join(' ')} `));
  }
});
