import { invalidArgument } from '../../common/errors.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { parseCertificateLazily } from '../../common/x509/certificate.js';
import { verifyParsedChain } from '../../common/x509/chain-verification.js';
import { importPrivateKey, keyMatchesCertificate } from '../../common/x509/keys.js';
import { issuedChainCheckTime } from '../client/server-clock.js';
import type { AgentEntry } from './agent-entry.js';
import { sharedCaCertificate } from './shared-ca-certificates.js';
import type { UnsignedKeys } from './unsigned-keys.js';
import type { WorkloadSvid } from './workload-cache.js';

/**
 * One X.509-SVID request as the issuer (svid-issuer.ts) sees it: a P-256 key never sent anywhere (new, or kept from a
 * failed attempt: unsigned-keys.ts), a CSR for it, and the check of the chain the server answers with before it is
 * served. Kept apart from the issuer's scheduling: nothing here knows about queues, retries or the signing budget.
 */

/** What a CSR was made with: what the chain signed for it is checked against. */
export interface SentKey {
  /** PKCS#8 DER. */
  readonly pkcs8: Buffer;
  readonly spki: Buffer;
  /** The entry's certificate inputs when the CSR was made (certificateInputs). */
  readonly inputs: string;
}

export interface BuiltBatch {
  readonly keys: Map<string, SentKey & { entry: AgentEntry }>;
  readonly items: Array<{ entryId: string; csr: Buffer }>;
}

/** A key not yet certified and its CSR per entry. */
async function buildBatch(batch: readonly AgentEntry[], unsigned: UnsignedKeys): Promise<BuiltBatch> {
  const keys: BuiltBatch['keys'] = new Map();
  const items: BuiltBatch['items'] = [];
  for (const entry of batch) {
    const { pkcs8, spki, inputs, csr } = await unsigned.keyFor(entry);
    keys.set(entry.id, { entry, pkcs8, spki, inputs });
    items.push({ entryId: entry.id, csr });
  }
  return { keys, items };
}

/**
 * The most answer bytes one SignX509Svids call is expected to bring back. The agent's channel keeps gRPC's default
 * receive limit of 4 MiB, and an answer over it fails the whole call (RESOURCE_EXHAUSTED, "Received message larger
 * than max"): the batch is retried as it was, for ever. DNS names have no count limit (as in SPIRE), so 250 entries of
 * some 300 long names each pass it. A quarter of the limit is left for the estimate's slack; entries of ordinary size
 * (a few KB of chain each) still go 250 to a call.
 */
export const SIGN_ANSWER_BYTES = 3 * 1024 * 1024;

/** Bytes of a string on the wire or in a certificate, with its tag and length prefix (at most 4 bytes below 2 MiB). */
const field = (s: string): number => Buffer.byteLength(s) + 4;

/**
 * The leaf's bytes beside its names: its key (P-256, 91 bytes), the issuer's name, validity, serial, extensions and an
 * intermediate's signature (512 bytes for RSA-4096), and the answer item's entry ID, code and expiry: under 1.5 KB.
 */
const LEAF_AND_ITEM_BYTES = 2048;

/**
 * An upper estimate of one entry's item in a SignX509Svids answer: the leaf, whose size grows with its SPIFFE ID and
 * DNS names (the SAN, and the first name again as CN), and the CA certificates above it (`caChainBytes`).
 */
export function expectedAnswerBytes(entry: AgentEntry, caChainBytes: number): number {
  let n = LEAF_AND_ITEM_BYTES + field(entry.spiffeId) + caChainBytes;
  for (const d of entry.dnsNames) n += field(d);
  if (entry.dnsNames[0] !== undefined) n += field(entry.dnsNames[0]);
  return n;
}

/**
 * The CA certificates' bytes an answer's chains carry, for expectedAnswerBytes: the most a signed chain carried so
 * far, or before any, a guess from the bundle (an intermediate and the CAs above it, each about a root's size, and
 * room for an upstream chain) that errs high.
 */
export class CaChainBytes {
  private seen = 0;

  observe(chain: readonly Buffer[]): void {
    let n = 0;
    for (let i = 1; i < chain.length; i++) n += chain[i]!.length + 4;
    if (n > this.seen) this.seen = n;
  }

  estimate(bundle: TrustBundle | undefined): number {
    if (this.seen > 0) return this.seen;
    const roots = (bundle?.x509Authorities ?? []).reduce((sum, der) => sum + der.length, 0);
    return 2 * roots + 4096;
  }
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Builds each batch's keys and CSRs in an event-loop turn of its own, after the previous batch's. Built together, the
 * batches in flight interleaved item by item and no request left before all of them were built; one after another,
 * each request is on the wire while the next batch is built, the server signs one batch while the agent builds the
 * next, and the first SVIDs of a mass rotation come back after one batch's work.
 */
export class BatchBuilder {
  private lastBuild: Promise<unknown> = Promise.resolve();

  constructor(private readonly unsigned: UnsignedKeys) {}

  buildInTurn(batch: readonly AgentEntry[]): Promise<BuiltBatch> {
    const built = this.lastBuild.then(nextTurn).then(() => buildBatch(batch, this.unsigned));
    this.lastBuild = built.catch(() => undefined);
    return built;
  }
}

/**
 * The chain must name the entry, certify our key and verify against the bundle it will be served with. `onLeaf` sees
 * the leaf before it is checked (SvidIssuerOptions.onSigned: the clocks' skew is read from every answer).
 */
export function checkedSvid(
  entry: AgentEntry,
  chain: readonly Buffer[],
  sent: SentKey,
  now: number,
  onLeaf: (leaf: { notBefore: number; notAfter: number }) => void,
  cache: { ownBundle(): TrustBundle | undefined },
): WorkloadSvid {
  if (chain.length === 0) throw invalidArgument('empty certificate chain');
  const leaf = parseCertificateLazily(Buffer.from(chain[0]!));
  onLeaf(leaf);
  if (leaf.uriSans.length !== 1 || leaf.uriSans[0] !== entry.spiffeId) {
    throw invalidArgument(`the signed certificate names ${leaf.uriSans.join(', ') || 'no URI'} instead of ${entry.spiffeId}`);
  }
  // Byte equality is the common case (the server copies the key as sent); another encoding of the same key is
  // left to OpenSSL to judge.
  if (!leaf.structure.spki.equals(sent.spki) && !keyMatchesCertificate(importPrivateKey(sent.pkcs8), leaf.der)) {
    throw invalidArgument('the signed certificate does not certify the key sent');
  }
  const bundle = cache.ownBundle();
  if (bundle === undefined) throw invalidArgument('no trust bundle to verify the chain against');
  // Signed just now by the server: checked at its notBefore when that is ahead of this host's clock (a server
  // whose clock runs ahead), or no SVID would ever be accepted (issuedChainCheckTime).
  verifyParsedChain(leaf, chain.slice(1), bundle.x509Authorities, issuedChainCheckTime(leaf.notBefore, now, 'the X509-SVID'), { requireEndEntity: true });
  return {
    entryId: entry.id,
    spiffeId: entry.spiffeId,
    hint: entry.hint,
    chain: [leaf.der, ...chain.slice(1).map(sharedCaCertificate)],
    // Copied into Node's pooled slabs: the key's own buffer (unsigned-keys.ts) also holds its CSR, of no use from now.
    privateKey: Buffer.from(sent.pkcs8),
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    version: leaf.serialHex,
    inputs: sent.inputs,
  };
}
