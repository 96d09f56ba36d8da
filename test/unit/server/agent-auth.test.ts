import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { generateKeyPair, spkiDer } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { parseCertificate } from '../../../src/common/x509/certificate.js';
import { agentSvidId, authenticateAgent, type AgentLookup } from '../../../src/server/api/agent-auth.js';
import { Oid, signatureAlgorithmFor } from '../../../src/common/x509/algorithms.js';
import { buildCertificate } from '../../../src/common/x509/certificate-builder.js';
import {
  authorityKeyIdentifierValue,
  basicConstraintsValue,
  extension,
  keyIdentifierOfSpki,
  subjectAltNameValue,
  subjectKeyIdentifierValue,
} from '../../../src/common/x509/extensions.js';
import { encodeName } from '../../../src/common/x509/name.js';
import type { AttestedAgent } from '../../../src/server/datastore/datastore.js';
import { makePki, T0 } from '../x509/pki-fixture.js';

const ID = 'spiffe://example.org/meshid/agent/east/a1';
const PREFIX = 'spiffe://example.org/meshid/agent/';
const HOUR = 3_600_000;

/** What grpc-js hands a handler: the TLS peer certificate the handshake verified. */
const callWith = (der: Buffer) => ({ getAuthContext: () => ({ sslPeerCertificate: { raw: der } }) }) as never;

test('an agent SVID is checked on every call: current or not-yet-replaced previous serial, unexpired, and using the current one retires the previous', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const issue = () => signer.sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + HOUR });
  const [older, current] = [issue(), issue()];
  const record: AttestedAgent = {
    spiffeId: ID, datacenter: 'east', selectors: [], certSerial: parseCertificate(current).serialHex,
    previousCertSerial: parseCertificate(older).serialHex, certNotAfter: T0 + HOUR, attestedAt: T0, updatedAt: T0, banned: false,
  };
  const retired: string[] = [];
  const agents: AgentLookup = {
    getAgent: async (id) => (id === ID ? { ...record } : undefined),
    retirePreviousAgentCert: async (id, serial) => {
      retired.push(serial);
      if (id === ID && serial === record.certSerial) delete record.previousCertSerial;
    },
  };
  const refused = (pattern: RegExp) => (e: unknown) => isMeshidError(e, 'permission_denied') && pattern.test(e.message);

  assert.equal((await authenticateAgent(callWith(older), agents, PREFIX, T0 + 1)).presentedSerial, parseCertificate(older).serialHex);
  assert.deepEqual(retired, [], 'the previous serial in use retires nothing');
  await assert.rejects(authenticateAgent(callWith(current), agents, PREFIX, T0 + HOUR), refused(/^must re-attest: .* SVID expired at /));
  const first = await authenticateAgent(callWith(current), agents, PREFIX, T0 + 2);
  assert.deepEqual([first.presentedSerial, first.retiredPrevious], [record.certSerial, true]);
  assert.deepEqual(retired, [record.certSerial]);
  await assert.rejects(authenticateAgent(callWith(older), agents, PREFIX, T0 + 3), refused(/is no longer agent .*'s SVID \(serial [0-9a-f]+\): another holder of this identity renewed it since/));
  assert.equal((await authenticateAgent(callWith(current), agents, PREFIX, T0 + 4)).retiredPrevious, false);
  assert.equal(retired.length, 1, 'retired once');
});

test('an expired agent SVID whose agent the server already pruned is refused as expired, not as never attested', async () => {
  const { east } = await makePki('ec-p256');
  const svid = new LeafSigner(east.der, east.privateKey).sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, notBefore: T0, notAfter: T0 + HOUR });
  const none: AgentLookup = { getAgent: async () => undefined, retirePreviousAgentCert: async () => undefined };
  const refused = (pattern: RegExp) => (e: unknown) => isMeshidError(e, 'permission_denied') && pattern.test(e.message);
  await assert.rejects(authenticateAgent(callWith(svid), none, PREFIX, T0 + 2 * HOUR), refused(/^must re-attest: agent \S+'s SVID expired at /));
  await assert.rejects(authenticateAgent(callWith(svid), none, PREFIX, T0 + 1), refused(/^must re-attest: agent \S+ is not attested \(evicted or never attested\)$/));
});

test("an agent SVID newer than the one the server recorded is refused as the server's datastore going back, not as a copy", async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const issue = (notBefore: number, notAfter: number) => signer.sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, notBefore, notAfter });
  // Signed after the record last changed: the renewal that made it is missing from the datastore.
  const [recorded, newer] = [issue(T0, T0 + HOUR), issue(T0 + HOUR / 2, T0 + 2 * HOUR)];
  const record: AttestedAgent = {
    spiffeId: ID, datacenter: 'east', selectors: [], certSerial: parseCertificate(recorded).serialHex,
    certNotAfter: T0 + HOUR, attestedAt: T0, updatedAt: T0, banned: false,
  };
  const agents: AgentLookup = { getAgent: async () => ({ ...record }), retirePreviousAgentCert: async () => undefined };
  await assert.rejects(authenticateAgent(callWith(newer), agents, PREFIX, T0 + 1), (e: unknown) =>
    isMeshidError(e, 'permission_denied') && /^must re-attest: the client certificate is newer than agent .* current SVID as the server recorded it \(the server's datastore was restored from an older backup\)/.test(e.message) && e.data === undefined);
});

test('an older agent SVID that ends later than the current one (agent_svid_ttl lowered since) is refused as a copy, not as the datastore going back', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const issue = (notBefore: number, notAfter: number) => signer.sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: ID, notBefore, notAfter });
  // Both hosts held the 24 h SVID; one renewed it at half-life under the new 1 h TTL, which the record then took.
  const copied = issue(T0, T0 + 24 * HOUR);
  const current = issue(T0 + 12 * HOUR, T0 + 13 * HOUR);
  const record: AttestedAgent = {
    spiffeId: ID, datacenter: 'east', selectors: [], certSerial: parseCertificate(current).serialHex,
    certNotAfter: T0 + 13 * HOUR, attestedAt: T0, updatedAt: T0 + 12 * HOUR + 10_000, banned: false,
  };
  const agents: AgentLookup = { getAgent: async () => ({ ...record }), retirePreviousAgentCert: async () => undefined };
  await assert.rejects(authenticateAgent(callWith(copied), agents, PREFIX, T0 + 12 * HOUR + 60_000), (e: unknown) =>
    isMeshidError(e, 'permission_denied') && /another holder of this identity renewed it since/.test(e.message) && e.data?.['supersededBy'] === record.certSerial);
});

test('a certificate with more than one URI SAN is no agent SVID, even when the first names an agent', async () => {
  const { east } = await makePki('ec-p256');
  const issuer = parseCertificate(east.der);
  const keys = generateKeyPair('ec-p256');
  const spki = spkiDer(keys.publicKey);
  // meshid never signs such a certificate; another CA the bundle trusts (an upstream one) could.
  const der = buildCertificate(
    {
      issuerName: issuer.structure.subjectName,
      subjectName: encodeName([['O', 'meshid']]),
      notBefore: T0,
      notAfter: T0 + HOUR,
      spki,
      extensions: [
        extension(Oid.basicConstraints, true, basicConstraintsValue(false)),
        extension(Oid.subjectKeyIdentifier, false, subjectKeyIdentifierValue(keyIdentifierOfSpki(spki))),
        extension(Oid.authorityKeyIdentifier, false, authorityKeyIdentifierValue(Buffer.from(issuer.subjectKeyId!, 'hex'))),
        extension(Oid.subjectAltName, false, subjectAltNameValue([ID, 'spiffe://example.org/web'], [])),
      ],
    },
    { key: east.privateKey, algorithm: signatureAlgorithmFor(east.privateKey) },
  );
  assert.equal(agentSvidId(parseCertificate(der), PREFIX), undefined);
  const looked: string[] = [];
  const agents: AgentLookup = { getAgent: async (id) => (looked.push(id), undefined), retirePreviousAgentCert: async () => undefined };
  await assert.rejects(authenticateAgent(callWith(der), agents, PREFIX, T0 + 1000), (err: unknown) => isMeshidError(err, 'permission_denied') && /not an agent SVID/.test(err.message));
  assert.deepEqual(looked, [], 'refused before any agent record is read');
});
