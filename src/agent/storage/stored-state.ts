import type { KeyObject } from 'node:crypto';
import { invalidArgument } from '../../common/errors.js';
import { bundleFromSpiffeJson, bundleToSpiffeJson, type TrustBundle } from '../../common/spiffe/bundle.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import { parseCertificate, verifyChain } from '../../common/x509/certificate.js';
import { exportPkcs8Der, importPrivateKey, keyMatchesCertificate } from '../../common/x509/keys.js';
import { entryFromMessage, entryToMessage, type AgentEntry, type EntryMessage } from '../cache/agent-entry.js';
import type { WorkloadSvid } from '../cache/workload-cache.js';

/**
 * The agent's persisted state, as two JSON documents in its data dir (see agent-store.ts): its own identity, and
 * what it serves (entries, bundles, workload SVIDs with their keys). Certificates are base64 DER, keys base64
 * PKCS#8 DER, bundles SPIFFE bundle documents (Bundle §4). `format` lets a future agent refuse what it cannot read.
 */
export const STATE_FORMAT = 1;

/** The agent SVID and what the agent learnt when it attested. */
export interface StoredIdentity {
  readonly trustDomain: string;
  readonly spiffeId: string;
  readonly datacenter: string;
  readonly chain: readonly Buffer[];
  readonly privateKey: KeyObject;
  /**
   * SHA-256 (hex) of the join token this identity was obtained with: a token that matches was already consumed, so it
   * is never offered again; a different configured token may be used to re-attest.
   */
  readonly joinTokenSha256: string;
}

/** Everything the agent serves, restorable after a restart while the server is unreachable. */
export interface StoredState {
  readonly trustDomain: string;
  readonly revision: number;
  readonly bundle: TrustBundle;
  readonly federatedBundles: readonly TrustBundle[];
  readonly entries: readonly AgentEntry[];
  readonly svids: readonly WorkloadSvid[];
}

interface IdentityDocument {
  format: number;
  trust_domain: string;
  spiffe_id: string;
  datacenter: string;
  svid_chain: string[];
  private_key: string;
  join_token_sha256: string;
}

interface SvidDocument {
  entry_id: string;
  spiffe_id: string;
  svid_chain: string[];
  private_key: string;
}

interface StateDocument {
  format: number;
  trust_domain: string;
  revision: number;
  bundle: unknown;
  federated_bundles: Record<string, unknown>;
  entries: EntryMessage[];
  svids: SvidDocument[];
}

const b64 = (b: Buffer): string => b.toString('base64');
const unb64 = (s: unknown, what: string): Buffer => {
  if (typeof s !== 'string' || s === '') throw invalidArgument(`${what} is missing`);
  return Buffer.from(s, 'base64');
};

function parseDocument(text: string, what: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw invalidArgument(`${what} is not valid JSON`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw invalidArgument(`${what} is not a JSON object`);
  const format = (doc as { format?: unknown }).format;
  if (format !== STATE_FORMAT) throw invalidArgument(`${what} has format ${String(format)}; this agent reads format ${STATE_FORMAT}`);
  return doc as Record<string, unknown>;
}

export function encodeIdentity(id: StoredIdentity): string {
  const doc: IdentityDocument = {
    format: STATE_FORMAT,
    trust_domain: id.trustDomain,
    spiffe_id: id.spiffeId,
    datacenter: id.datacenter,
    svid_chain: id.chain.map(b64),
    private_key: b64(exportPkcs8Der(id.privateKey)),
    join_token_sha256: id.joinTokenSha256,
  };
  return JSON.stringify(doc) + '\n';
}

/** Parses the identity document; the key must match the SVID. Throws invalid_argument saying what is wrong. */
export function decodeIdentity(text: string): StoredIdentity {
  const doc = parseDocument(text, 'the agent identity file');
  const chain = Array.isArray(doc['svid_chain']) ? doc['svid_chain'].map((c, i) => unb64(c, `svid_chain[${i}]`)) : [];
  if (chain.length === 0) throw invalidArgument('the agent identity file has no SVID');
  const privateKey = importPrivateKey(unb64(doc['private_key'], 'private_key'));
  if (!keyMatchesCertificate(privateKey, chain[0]!)) throw invalidArgument('the agent identity file holds a key that does not match its SVID');
  const spiffeId = String(doc['spiffe_id'] ?? '');
  if (!parseCertificate(chain[0]!).uriSans.includes(spiffeId)) throw invalidArgument('the agent identity file names another SPIFFE ID than its SVID');
  return {
    trustDomain: parseTrustDomain(String(doc['trust_domain'] ?? '')),
    spiffeId,
    datacenter: String(doc['datacenter'] ?? ''),
    chain,
    privateKey,
    joinTokenSha256: String(doc['join_token_sha256'] ?? ''),
  };
}

export function encodeState(s: StoredState): string {
  const doc: StateDocument = {
    format: STATE_FORMAT,
    trust_domain: s.trustDomain,
    revision: s.revision,
    bundle: JSON.parse(bundleToSpiffeJson(s.bundle)),
    federated_bundles: Object.fromEntries(s.federatedBundles.map((b) => [b.trustDomain, JSON.parse(bundleToSpiffeJson(b))])),
    entries: s.entries.map(entryToMessage),
    svids: s.svids.map((v) => ({ entry_id: v.entryId, spiffe_id: v.spiffeId, svid_chain: v.chain.map(b64), private_key: b64(v.privateKey) })),
  };
  return JSON.stringify(doc) + '\n';
}

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
  const doc = parseDocument(text, 'the agent state file');
  const trustDomain = parseTrustDomain(String(doc['trust_domain'] ?? ''));
  const bundle = bundleFromSpiffeJson(trustDomain, JSON.stringify(doc['bundle'] ?? null));
  const federatedDoc = (doc['federated_bundles'] ?? {}) as Record<string, unknown>;
  const federatedBundles = Object.entries(federatedDoc).map(([td, b]) => bundleFromSpiffeJson(td, JSON.stringify(b)));
  const entries = (Array.isArray(doc['entries']) ? (doc['entries'] as EntryMessage[]) : []).map(entryFromMessage);
  const byId = new Map(entries.map((e) => [e.id, e]));
  const svids: WorkloadSvid[] = [];
  const dropped: DroppedSvid[] = [];
  for (const raw of Array.isArray(doc['svids']) ? (doc['svids'] as SvidDocument[]) : []) {
    const entryId = String(raw?.entry_id ?? '');
    try {
      svids.push(restoreSvid(raw, byId.get(entryId), bundle, now));
    } catch (err) {
      dropped.push({ entryId, reason: (err as Error).message });
    }
  }
  const revision = typeof doc['revision'] === 'number' ? doc['revision'] : 0;
  return { state: { trustDomain, revision, bundle, federatedBundles, entries, svids }, dropped };
}

function restoreSvid(raw: SvidDocument, entry: AgentEntry | undefined, bundle: TrustBundle, now: number): WorkloadSvid {
  if (entry === undefined) throw invalidArgument('its entry is not in the state');
  if (raw.spiffe_id !== entry.spiffeId) throw invalidArgument(`it names ${raw.spiffe_id}, the entry now ${entry.spiffeId}`);
  const chain = (raw.svid_chain ?? []).map((c, i) => unb64(c, `svid_chain[${i}]`));
  if (chain.length === 0) throw invalidArgument('it has no certificate');
  const leaf = parseCertificate(chain[0]!);
  if (leaf.uriSans.length !== 1 || leaf.uriSans[0] !== entry.spiffeId) throw invalidArgument('its certificate names another SPIFFE ID');
  const keyDer = unb64(raw.private_key, 'private_key');
  if (!keyMatchesCertificate(importPrivateKey(keyDer), leaf.der)) throw invalidArgument('its key does not match its certificate');
  // Also fails for an expired leaf: only what is valid now is served.
  verifyChain(chain, bundle.x509Authorities, now, { requireEndEntity: true });
  return {
    entryId: entry.id,
    spiffeId: entry.spiffeId,
    hint: entry.hint,
    chain,
    privateKey: keyDer,
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
    version: leaf.serialHex,
  };
}
