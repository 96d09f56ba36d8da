/**
 * A revoked root's trust anchors (revoked-roots.ts): which of its recorded PKI roots it chains to, which published
 * certificates are that anchor again, and which the agent API's TLS layer leaves out. Certificates made with openssl.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import { pemToDerList } from '../../../src/common/x509/pem.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import type { CaRecord } from '../../../src/server/ca/ca-journal.js';
import type { LoadedAuthority } from '../../../src/server/ca/loaded-authority.js';
import { anchorsForRevokedRootsOnly, republishedAnchors, revokedRootRecord, rootChainsTo } from '../../../src/server/ca/revoked-roots.js';
import { opensslCa, type OpensslCaFiles } from '../../support/openssl.js';
import { tempDir } from '../../support/server-kit.js';

const der = (ca: OpensslCaFiles): Buffer => pemToDerList(readFileSync(ca.cert, 'utf8'))[0]!;

function root(id: string, ca: OpensslCaFiles, upstream: { chain?: Buffer[]; anchors?: Buffer[] } = {}): LoadedAuthority {
  const record = { id, kind: 'root', upstreamChainDer: upstream.chain, upstreamAnchorsDer: upstream.anchors } as CaRecord;
  return { record, key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, cert: parseCertificate(der(ca)) };
}

function pki(t: { after(fn: () => void): void }) {
  const { dir, cleanup } = tempDir('meshid-revoked-roots-');
  t.after(cleanup);
  const rootA = opensslCa(dir, 'Corporate Root A');
  const rootB = opensslCa(dir, 'Corporate Root B');
  const mesh = opensslCa(dir, 'Mesh CA', { issuer: rootA });
  const meshAgain = opensslCa(dir, 'Mesh CA 2', { issuer: rootA });
  const issuing = opensslCa(dir, 'Issuing CA', { issuer: rootA });
  const meshUnderIssuing = opensslCa(dir, 'Mesh CA 3', { issuer: issuing });
  const own = opensslCa(dir, 'meshid root CA');
  const reissued = opensslCa(dir, 'Corporate Root A again', { subject: '/O=Example Corp/CN=Corporate Root A', reuseKey: rootA.key });
  const rekeyed = opensslCa(dir, 'Corporate Root A rekeyed', { subject: '/O=Example Corp/CN=Corporate Root A' });
  // After the certificates: openssl dates them from the second it runs.
  return { rootA, rootB, mesh, meshAgain, issuing, meshUnderIssuing, own, reissued, rekeyed, now: Date.now() };
}

test('a revoked upstream CA keeps as anchors the PKI roots it chains to, not every root of the bundle it was taken on with', (t) => {
  const { rootA, rootB, mesh, now } = pki(t);
  const record = revokedRootRecord(root('root-1', mesh, { anchors: [der(rootA), der(rootB)] }), now);
  assert.deepEqual(record.anchorsDer, [der(rootA)]);
  // Should none verify, every recorded anchor is kept.
  assert.deepEqual(revokedRootRecord(root('root-1', mesh, { anchors: [der(rootB)] }), now).anchorsDer, [der(rootB)]);
});

test('a self-issued root chains to itself only, and a journal root of its own does not keep a revoked PKI root in the TLS layer', (t) => {
  const { rootA, mesh, meshAgain, own: ownCa, now } = pki(t);
  const own = root('root-2', ownCa);
  assert.equal(rootChainsTo(own, der(rootA), now), false);
  assert.equal(rootChainsTo(own, own.cert!.der, now), true);
  const revoked = revokedRootRecord(root('root-1', mesh, { anchors: [der(rootA)] }), now);
  const republished = republishedAnchors([revoked], [own.cert!.der, der(rootA)]);
  assert.deepEqual(anchorsForRevokedRootsOnly(republished, [own], now), [der(rootA)]);
  // A journal root still under A keeps A, or its agents would be cut off.
  assert.deepEqual(anchorsForRevokedRootsOnly(republished, [own, root('root-3', meshAgain)], now), []);
});

test('a PKI root re-issued with the same name and key is the revoked anchor again; one of the same name and a new key is not', (t) => {
  const { rootA, mesh, reissued, rekeyed, now } = pki(t);
  const revoked = revokedRootRecord(root('root-1', mesh, { anchors: [der(rootA)] }), now);
  assert.deepEqual(
    republishedAnchors([revoked], [der(rekeyed), der(reissued), der(rootA)]).map((r) => r.anchorDer),
    [der(reissued), der(rootA)],
  );
});

test('an upstream CA under a PKI intermediate chains to the PKI root through the issuers recorded with it, and keeps that root in the TLS layer', (t) => {
  const { rootA, mesh, issuing, meshUnderIssuing, now } = pki(t);
  const underIssuing = root('root-4', meshUnderIssuing, { chain: [der(issuing)], anchors: [der(rootA)] });
  assert.equal(rootChainsTo(underIssuing, der(rootA), now), true);
  assert.equal(rootChainsTo(root('root-4', meshUnderIssuing, { anchors: [der(rootA)] }), der(rootA), now), false, 'not without its issuer');
  const revoked = revokedRootRecord(root('root-1', mesh, { anchors: [der(rootA)] }), now);
  assert.deepEqual(anchorsForRevokedRootsOnly(republishedAnchors([revoked], [der(rootA)]), [underIssuing], now), []);
});
