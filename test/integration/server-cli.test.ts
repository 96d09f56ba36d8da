/**
 * meshid-server's CLI against a real server process: health checks, empty lists, a server that cannot answer, unknown
 * flags, and the key types bundle set takes. Every admin command runs as a child process, as an operator or a script
 * would run it, and its stdout, stderr and exit status are checked. (server-cli-entries.test.ts has the entries,
 * server-cli-bundles.test.ts bundles and federation, server-cli-tokens-and-svids.test.ts tokens, agents, the CA and
 * minted SVIDs.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { certificatesToPem, pemToDerList } from '../../src/common/x509/pem.js';
import { bundleFromSpiffeJson, bundleToSpiffeJson } from '../../src/common/spiffe/bundle.js';
import { opensslSelfSigned } from '../support/openssl.js';
import { assertError, assertOk, cli, dir, socket, startServerCliFixture, TD } from '../support/server-cli-fixture.js';

startServerCliFixture('meshid-server-cli-');

test('healthcheck reports a healthy server and exits 0, with SPIRE probes\' -shallow too', async () => {
  const r = await cli(['healthcheck']);
  assertOk(r);
  assert.equal(r.out, 'Server is healthy.\n');
  const shallow = await cli(['healthcheck', '-shallow']);
  assertOk(shallow);
  assert.equal(shallow.out, 'Server is healthy.\n');
  const verbose = await cli(['healthcheck', '-shallow', '-verbose']);
  assert.equal(verbose.code, 0, verbose.err);
  assert.equal(verbose.out, 'Server is healthy.\n');
  assert.equal(verbose.err, `Checking meshid-server on ${socket}...\n`);
});

test('every list command on a server with nothing to list says "Found 0 …" rather than printing nothing', async () => {
  // Runs before any test creates entries, bundles, relationships or agents.
  for (const [command, expected] of [
    [['entry', 'show'], 'Found 0 entries\n'],
    [['agent', 'list'], 'Found 0 attested agents\n'],
    [['federation', 'list'], 'Found 0 federation relationships\n'],
    [['bundle', 'list'], 'Found 0 federated bundles\n'],
  ] as const) {
    const r = await cli([...command]);
    assertOk(r);
    assert.equal(r.out, expected, command.join(' '));
  }
});

test('healthcheck on a socket nobody serves exits 1 with an Unavailable line', async () => {
  const r = await cli(['healthcheck', '--admin-socket', path.join(dir, 'nope.sock')]);
  assertError(r, /^Error: Unavailable: cannot reach meshid-server on .*nope\.sock/);
});

test('another user than the server\'s is told to run as that user, not asked whether the server is running', { skip: process.getuid?.() !== 0 && 'needs root to run the CLI as another user' }, async () => {
  // The admin socket's directory admits only the server's user (0700); nobody (65534) cannot reach the socket.
  const r = await cli(['healthcheck'], { uid: 65534 });
  assertError(r, /^Error: Unavailable: cannot reach meshid-server on .*admin\.sock \(permission denied\): run this as the user meshid-server runs as \(or root\)$/);
});

test("the server's own UNAVAILABLE (a datastore another process holds locked) keeps its message; it is not a connection failure", async () => {
  const db = new Database(path.join(dir, 'data', 'datastore.sqlite3'));
  db.prepare('BEGIN IMMEDIATE').run();
  try {
    const r = await cli(['entry', 'create', '--spiffe-id', `spiffe://${TD}/locked`, '--parent-id', `spiffe://${TD}/agent-1`, '--selector', 'unix:uid:4']);
    assertError(r, /^Error: Unavailable: .*locked/);
    assert.doesNotMatch(r.err, /cannot reach|is it running/);
  } finally {
    db.prepare('ROLLBACK').run();
    db.close();
  }
});

test('bundle set takes Ed25519 roots, which "bundle list --format spiffe" writes as OKP keys with the certificate (RFC 8037)', async () => {
  const ca = ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign'];
  const roots = [
    opensslSelfSigned({ subject: '/CN=partner EC root', extensions: ca, serial: '01', days: 1 }),
    opensslSelfSigned({ subject: '/CN=partner Ed25519 root', extensions: ca, serial: '02', days: 1, keyAlgorithm: 'ed25519' }),
  ];
  // Before OKP keys were written, this was refused (and, before that, taken and then failed every agent's state save).
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'ed-partner.org'], { stdin: certificatesToPem(roots) }));
  const listed = await cli(['bundle', 'list', '--trust-domain', 'ed-partner.org', '--format', 'spiffe']);
  assertOk(listed);
  const keys = (JSON.parse(listed.out) as { keys: Array<Record<string, unknown>> }).keys;
  assert.deepEqual(keys.map((k) => [k['kty'], k['crv'], k['use']]), [['EC', 'P-256', 'x509-svid'], ['OKP', 'Ed25519', 'x509-svid']]);
  for (const [i, k] of keys.entries()) {
    assert.deepEqual(k['x5c'], [roots[i]!.toString('base64')]);
    if (k['kty'] === 'OKP') assert.deepEqual(Object.keys(k).sort(), ['crv', 'kty', 'use', 'x', 'x5c']);
  }
  // Read back as meshid reads its own documents (the agents' state), key members checked against each certificate.
  assert.deepEqual(bundleFromSpiffeJson('ed-partner.org', listed.out).x509Authorities, roots);
  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'ed-partner.org']));
});

test('an Ed448 root never reaches "bundle list --format spiffe", which SPIRE and go-spiffe would refuse whole: refused in PEM, ignored in a SPIFFE document', async () => {
  const ca = ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign'];
  const ec = opensslSelfSigned({ subject: '/CN=partner EC root', extensions: ca, serial: '01', days: 1 });
  const ed448 = opensslSelfSigned({ subject: '/CN=partner Ed448 root', extensions: ca, serial: '03', days: 1, keyAlgorithm: 'ed448' });
  assertError(
    await cli(['bundle', 'set', '--trust-domain', 'ed448-partner.org'], { stdin: certificatesToPem([ec, ed448]) }),
    /^Error: InvalidArgument: certificate 2 of the bundle \("CN=partner Ed448 root"\) has an ed448 key: .*Ed25519 keys only \(not Ed448: SPIRE and go-spiffe refuse a whole bundle document holding an Ed448 key\)/,
  );
  assertError(await cli(['bundle', 'list', '--trust-domain', 'ed448-partner.org']), /^Error: NotFound: /);
  // A partner's SPIFFE document may list one for other consumers: it is ignored (Bundle §4.2.1), the rest taken, and
  // the operator is told which key was left out (stderr), not left to believe it trusted.
  const okp = { kty: 'OKP', use: 'x509-svid', crv: 'Ed448', x: new X509Certificate(ed448).publicKey.export({ format: 'jwk' }).x, x5c: [ed448.toString('base64')] };
  const ecKey = JSON.parse(bundleToSpiffeJson({ trustDomain: 'ed448-partner.org', x509Authorities: [ec], jwtAuthorities: [], sequence: 1 })).keys[0];
  const set = await cli(['bundle', 'set', '--trust-domain', 'ed448-partner.org', '--format', 'spiffe'], { stdin: JSON.stringify({ keys: [okp, ecKey] }) });
  assert.equal(set.code, 0, set.err);
  assert.match(set.err, /^Warning: SPIFFE bundle for ed448-partner\.org: keys\[0\]: an x509-svid key of type "OKP" on curve "Ed448", which meshid cannot use .*; the key is ignored\n$/);
  const listed = await cli(['bundle', 'list', '--trust-domain', 'ed448-partner.org', '--format', 'spiffe']);
  assertOk(listed);
  assert.deepEqual((JSON.parse(listed.out) as { keys: Array<Record<string, unknown>> }).keys.map((k) => [k['kty'], k['crv']]), [['EC', 'P-256']]);
  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'ed448-partner.org']));
});

test('bundle set refuses a CA whose key no SPIFFE bundle JWK carries (DSA, EC on secp256k1), naming it; nothing is stored', async () => {
  const ca = ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign'];
  const ec = opensslSelfSigned({ subject: '/CN=partner EC root', extensions: ca, serial: '01', days: 1 });
  const dsa = opensslSelfSigned({ subject: '/CN=partner DSA root', extensions: ca, serial: '02', days: 1, keyAlgorithm: 'dsa' });
  const k1 = opensslSelfSigned({ subject: '/CN=partner secp256k1 root', extensions: ca, serial: '03', days: 1, keyAlgorithm: 'secp256k1' });
  assertError(
    await cli(['bundle', 'set', '--trust-domain', 'odd-partner.org'], { stdin: certificatesToPem([ec, dsa]) }),
    /^Error: InvalidArgument: certificate 2 of the bundle \("CN=partner DSA root"\) has a dsa key: .*EC keys on P-256, P-384 or P-521, RSA keys and Ed25519 keys only/,
  );
  assertError(
    await cli(['bundle', 'set', '--trust-domain', 'odd-partner.org'], { stdin: certificatesToPem([k1]) }),
    /^Error: InvalidArgument: certificate 1 of the bundle \("CN=partner secp256k1 root"\) has an EC secp256k1 key: /,
  );
  assertError(await cli(['bundle', 'list', '--trust-domain', 'odd-partner.org']), /^Error: NotFound: /);
});

test('a root stored before the key checks (DSA) is left out of "bundle list --format spiffe" with a warning, not the whole document (written into the datastore directly: no input path takes it now)', async () => {
  const ca = ['basicConstraints=critical,CA:true', 'keyUsage=critical,keyCertSign'];
  const ec = opensslSelfSigned({ subject: '/CN=legacy partner EC root', extensions: ca, serial: '01', days: 1 });
  const dsa = opensslSelfSigned({ subject: '/CN=legacy partner DSA root', extensions: ca, serial: '02', days: 1, keyAlgorithm: 'dsa' });
  assertOk(await cli(['bundle', 'set', '--trust-domain', 'legacy-partner.org'], { stdin: certificatesToPem([ec]) }));
  const db = new Database(path.join(dir, 'data', 'datastore.sqlite3'));
  try {
    db.prepare('UPDATE bundles SET x509_authorities = ? WHERE trust_domain = ?').run(JSON.stringify([dsa, ec].map((d) => d.toString('base64'))), 'legacy-partner.org');
  } finally {
    db.close();
  }
  const listed = await cli(['bundle', 'list', '--trust-domain', 'legacy-partner.org', '--format', 'spiffe']);
  assert.equal(listed.code, 0, listed.err);
  assert.deepEqual(bundleFromSpiffeJson('legacy-partner.org', listed.out).x509Authorities, [ec]);
  assert.match(listed.err, /^Warning: X\.509 authority 0 of legacy-partner\.org \("CN=legacy partner DSA root"\) has a dsa key, which no SPIFFE bundle JWK of meshid's carries: left out of the document\n$/);
  // PEM carries any certificate: nothing left out, nothing said.
  const pem = await cli(['bundle', 'list', '--trust-domain', 'legacy-partner.org']);
  assertOk(pem);
  assert.deepEqual(pemToDerList(pem.out), [dsa, ec]);
  assert.equal(pem.err, '');
  assertOk(await cli(['bundle', 'delete', '--trust-domain', 'legacy-partner.org']));
});

test('unknown flags fail with a suggestion and exit 1', async () => {
  assertError(await cli(['entry', 'create', '--spiffe-idd', 'x']), /^Error: InvalidArgument: unknown flag --spiffe-idd \(did you mean --spiffe-id\?\)$/);
  assertError(await cli(['entry', 'shwo']), /^Error: InvalidArgument: unknown command "meshid-server entry shwo" \(did you mean "show"\?\)$/);
});
