import { createPublicKey } from 'node:crypto';
import { failedPrecondition } from '../../common/errors.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import { keyMatchesCertificate } from '../../common/x509/keys.js';
import { LeafSigner } from '../../common/x509/leaf-signer.js';
import type { CaRecord } from './ca-journal.js';
import type { KeyStore } from './key-store.js';
import type { LoadedAuthority } from './loaded-authority.js';

/** What to tell the operator to do, which depends on who found the problem: a starting server, or a restore. */
export interface JournalRemedies {
  /** For a key file that does not match its authority's certificate or recorded public key. */
  keyMismatch: string;
  /** For roots of another trust domain than the one asked for. */
  otherTrustDomain: string;
}

export interface JournalAuthorities {
  /** Every authority still of use, by ID, its key read and checked against its row. */
  live: Map<string, LoadedAuthority>;
  /** Retired authorities past their notAfter: nothing can use them, and their keys may already be gone. */
  expired: CaRecord[];
}

/**
 * Reads the key of every authority the CA journal holds and checks it against the journal, refusing any inconsistency:
 * a key missing, unreadable or not matching its certificate (or a JWT key its recorded public key), a row without its
 * certificate, roots of another trust domain. A start runs it before serving anything and a restore before putting a
 * data dir in place, so that one refuses exactly what the other would.
 */
export function loadJournalAuthorities(
  records: readonly CaRecord[],
  keys: KeyStore,
  trustDomain: string,
  now: number,
  remedies: JournalRemedies,
): JournalAuthorities {
  const live = new Map<string, LoadedAuthority>();
  const expired: CaRecord[] = [];
  for (const record of records) {
    if (record.state === 'old' && record.notAfter <= now) {
      expired.push(record);
      continue;
    }
    const key = keys.read(record.keyId);
    const loaded: LoadedAuthority = { record, key };
    if (record.kind === 'jwt') {
      const pub = createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
      if (record.publicKeyPem !== undefined && pub.trim() !== record.publicKeyPem.trim()) {
        throw failedPrecondition(`JWT key file ${keys.fileOf(record.keyId)} does not match the key recorded in the CA journal: ${remedies.keyMismatch}`);
      }
    } else {
      if (record.certDer === undefined) throw failedPrecondition(`CA journal row ${record.id} has no certificate: the datastore is corrupt`);
      if (!keyMatchesCertificate(key, record.certDer)) {
        throw failedPrecondition(
          `CA key file ${keys.fileOf(record.keyId)} does not match the ${record.kind} certificate ${record.id}` +
            `${record.datacenter ? ` of datacenter ${record.datacenter}` : ''}: ${remedies.keyMismatch}`,
        );
      }
      loaded.cert = parseCertificate(record.certDer);
      if (record.kind === 'intermediate') loaded.signer = new LeafSigner(record.certDer, key);
    }
    live.set(record.id, loaded);
  }
  // Only SPIFFE IDs name a trust domain: an upstream CA may carry no URI SAN, or another kind first (an https URI of
  // its PKI), and meshid signs under it all the same; read as a trust domain, that URI refused every restart.
  const named = [...live.values()]
    .filter((a) => a.record.kind === 'root')
    .map((a) => a.cert?.uriSans.find((u) => u.startsWith('spiffe://')))
    .filter((u): u is string => u !== undefined);
  if (named.length > 0 && !named.includes(`spiffe://${trustDomain}`)) {
    throw failedPrecondition(`the data dir belongs to trust domain "${named[0]!.slice('spiffe://'.length)}", not "${trustDomain}": ${remedies.otherTrustDomain}`);
  }
  return { live, expired };
}

/**
 * Key files beside an empty CA journal: the datastore lost its content (copied without its -wal file) or is another
 * data dir's. Said the same way by a start and a restore, each adding what to do.
 */
export function keysWithoutJournal(keysDir: string, keyIds: readonly string[]): string {
  return (
    `the datastore holds no CA journal, but ${keysDir} holds ${keyIds.length} CA key file(s) (${keyIds.join(', ')}): ` +
    'the datastore is not the one these keys were made with (copied without its datastore.sqlite3-wal file, or from another data dir?)'
  );
}
