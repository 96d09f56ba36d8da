import { invalidArgument } from '../../common/errors.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import { parseTrustDomain } from '../../common/spiffe/spiffe-id.js';
import { decodeSpki } from '../../common/x509/spki.js';
import type { EntryMessage } from '../../common/entry-message.js';

/**
 * meshid.agent.v1 messages (proto/meshid/v1/agent.proto) as proto-loader decodes them on the agent side: keepCase,
 * int64 as Number, bytes as Buffer, proto3 defaults absent.
 */

export interface BundleMessage {
  trust_domain?: string;
  x509_authorities?: Buffer[];
  jwt_authorities?: Array<{ kid?: string; public_key?: Buffer; expires_at?: number }>;
  sequence?: number;
  refresh_hint?: number;
}

export interface AttestResponseMessage {
  spiffe_id?: string;
  svid_chain?: Buffer[];
  bundle?: BundleMessage;
  datacenter?: string;
}

export interface SyncRequestMessage {
  since_revision: number;
  known: Array<{ id: string; revision: number }>;
  bundle_sequence: number;
}

export interface SyncUpdateMessage {
  revision?: number;
  initial?: boolean;
  entries?: EntryMessage[];
  removed_entry_ids?: string[];
  bundle?: BundleMessage;
  federated_bundles?: BundleMessage[];
  federated_bundles_changed?: boolean;
  tainted_authority_ids?: string[];
}

export interface SignX509SvidsResponseMessage {
  results?: Array<{ entry_id?: string; code?: number; message?: string; svid_chain?: Buffer[]; expires_at?: number }>;
}

export interface SignJwtSvidResponseMessage {
  token?: string;
  expires_at?: number;
  issued_at?: number;
}

/** A bundle from the server in meshid's TrustBundle shape; throws invalid_argument for one that cannot be used. */
export function bundleFromMessage(m: BundleMessage): TrustBundle {
  const trustDomain = parseTrustDomain(m.trust_domain ?? '');
  const jwtAuthorities = (m.jwt_authorities ?? []).map((k, i) => {
    if (!k.kid) throw invalidArgument(`bundle for ${trustDomain}: JWT authority ${i} has no kid`);
    try {
      return { kid: k.kid, publicKey: decodeSpki(Buffer.from(k.public_key ?? Buffer.alloc(0))) };
    } catch (err) {
      throw invalidArgument(`bundle for ${trustDomain}: JWT authority ${k.kid} has a malformed public key`, err);
    }
  });
  const bundle: TrustBundle = {
    trustDomain,
    x509Authorities: (m.x509_authorities ?? []).map((der) => Buffer.from(der)),
    jwtAuthorities,
    sequence: m.sequence ?? 0,
  };
  if (m.refresh_hint) bundle.refreshHintSeconds = m.refresh_hint;
  return bundle;
}
