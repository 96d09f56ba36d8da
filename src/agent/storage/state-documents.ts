import { bundleToSpiffeJson, writableBundle, type LeftOutKey, type TrustBundle } from '../../common/spiffe/bundle.js';
import type { WorkloadSvid } from '../cache/workload-cache.js';

/**
 * One SVID as stored, in the snapshot (stored-state.ts) and in journal batches (state-journal.ts). It and the bundles'
 * stored form are built here, apart from the snapshot's encoding, because state-changes.ts builds them for the
 * batches too: both kinds of record must hold an SVID or a bundle alike.
 */
export interface SvidDocument {
  entry_id: string;
  spiffe_id: string;
  svid_chain: string[];
  private_key: string;
  /** The leaf's validity (epoch ms) and serial (hex), as read when the SVID was received; absent in older states. */
  not_before?: number;
  not_after?: number;
  serial?: string;
  /** The entry's certificate inputs the SVID was signed for (WorkloadSvid.inputs); absent in older states. */
  inputs?: string;
}

export const b64 = (b: Buffer): string => b.toString('base64');

/** The stored form of one SVID (its hint comes from the entry when restored). */
export function svidDocument(v: WorkloadSvid): SvidDocument {
  return {
    entry_id: v.entryId,
    spiffe_id: v.spiffeId,
    svid_chain: v.chain.map(b64),
    private_key: b64(v.privateKey),
    not_before: v.notBefore,
    not_after: v.notAfter,
    serial: v.version,
    ...(v.inputs !== undefined ? { inputs: v.inputs } : {}),
  };
}

/** A bundle key left out of the stored state, because no JWK of meshid's can carry it (writableBundle). */
export type UnstorableKey = LeftOutKey;

export type OnUnstorableKey = (key: UnstorableKey) => void;

/** The stored form of the federated bundles: trust domain → SPIFFE bundle document (writableBundle). */
export function federatedBundleDocs(bundles: readonly TrustBundle[], onUnstorable: OnUnstorableKey): Record<string, unknown> {
  return Object.fromEntries(bundles.map((b) => [b.trustDomain, bundleDocument(b, onUnstorable)]));
}

/** The stored form of a bundle: its SPIFFE bundle document (writableBundle). */
export function bundleDocument(bundle: TrustBundle, onUnstorable: OnUnstorableKey): unknown {
  return JSON.parse(bundleToSpiffeJson(writableBundle(bundle, onUnstorable)));
}
