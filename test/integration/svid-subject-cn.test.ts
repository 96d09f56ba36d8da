/**
 * The subject of X.509-SVIDs a real server signs (meshid-server x509 mint, which signs through the same CA manager
 * path as the SVIDs of entries): CN = the first DNS name, as SPIRE's server sets it, for tools that map a CN to a
 * user; none without DNS names or when the first is longer than a CN may be. Read with `openssl x509 -subject` and
 * verified with `openssl verify -x509_strict`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { parseCertificate } from '../../src/common/x509/certificate.js';
import { opensslVerify } from '../support/openssl.js';
import { tempDir } from '../support/server-kit.js';
import { startServerProcess, type ServerProcess } from '../support/server-process.js';

const TD = 'example.org';
let server: ServerProcess;
let dir: string;
let cleanup: () => void;

before(async () => {
  const t = tempDir('meshid-svid-subject-');
  dir = t.dir;
  cleanup = t.cleanup;
  server = await startServerProcess(dir);
});

after(async () => {
  await server?.stop();
  cleanup?.();
});

/** `openssl x509 -subject` of a PEM file's first certificate, in RFC 2253 order (most specific first). */
function opensslSubject(pemFile: string): string {
  const r = spawnSync('openssl', ['x509', '-in', pemFile, '-noout', '-subject', '-nameopt', 'RFC2253'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

async function mint(name: string, dns: string[]): Promise<{ subject: string; leaf: Buffer; chain: Buffer[]; roots: Buffer[] }> {
  const out = path.join(dir, name);
  const r = await server.cli(['x509', 'mint', '--spiffe-id', `spiffe://${TD}/${name}`, ...dns.flatMap((d) => ['--dns', d]), '--write', out]);
  assert.equal(r.code, 0, r.err);
  const chain = pemToDerList(fs.readFileSync(path.join(out, 'svid.pem'), 'utf8'));
  const roots = pemToDerList(fs.readFileSync(path.join(out, 'bundle.pem'), 'utf8'));
  return { subject: opensslSubject(path.join(out, 'svid.pem')), leaf: chain[0]!, chain, roots };
}

test('a server-signed X.509-SVID carries its first DNS name as subject CN, its SPIFFE ID only in the URI SAN, and verifies strictly', async () => {
  const m = await mint('db', ['db.default.svc', 'db.local']);
  assert.equal(m.subject, 'subject=CN=db.default.svc,O=meshid');
  const leaf = parseCertificate(m.leaf);
  assert.deepEqual(leaf.uriSans, [`spiffe://${TD}/db`]);
  assert.deepEqual(leaf.dnsNames, ['db.default.svc', 'db.local']);
  const v = opensslVerify({ roots: m.roots, intermediates: m.chain.slice(1), leaf: m.leaf });
  assert.ok(v.ok, v.output);
});

test('a server-signed X.509-SVID without DNS names, or whose first is over 64 characters, has subject O=meshid alone and verifies strictly', async () => {
  const long = `${'a'.repeat(56)}.svc.test`;
  for (const [name, dns] of [['plain', []], ['long', [long, 'long.local']]] as const) {
    const m = await mint(name, [...dns]);
    assert.equal(m.subject, 'subject=O=meshid', name);
    assert.deepEqual(parseCertificate(m.leaf).dnsNames, dns);
    const v = opensslVerify({ roots: m.roots, intermediates: m.chain.slice(1), leaf: m.leaf });
    assert.ok(v.ok, `${name}: ${v.output}`);
  }
});
