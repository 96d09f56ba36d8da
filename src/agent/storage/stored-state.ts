import { createHash, type KeyObject } from 'node:crypto';
import { parseJsonObject } from '../../common/json-object.js';
import { invalidArgument, isMeshidError, MeshidError } from '../../common/errors.js';
import { meshidVersion } from '../../common/meshid-version.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import { exportPkcs8Der, importPrivateKey, keyMatchesCertificate } from '../../common/x509/keys.js';
import type { EntryMessage } from '../../common/entry-message.js';
import { entryToMessage, type AgentEntry } from '../cache/agent-entry.js';
import type { WorkloadSvid } from '../cache/workload-cache.js';
import { b64, bundleDocument, federatedBundleDocs, svidDocument, type OnUnstorableKey, type SvidDocument } from './state-documents.js';

/**
 * The agent's persisted state, as two JSON documents in its data dir (see agent-store.ts): its own identity, and
 * what it serves (entries, bundles, workload SVIDs with their keys). Certificates are base64 DER, keys base64
 * PKCS#8 DER, bundles SPIFFE bundle documents (Bundle §4).
 *
 * `format` is what lets an older agent (a rollback) refuse what it would misread: bump it whenever an agent of this
 * format would read the documents or the journal (state-journal.ts) wrongly, e.g. a new journal record kind or a field
 * whose absence it would take for "none". A field an older agent may safely ignore (as `inputs` and `trust_roots`
 * were added) needs no bump: older agents keep reading the data dir. An agent refuses to start on a format above its
 * own (isNewerStateFormat) and leaves the files as they are.
 */
export const STATE_FORMAT = 1;

/** Set in a MeshidError's data when a document is of a newer format than STATE_FORMAT (isNewerStateFormat). */
const NEWER_FORMAT = 'newerStateFormat';

/** Whether `err` says a document was written by a newer agent: not damage, to be refused rather than set aside. */
export function isNewerStateFormat(err: unknown): err is MeshidError {
  return isMeshidError(err, 'failed_precondition') && typeof err.data?.[NEWER_FORMAT] === 'number';
}

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
  /**
   * The trust domain's X.509 roots as known when the identity was written (at attestation and every renewal): how
   * the agent authenticates the server when its state is lost and no --trust-bundle is given. Absent in identity
   * files of earlier agents.
   */
  readonly trustRoots?: readonly Buffer[] | undefined;
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
  trust_roots?: string[];
}

interface StateDocument {
  format: number;
  trust_domain: string;
  revision: number;
  /** Generation of the journal that continues this snapshot (absent: none, as written before journals existed). */
  journal?: number;
  bundle: unknown;
  federated_bundles: Record<string, unknown>;
  entries: EntryMessage[];
  svids: SvidDocument[];
}

export const unb64 = (s: unknown, what: string): Buffer => {
  if (typeof s !== 'string' || s === '') throw invalidArgument(`${what} is missing`);
  return Buffer.from(s, 'base64');
};

function parseDocument(text: string, what: string): Record<string, unknown> {
  const doc = parseJsonObject(text, what);
  const format = doc['format'];
  if (typeof format === 'number' && Number.isSafeInteger(format) && format > STATE_FORMAT) {
    throw new MeshidError('failed_precondition', `${what} has format ${format}, written by a newer meshid-agent; this one (${meshidVersion()}) reads format ${STATE_FORMAT}`, {
      data: { [NEWER_FORMAT]: format },
    });
  }
  if (format !== STATE_FORMAT) throw invalidArgument(`${what} has format ${String(format)}; this agent reads format ${STATE_FORMAT}`);
  return doc;
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
    ...(id.trustRoots !== undefined && id.trustRoots.length > 0 ? { trust_roots: id.trustRoots.map(b64) } : {}),
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
    ...(Array.isArray(doc['trust_roots']) ? { trustRoots: doc['trust_roots'].map((c, i) => unb64(c, `trust_roots[${i}]`)) } : {}),
  };
}

export function encodeState(s: StoredState, journal?: number, onUnstorable: OnUnstorableKey = () => {}): string {
  return [...encodeStateChunks(s, journal, onUnstorable)].join('');
}

/** Entries or SVIDs per chunk of encodeStateChunks: big enough to write efficiently, small enough to stay young. */
const CHUNK_ITEMS = 256;

/**
 * The snapshot's last field: the SHA-256 (hex) of every byte of the document before it. It marks the document as
 * the agent's own, byte for byte (restoreState). Last, so the digest can be computed while the chunks are written,
 * and a field, so the document stays plain JSON.
 */
const SEAL_FIELD = ',"sha256":"';
const SEAL_END = '"}';
const SEAL_LENGTH = SEAL_FIELD.length + 64 + SEAL_END.length;

/**
 * `intact` when the snapshot's seal matches its content: then every SVID in it is as the agent checked it when it
 * received it. `absent` for a document without one (an older agent's, or written by hand): not damaged, only not
 * vouched for. `broken` when the content no longer matches its seal: damaged or edited.
 */
export type SnapshotSeal = 'intact' | 'absent' | 'broken';

export function snapshotSeal(bytes: Buffer): SnapshotSeal {
  const end = bytes.length - (bytes[bytes.length - 1] === 0x0a ? 1 : 0);
  const at = end - SEAL_LENGTH;
  if (at < 0 || bytes.toString('latin1', at, at + SEAL_FIELD.length) !== SEAL_FIELD) return 'absent';
  const digest = bytes.toString('latin1', at + SEAL_FIELD.length, end - SEAL_END.length);
  const intact = bytes.toString('latin1', end - SEAL_END.length, end) === SEAL_END && createHash('sha256').update(bytes.subarray(0, at)).digest('hex') === digest;
  return intact ? 'intact' : 'broken';
}

/**
 * encodeState in pieces, for writing a large state without ever holding it as one string (10,000 SVIDs with keys are
 * ~20 MB of JSON), sealed (SEAL_FIELD). `journal` names the generation of the journal that continues this snapshot
 * (state-journal.ts).
 */
export function* encodeStateChunks(s: StoredState, journal?: number, onUnstorable: OnUnstorableKey = () => {}): Generator<string> {
  const seal = createHash('sha256');
  for (const chunk of unsealedChunks(s, journal, onUnstorable)) {
    seal.update(chunk, 'utf8');
    yield chunk;
  }
  yield `${SEAL_FIELD}${seal.digest('hex')}${SEAL_END}\n`;
}

function* unsealedChunks(s: StoredState, journal: number | undefined, onUnstorable: OnUnstorableKey): Generator<string> {
  const head: Omit<StateDocument, 'entries' | 'svids'> = {
    format: STATE_FORMAT,
    trust_domain: s.trustDomain,
    revision: s.revision,
    ...(journal !== undefined ? { journal } : {}),
    bundle: bundleDocument(s.bundle, onUnstorable),
    federated_bundles: federatedBundleDocs(s.federatedBundles, onUnstorable),
  };
  yield JSON.stringify(head).slice(0, -1) + ',"entries":[';
  for (let i = 0; i < s.entries.length; i += CHUNK_ITEMS) {
    yield (i > 0 ? ',' : '') + s.entries.slice(i, i + CHUNK_ITEMS).map((e) => JSON.stringify(entryToMessage(e))).join(',');
  }
  yield '],"svids":[';
  for (let i = 0; i < s.svids.length; i += CHUNK_ITEMS) {
    yield (i > 0 ? ',' : '') + s.svids.slice(i, i + CHUNK_ITEMS).map((v) => JSON.stringify(svidDocument(v))).join(',');
  }
  yield ']';
}

/**
 * The state as stored, before it is checked: what a snapshot holds, and what journal batches change
 * (state-journal.ts). Maps keep the last record per entry ID.
 */
export interface RawState {
  trustDomain: string;
  revision: number;
  /** Generation of the journal continuing this snapshot; 0 for a snapshot written before journals existed. */
  readonly journal: number;
  bundle: unknown;
  federatedBundles: Record<string, unknown>;
  readonly entries: Map<string, EntryMessage>;
  readonly svids: Map<string, SvidDocument>;
  /**
   * The snapshot's seal. Journal batches carry a checksum each (state-journal.ts), so when it is intact every SVID
   * here is byte for byte one the agent checked when it received it.
   */
  readonly seal: SnapshotSeal;
}

/**
 * A list in the state document; absent is empty. Anything else (`"entries": null`) is not a document the agent wrote,
 * and read as empty it would pass for a state that holds nothing.
 */
function listField(doc: Record<string, unknown>, field: string): unknown[] {
  const value = doc[field];
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalidArgument(`the agent state file's "${field}" is ${value === null ? 'null' : `a ${typeof value}`}, not a list`);
  return value;
}

/** Parses the snapshot document without checking entries or SVIDs (restoreState does). */
export function parseStateDocument(bytes: Buffer): RawState {
  const doc = parseDocument(bytes.toString('utf8'), 'the agent state file');
  const entries = new Map<string, EntryMessage>();
  for (const m of listField(doc, 'entries') as EntryMessage[]) entries.set(String(m?.id ?? ''), m);
  const svids = new Map<string, SvidDocument>();
  for (const v of listField(doc, 'svids') as SvidDocument[]) svids.set(String(v?.entry_id ?? ''), v);
  const journal = doc['journal'];
  return {
    trustDomain: String(doc['trust_domain'] ?? ''),
    revision: typeof doc['revision'] === 'number' ? doc['revision'] : 0,
    journal: typeof journal === 'number' && Number.isSafeInteger(journal) && journal >= 0 ? journal : 0,
    bundle: doc['bundle'] ?? null,
    federatedBundles: (doc['federated_bundles'] ?? {}) as Record<string, unknown>,
    entries,
    svids,
    seal: snapshotSeal(bytes),
  };
}
