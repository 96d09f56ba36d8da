/**
 * https_spiffe authenticates the bundle endpoint by its X509-SVID, so its leaf must be an SVID leaf (X509-SVID §4.3,
 * §5.2): not a CA, digitalSignature set, neither keyCertSign nor cRLSign. Each endpoint certificate here is made by
 * the openssl CLI with exactly the extensions under test, signed by a root the fetch trusts, and served on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fetchFederatedBundle } from '../../../src/server/federation/bundle-fetch.js';
import { compileRelationships } from '../../../src/server/federation/relationship.js';
import { jobFreeKeyPair } from '../../support/job-free-key-pair.js';

const ENDPOINT_ID = 'spiffe://partner.org/server';
const BUNDLE = JSON.stringify({ keys: [], spiffe_sequence: 1 });

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
[dn]
[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[svid_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
subjectAltName = critical,URI:${ENDPOINT_ID}
[ca_leaf]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature
subjectAltName = critical,URI:${ENDPOINT_ID}
[key_agreement_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,keyAgreement
subjectAltName = critical,URI:${ENDPOINT_ID}
[cert_sign_leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyCertSign
subjectAltName = critical,URI:${ENDPOINT_ID}
[no_key_usage_leaf]
subjectAltName = critical,URI:${ENDPOINT_ID}
`;

function pemToDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** A root and, per extension section of OPENSSL_CONFIG, a leaf for ENDPOINT_ID signed by it. */
class EndpointPki {
  readonly dir = mkdtempSync(join(tmpdir(), 'meshid-endpoint-leaf-'));
  readonly rootDer: Buffer;

  constructor() {
    writeFileSync(join(this.dir, 'openssl.cnf'), OPENSSL_CONFIG);
    this.writeKey('root');
    this.openssl(['-subj', '/CN=partner.org root', '-key', 'root.key', '-extensions', 'root_ext', '-out', 'root.pem']);
    this.rootDer = pemToDer(readFileSync(join(this.dir, 'root.pem'), 'utf8'));
  }

  leaf(section: string): { cert: string; key: string } {
    const key = this.writeKey(section);
    this.openssl(['-subj', `/CN=${section}`, '-key', `${section}.key`, '-CA', 'root.pem', '-CAkey', 'root.key', '-extensions', section, '-out', `${section}.pem`]);
    return { cert: readFileSync(join(this.dir, `${section}.pem`), 'utf8'), key };
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }

  private writeKey(name: string): string {
    const pem = jobFreeKeyPair('ec', { namedCurve: 'prime256v1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(join(this.dir, `${name}.key`), pem, { mode: 0o600 });
    return pem;
  }

  private openssl(args: string[]): void {
    const full = ['req', '-x509', '-new', '-config', 'openssl.cnf', '-days', '2', '-sha256', ...args];
    const r = spawnSync('openssl', full, { cwd: this.dir, encoding: 'utf8' });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`openssl ${full.join(' ')} failed: ${r.stdout}${r.stderr}`);
  }
}

async function fetchFrom(t: { after(fn: () => void): void }, pki: EndpointPki, section: string): Promise<unknown> {
  const server = https.createServer(pki.leaf(section), (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(BUNDLE);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const [rel] = compileRelationships(
    {
      'partner.org': {
        bundle_endpoint_url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/`,
        bundle_endpoint_profile: 'https_spiffe',
        endpoint_spiffe_id: ENDPOINT_ID,
      },
    },
    'example.org',
  );
  return fetchFederatedBundle(rel!, [pki.rootDer], 5000);
}

test('an https_spiffe endpoint whose certificate is an X509-SVID leaf is fetched', async (t) => {
  const pki = new EndpointPki();
  t.after(() => pki.dispose());
  const doc = (await fetchFrom(t, pki, 'svid_leaf')) as { bundle: { trustDomain: string } };
  assert.equal(doc.bundle.trustDomain, 'partner.org');
});

for (const [section, reason] of [
  ['ca_leaf', /the endpoint's certificate for spiffe:\/\/partner\.org\/server is a CA certificate \(basicConstraints cA is true\), not an X509-SVID leaf/],
  ['key_agreement_leaf', /the endpoint's certificate for spiffe:\/\/partner\.org\/server lacks keyUsage digitalSignature, which an X509-SVID leaf must set/],
  ['cert_sign_leaf', /the endpoint's certificate for spiffe:\/\/partner\.org\/server sets keyUsage keyCertSign, which an X509-SVID leaf must not/],
  ['no_key_usage_leaf', /the endpoint's certificate for spiffe:\/\/partner\.org\/server has no keyUsage extension; an X509-SVID leaf must set digitalSignature/],
] as const) {
  test(`an https_spiffe endpoint serving a ${section.replaceAll('_', ' ')} is refused, naming what is wrong`, async (t) => {
    const pki = new EndpointPki();
    t.after(() => pki.dispose());
    await assert.rejects(fetchFrom(t, pki, section), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'unavailable');
      assert.match(err.message, /^bundle endpoint https:\/\/127\.0\.0\.1:\d+\/ of partner\.org: /);
      assert.match(err.message, reason);
      return true;
    });
  });
}
