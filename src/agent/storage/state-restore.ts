import { bundleFromSpiffeJson, type TrustBundle } from '../../common/spiffe/bundle.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import { parseCertificateLazily } from '../../common/x509/certificate.js';
import { verifyCaChain, verifyParsedChain } from '../../common/x509/chain-verification.js';
import { privateKeyMatchesSpki } from '../../common/x509/key-match.js';
import { sharedCaCertificate } from '../cache/shared-ca-certificates.js';
import { invalidArgument } from '../../common/errors.js';
import type { EntryMessage } from '../../common/entry-message.js';
import { entryFromMessage, type AgentEntry } from '../cache/agent-entry.js';
import type { WorkloadSvid } from '../cache/workload-cache.js';
import type { SvidDocument } from './state-documents.js';
import { parseStateDocument, unb64, type RawState, type StoredState } from './stored-state.js';

/** An SVID that was in the file but is not restored, and why. */
export interface DroppedSvid {
  readonly entryId: string;
  readonly reason: string;
}

/**
 * Parses the state document. The document as a whole must be well-formed (else invalid_argument); single SVIDs that
 * can no longer be served — expired at `now`, entry gone or renamed, key not matching, chain not verifying against the
 * stored bundle — are left out and listed in `dropped`, so the rest still serves.
 */
export function decodeState(text: string, now: number): { state: StoredState; dropped: DroppedSvid[] } {
  return restoreState(parseStateDocument(Buffer.from(text, 'utf8')), now);
}

/** Checks a raw state (decodeState's rules) and turns it into what the agent serves. */
export function restoreState(raw: RawState, now: number): { state: StoredState; dropped: DroppedSvid[] } {
  const trustDomain = parseTrustDomain(raw.trustDomain);
  const bundle = bundleFromSpiffeJson(trustDomain, JSON.stringify(raw.bundle ?? null));
  const federatedBundles = Object.entries(raw.federatedBundles ?? {}).map(([td, b]) => bundleFromSpiffeJson(td, JSON.stringify(b)));
  const entries = [...raw.entries.values()].map(storedEntry);
  const byId = new Map(entries.map((e) => [e.id, e]));
  const svids: WorkloadSvid[] = [];
  const dropped: DroppedSvid[] = [];
  const issuers = raw.seal === 'intact' ? issuerChecker(bundle, now) : undefined;
  for (const [entryId, doc] of raw.svids) {
    try {
      svids.push(restoreSvid(doc, byId.get(entryId), bundle, now, issuers));
    } catch (err) {
      dropped.push({ entryId, reason: (err as Error).message });
    }
  }
  return { state: { trustDomain, revision: raw.revision, bundle, federatedBundles, entries, svids }, dropped };
}

/**
 * A stored entry, as entryFromMessage checks the server's. Its id is held to its type here: protobuf gives the
 * server's entries a string, a hand-edited file can give a number, which entryFromMessage took as the id (keyed apart
 * from its SVID's "5", and compared as a number). A TypeError, as every field of the wrong type is (asDamage).
 */
function storedEntry(m: EntryMessage): AgentEntry {
  const id: unknown = m?.id;
  if (id !== undefined && typeof id !== 'string') throw new TypeError(`an entry's id is ${id === null ? 'null' : `a ${typeof id}`} (${String(id)}), not a string`);
  return entryFromMessage(m);
}

/**
 * What an SVID must pass to be served again. From a sealed state the leaf is not parsed or re-verified: its
 * signature, key match, SPIFFE ID and extensions were checked when the agent received it, and the seal shows the
 * bytes are unchanged since (~70 µs per SVID, most of an agent's start with 10,000 SVIDs cached). That gives up
 * nothing: the bundle they would be checked against sits in the same file, so whoever could forge a sealed SVID
 * could replace the bundle too. What can change with time or with the bundle is checked either way: the leaf's
 * validity (as recorded on receipt), and its CA chain up to a root of the current bundle.
 */
function restoreSvid(
  raw: SvidDocument | undefined,
  entry: AgentEntry | undefined,
  bundle: TrustBundle,
  now: number,
  /** Present when the state is sealed. */
  sealedIssuers: IssuerChecker | undefined,
): WorkloadSvid {
  if (entry === undefined) throw invalidArgument('its entry is not in the state');
  if (raw?.spiffe_id !== entry.spiffeId) throw invalidArgument(`it names ${raw?.spiffe_id}, the entry now ${entry.spiffeId}`);
  const encoded = raw.svid_chain ?? [];
  if (encoded.length === 0) throw invalidArgument('it has no certificate');
  const keyDer = unb64(raw.private_key, 'private_key');
  const svid = (chain: readonly Buffer[], notBefore: number, notAfter: number, version: string): WorkloadSvid => ({
    entryId: entry.id,
    spiffeId: entry.spiffeId,
    hint: entry.hint,
    chain,
    privateKey: keyDer,
    notBefore,
    notAfter,
    version,
    ...(typeof raw.inputs === 'string' ? { inputs: raw.inputs } : {}),
  });
  const { not_before: notBefore, not_after: notAfter, serial } = raw;
  if (sealedIssuers && encoded.length > 1 && typeof notBefore === 'number' && typeof notAfter === 'number' && typeof serial === 'string') {
    if (now < notBefore) throw invalidArgument(`it is not valid before ${new Date(notBefore).toISOString()}`);
    if (now > notAfter) throw invalidArgument(`it expired at ${new Date(notAfter).toISOString()}`);
    return svid([unb64(encoded[0], 'svid_chain[0]'), ...sealedIssuers(encoded.slice(1))], notBefore, notAfter, serial);
  }
  const chain = encoded.map((c, i) => unb64(c, `svid_chain[${i}]`));
  const leaf = parseCertificateLazily(chain[0]!);
  if (leaf.uriSans.length !== 1 || leaf.uriSans[0] !== entry.spiffeId) throw invalidArgument('its certificate names another SPIFFE ID');
  if (!privateKeyMatchesSpki(keyDer, leaf.structure.spki)) throw invalidArgument('its key does not match its certificate');
  // Also fails for an expired leaf: only what is valid now is served.
  verifyParsedChain(leaf, chain.slice(1), bundle.x509Authorities, now, { requireEndEntity: true });
  return svid([chain[0]!, ...chain.slice(1).map(sharedCaCertificate)], leaf.notBefore, leaf.notAfter, leaf.serialHex);
}

/** The CA certificates after a stored leaf (base64, as stored) → the shared DER, once checked against the bundle. */
type IssuerChecker = (encoded: readonly string[]) => Buffer[];

/**
 * For one restore: the SVIDs name a few distinct CA chains between them (one per intermediate), so each is decoded
 * and checked against the bundle at `now` once, not once per SVID.
 */
function issuerChecker(bundle: TrustBundle, now: number): IssuerChecker {
  const checked = new Map<string, { cas: Buffer[]; error?: unknown }>();
  return (encoded) => {
    const key = encoded.join('\n');
    let result = checked.get(key);
    if (result === undefined) {
      result = { cas: encoded.map((c, i) => sharedCaCertificate(unb64(c, `svid_chain[${i + 1}]`))) };
      try {
        verifyCaChain(result.cas, bundle.x509Authorities, now);
      } catch (err) {
        result.error = err;
      }
      checked.set(key, result);
    }
    if (result.error !== undefined) throw result.error;
    return result.cas;
  };
}
