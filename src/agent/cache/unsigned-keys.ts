import { createCsr } from '../../common/x509/csr.js';
import { ecKeyDer } from '../../common/x509/ec-key-der.js';
import { exportPkcs8Der, generateKeyPair, spkiDer } from '../../common/x509/keys.js';
import { certificateInputs, type AgentEntry } from './agent-entry.js';

/** A key made for an entry's next SVID, and its CSR (which names nothing but the key: csr.ts). */
export interface UnsignedKey {
  /** The private key, PKCS#8 DER: what an SVID serves (WorkloadSvid.privateKey). */
  readonly pkcs8: Buffer;
  readonly spki: Buffer;
  /** The entry's certificate inputs the key was made for (certificateInputs). */
  readonly inputs: string;
  readonly csr: Buffer;
}

/**
 * The key and CSR each entry's pending X.509-SVID request was made with, kept until a certificate comes back for it.
 * During an outage every retry round used to make a new P-256 key and CSR for every failing entry (~3.5 s of CPU a
 * round at 10,000 entries, most of the first minute's rounds being shorter than that) for requests that never reached
 * the server. A key no certificate came back for was never served to a workload, so a retry sends it again; rotation
 * still gets a new key, as a key goes once an answer certifies it (or refuses its CSR as invalid).
 *
 * A call that failed as a whole may have had its certificates signed and the answer lost: those never reached this
 * agent, name the same SPIFFE ID and key, and the key is served only with a certificate a later answer brings.
 *
 * One key per entry at most (memory is bounded by the entries held), made again for other certificate inputs (another
 * SPIFFE ID, DNS names or TTL: a key never spans two identities), and dropped when the entry goes. Held as bytes in
 * one buffer of its own, not as a KeyObject and slices of pooled slabs: 10,000 of those kept through an outage added
 * ~75 MB to the agent's RSS (trimmed), these ~15 MB.
 */
export class UnsignedKeys {
  private readonly byEntry = new Map<string, UnsignedKey>();

  /** The key to request the entry's SVID with: the one kept from its last attempt for the same inputs, or a new one. */
  async keyFor(entry: AgentEntry): Promise<UnsignedKey> {
    const inputs = certificateInputs(entry);
    const kept = this.byEntry.get(entry.id);
    if (kept?.inputs === inputs) return kept;
    const key = { ...(await newKey()), inputs };
    this.byEntry.set(entry.id, key);
    return key;
  }

  /**
   * Never sent again: the server answered `key`'s request with a certificate (whether or not it then passes the
   * checks), or refused its CSR as invalid, which sending the same bytes again cannot change and a new key may.
   */
  retire(entryId: string, key: { readonly pkcs8: Buffer }): void {
    if (this.byEntry.get(entryId)?.pkcs8 === key.pkcs8) this.byEntry.delete(entryId);
  }

  /** The entry is gone. */
  forget(entryId: string): void {
    this.byEntry.delete(entryId);
  }

  clear(): void {
    this.byEntry.clear();
  }
}

async function newKey(): Promise<Omit<UnsignedKey, 'inputs'>> {
  const { privateKey, publicKey } = generateKeyPair('ec-p256');
  // Not OpenSSL's encoders: this export is paid for every key the agent makes (ec-key-der.ts).
  const { pkcs8, spki } = ecKeyDer(privateKey) ?? { pkcs8: exportPkcs8Der(privateKey), spki: spkiDer(publicKey) };
  const csr = await createCsr(privateKey, publicKey);
  // Unpooled: a small slice of a pooled slab kept for long pins the whole 8 KB slab.
  const bytes = Buffer.allocUnsafeSlow(pkcs8.length + spki.length + csr.length);
  pkcs8.copy(bytes, 0);
  spki.copy(bytes, pkcs8.length);
  csr.copy(bytes, pkcs8.length + spki.length);
  return {
    pkcs8: bytes.subarray(0, pkcs8.length),
    spki: bytes.subarray(pkcs8.length, pkcs8.length + spki.length),
    csr: bytes.subarray(pkcs8.length + spki.length),
  };
}
