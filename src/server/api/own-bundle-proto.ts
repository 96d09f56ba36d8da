import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { trustBundleToProto } from './convert.js';
import type { ProtoBundle } from './proto-types.js';

/** What a Sync stream reads of the CA for its own bundle: ca-manager.ts's CaManager. */
export interface OwnBundleSource {
  bundle(): TrustBundle;
  x509Bundle(): { x509Authorities: readonly Buffer[]; sequence: number };
}

/**
 * The own bundle as a Sync update carries it, built once per bundle version rather than per stream: building it
 * parses every JWT key's PEM and exports it again as DER (~0.8 ms), which every stream's first update paid, and in a
 * restart storm that was most of what an agent's Sync open cost the server besides its TLS handshake (bench/HISTORY.md,
 * thirty-eighth session). The CA replaces its bundle record, with a sequence one higher, at every change of content;
 * the cached message is used while both the record's authorities (by identity) and its sequence are the ones it was
 * built from.
 */
export class OwnBundleProto {
  private built: { authorities: readonly Buffer[]; sequence: number; proto: ProtoBundle } | undefined;

  constructor(private readonly ca: OwnBundleSource) {}

  get(): ProtoBundle {
    const { x509Authorities, sequence } = this.ca.x509Bundle();
    const b = this.built;
    if (b !== undefined && b.authorities === x509Authorities && b.sequence === sequence) return b.proto;
    // Frozen: one object for every stream.
    const proto = Object.freeze(trustBundleToProto(this.ca.bundle()));
    this.built = { authorities: x509Authorities, sequence, proto };
    return proto;
  }
}
