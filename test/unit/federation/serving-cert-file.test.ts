import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { spawnSync } from 'node:child_process';
import { FakeClock } from '../../../src/common/clock.js';
import { MeshidError } from '../../../src/common/errors.js';
import { createLogger } from '../../../src/common/log.js';
import { ServingCertFile, type ServingCert } from '../../../src/server/federation/serving-cert-file.js';
import { opensslCa, opensslWebLeaf } from '../../support/openssl.js';
import { teardown } from '../../support/teardown.js';

function setup(t: { after(fn: () => void): void }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-serving-cert-'));
  teardown(t).after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const ca = opensslCa(dir, 'web-ca');
  const files = { certFile: path.join(dir, 'live.pem'), keyFile: path.join(dir, 'live.key'), syncIntervalMs: 60_000 };
  /** Puts a renewal in place the way certbot does: new files renamed over the live ones. */
  const install = (pair: { cert: string; key: string }, which: 'both' | 'cert' = 'both'): void => {
    fs.copyFileSync(pair.cert, `${files.certFile}.new`);
    fs.renameSync(`${files.certFile}.new`, files.certFile);
    if (which === 'both') {
      fs.copyFileSync(pair.key, `${files.keyFile}.new`);
      fs.renameSync(`${files.keyFile}.new`, files.keyFile);
    }
  };
  const lines: string[] = [];
  const log = createLogger({ name: 'test', level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) });
  return { dir, ca, files, install, lines, log };
}

const serial = (cert: ServingCert): string => new X509Certificate(cert.certChainPem).serialNumber;

test('the https_web certificate files are reloaded when renewed; a pair that does not load leaves the last good one served', (t) => {
  const { dir, ca, files, install, lines, log } = setup(t);
  const first = opensslWebLeaf(dir, ca, 'first');
  install(first);
  const clock = new FakeClock(Date.now());
  const watched = ServingCertFile.start(files, clock, log);
  teardown(t).after(() => watched.stop());
  const seen: string[] = [];
  watched.onChange((cert) => seen.push(serial(cert)));
  const firstSerial = serial(watched.cert());
  assert.equal(firstSerial, new X509Certificate(fs.readFileSync(first.cert)).serialNumber);
  assert.equal(watched.cert().certChainPem.match(/BEGIN CERTIFICATE/g)?.length, 2, 'the chain is presented whole');

  clock.advance(60_000);
  assert.deepEqual(seen, [], 'unchanged files are not reloaded');

  // A renewal caught half-way: the new certificate is in place, its key not yet.
  const second = opensslWebLeaf(dir, ca, 'second');
  install(second, 'cert');
  clock.advance(60_000);
  clock.advance(60_000);
  assert.deepEqual(seen, []);
  assert.equal(serial(watched.cert()), firstSerial, 'the previous pair is still served');
  assert.equal(lines.filter((l) => l.includes('do not load')).length, 1, 'the failure is logged once, not every interval');
  assert.match(lines.find((l) => l.includes('do not load'))!, /is not the key of the first certificate/);

  install(second);
  clock.advance(60_000);
  const secondSerial = new X509Certificate(fs.readFileSync(second.cert)).serialNumber;
  assert.deepEqual(seen, [secondSerial]);
  assert.equal(serial(watched.cert()), secondSerial);
  assert.ok(lines.some((l) => l.includes('bundle endpoint certificate reloaded')));

  watched.stop();
  install(first);
  clock.advance(120_000);
  assert.deepEqual(seen, [secondSerial], 'stopped: no more reloads');
});

test('at start, https_web certificate files that do not load are an error naming the file', (t) => {
  const { dir, ca, files, install, log } = setup(t);
  const clock = new FakeClock(Date.now());
  const start = (): ServingCertFile => ServingCertFile.start(files, clock, log);
  assert.throws(start, (e: unknown) => e instanceof MeshidError && e.code === 'invalid_argument' && e.message.includes(`certificate ${files.certFile}: no such file (ENOENT)`));
  const a = opensslWebLeaf(dir, ca, 'a');
  const b = opensslWebLeaf(dir, ca, 'b');
  install(a);
  fs.copyFileSync(b.key, files.keyFile);
  assert.throws(start, /the bundle endpoint key .*live\.key is not the key of the first certificate in .*live\.pem/);
  fs.writeFileSync(files.certFile, 'not a certificate');
  assert.throws(start, /the bundle endpoint certificate .*live\.pem does not parse: no PEM "CERTIFICATE" block found/);
});

test('a pair that TLS itself refuses (an RSA-512 key) is refused at start and never handed to the live server', (t) => {
  const { dir, ca, files, install, lines, log } = setup(t);
  const good = opensslWebLeaf(dir, ca, 'good');
  install(good);
  const clock = new FakeClock(Date.now());
  const watched = ServingCertFile.start(files, clock, log);
  teardown(t).after(() => watched.stop());
  const seen: string[] = [];
  watched.onChange((cert) => seen.push(serial(cert)));
  // A pair whose key matches its certificate, which OpenSSL's default security level will not serve.
  const weak = { cert: path.join(dir, 'weak.pem'), key: path.join(dir, 'weak.key') };
  for (const args of [
    ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:512', '-out', weak.key],
    ['req', '-new', '-key', weak.key, '-subj', '/CN=localhost', '-out', `${weak.key}.csr`],
    ['x509', '-req', '-in', `${weak.key}.csr`, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', '99', '-days', '1', '-out', weak.cert],
  ]) {
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
  install(weak);
  clock.advance(60_000);
  assert.deepEqual(seen, [], 'not handed on');
  assert.match(lines.find((l) => l.includes('do not load')) ?? '', /TLS refuses the bundle endpoint certificate/);
  assert.throws(() => ServingCertFile.start(files, clock, log), /TLS refuses the bundle endpoint certificate .*live\.pem and key .*live\.key/);
});
