import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { caProfileProblems } from '../../../src/common/x509/ca-profile.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { pemToDerList } from '../../../src/common/x509/pem.js';
import { opensslCa } from '../../support/openssl.js';

// The profile an operator's upstream CA is checked against at start (ca-profile.ts): each flaw a strict verifier
// refuses is named, and what those verifiers accept is not refused.

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-ca-profile-'));
after(() => fs.rmSync(DIR, { recursive: true, force: true }));

const BC = 'basicConstraints=critical,CA:TRUE';
const KU = 'keyUsage=critical,keyCertSign,cRLSign';
const SKI = 'subjectKeyIdentifier=hash';
const AKI = 'authorityKeyIdentifier=keyid';
const root = opensslCa(DIR, 'Root');
const problemsOf = (name: string, opts: { extensions?: string[]; serial?: string }): string[] =>
  caProfileProblems(parseCertificate(pemToDerList(fs.readFileSync(opensslCa(DIR, name, { issuer: root, ...opts }).cert, 'utf8'))[0]!));

test('a CA meeting the profile has no problem, with an extKeyUsage allowing both TLS purposes or any purpose', () => {
  assert.deepEqual(problemsOf('good', {}), []);
  assert.deepEqual(problemsOf('both-purposes', { extensions: [BC, KU, SKI, AKI, 'extendedKeyUsage=serverAuth,clientAuth'] }), []);
  assert.deepEqual(problemsOf('any-purpose', { extensions: [BC, KU, SKI, AKI, 'extendedKeyUsage=anyExtendedKeyUsage'] }), []);
});

test('a zero serial, a keyUsage without keyCertSign and a missing subjectKeyIdentifier are each named', () => {
  assert.deepEqual(problemsOf('zero-serial', { serial: '0' }), ['has a serial number that is not positive']);
  assert.deepEqual(problemsOf('ku-without-certsign', { extensions: [BC, 'keyUsage=critical,cRLSign,digitalSignature', SKI, AKI] }), ['has a keyUsage without keyCertSign']);
  assert.deepEqual(problemsOf('no-ski', { extensions: [BC, KU, 'subjectKeyIdentifier=none', AKI] }), ['has no subjectKeyIdentifier']);
  assert.deepEqual(problemsOf('client-only', { extensions: [BC, KU, SKI, AKI, 'extendedKeyUsage=clientAuth'] }), ['has an extKeyUsage without both serverAuth and clientAuth']);
});
