import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isMeshidError } from '../../../src/common/errors.js';
import { generateKeyPair } from '../../../src/common/x509/keys.js';
import { LeafSigner } from '../../../src/common/x509/leaf-signer.js';
import { PresentedCertificates } from '../../../src/server/api/presented-certificates.js';
import { makePki, T0 } from '../x509/pki-fixture.js';

const HOUR = 3_600_000;

test('a certificate presented again is parsed once; another certificate, even of the same agent, name and key, never gets its result', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const { publicKey } = generateKeyPair('ec-p256');
  const issue = (id: string): Buffer => signer.sign({ publicKey, spiffeId: id, notBefore: T0, notAfter: T0 + HOUR });
  // Two SVIDs of one agent (the same name, key and validity; their serials differ) and another agent's.
  const [a1, a2, b] = [issue('spiffe://example.org/meshid/agent/east/a'), issue('spiffe://example.org/meshid/agent/east/a'), issue('spiffe://example.org/meshid/agent/east/b')];
  const memo = new PresentedCertificates();
  // grpc-js hands every reader a new copy of the DER.
  const first = memo.parse(Buffer.from(a1));
  assert.equal(memo.parse(Buffer.from(a1)), first, 'the same bytes: the same result');
  const second = memo.parse(Buffer.from(a2));
  const other = memo.parse(Buffer.from(b));
  assert.notEqual(second, first);
  assert.notEqual(second.serialHex, first.serialHex);
  assert.deepEqual(other.uriSans, ['spiffe://example.org/meshid/agent/east/b']);
  for (const [der, parsed] of [[a1, first], [a2, second], [b, other]] as const) {
    assert.ok(parsed.der.equals(der));
    assert.equal(memo.parse(Buffer.from(der)), parsed, 'each finds its own, interleaved');
  }

  // The result holds its own copy: bytes the caller reuses afterwards change nothing.
  const reused = Buffer.from(issue('spiffe://example.org/meshid/agent/east/c'));
  const c = memo.parse(reused);
  const original = Buffer.from(reused);
  reused.fill(0);
  assert.ok(c.der.equals(original));
  assert.throws(() => memo.parse(reused), (err: unknown) => isMeshidError(err, 'invalid_argument'), 'the zeroed bytes are parsed as what they are');
  assert.equal(memo.parse(original), c);
});

test('the memo is bounded: the least recently presented certificate goes first and is parsed again when it comes back', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const ders = [0, 1, 2].map((i) => signer.sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: `spiffe://example.org/meshid/agent/east/${i}`, notBefore: T0, notAfter: T0 + HOUR }));
  const memo = new PresentedCertificates(2);
  const zero = memo.parse(ders[0]!);
  const one = memo.parse(ders[1]!);
  assert.equal(memo.parse(ders[0]!), zero, 'zero is now the most recent');
  memo.parse(ders[2]!); // evicts one
  assert.equal(memo.parse(ders[0]!), zero);
  const oneAgain = memo.parse(ders[1]!);
  assert.notEqual(oneAgain, one, 'parsed again');
  assert.equal(oneAgain.serialHex, one.serialHex);
});

test('a restart storm: more agents admitted at once than the memo holds have each certificate parsed once, by admission, for the call gate and the first authentication', async () => {
  const { east } = await makePki('ec-p256');
  const signer = new LeafSigner(east.der, east.privateKey);
  const ders = [0, 1, 2, 3, 4].map((i) => signer.sign({ publicKey: generateKeyPair('ec-p256').publicKey, spiffeId: `spiffe://example.org/meshid/agent/east/${i}`, notBefore: T0, notAfter: T0 + HOUR }));
  const memo = new PresentedCertificates(2);
  // Every connection is admitted before any call of theirs arrives (grpc-js hands each reader a new copy).
  const admitted = ders.map((der) => memo.parse(Buffer.from(der)));
  const releases = admitted.map((cert) => memo.hold(cert));
  assert.equal(memo.heldCount, 5);
  for (const [i, der] of ders.entries()) assert.equal(memo.parse(Buffer.from(der)), admitted[i], `the gate finds agent ${i}'s admission parse`);
  for (const [i, der] of ders.entries()) assert.equal(memo.parse(Buffer.from(der), { authenticated: true }), admitted[i], `so does its authentication`);
  assert.equal(memo.heldCount, 0, 'once authenticated, a certificate is held only as the bounded memo holds any');
  for (const release of releases) release();
  // The bound applies again: the two authenticated last are remembered, the first is parsed again.
  assert.equal(memo.parse(Buffer.from(ders[4]!)), admitted[4]);
  assert.notEqual(memo.parse(Buffer.from(ders[0]!)), admitted[0]);

  // A connection that closes before any call of its own lets its certificate go.
  const late = memo.parse(Buffer.from(ders[1]!));
  const release = memo.hold(late);
  release();
  assert.equal(memo.heldCount, 0);
});
