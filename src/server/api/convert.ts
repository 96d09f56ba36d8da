import { createPublicKey } from 'node:crypto';
import { entryToEntryMessage } from '../../common/entry-message.js';
import type { TrustBundle } from '../../common/spiffe/bundle.js';
import type { AttestedAgent, RegistrationEntry, StoredBundle } from '../datastore/datastore.js';
import type { ProtoAgent, ProtoBundle, ProtoEntry } from './proto-types.js';

const seconds = (ms: number): number => Math.floor(ms / 1000);

export function entryToProto(e: RegistrationEntry): ProtoEntry {
  return entryToEntryMessage(e, e.createdAt, true);
}

export function trustBundleToProto(b: TrustBundle): ProtoBundle {
  return {
    trust_domain: b.trustDomain,
    x509_authorities: b.x509Authorities,
    jwt_authorities: b.jwtAuthorities.map((k) => ({
      kid: k.kid,
      public_key: k.publicKey.export({ type: 'spki', format: 'der' }),
    })),
    sequence: b.sequence,
    refresh_hint: b.refreshHintSeconds ?? 0,
  };
}

export function storedBundleToProto(b: StoredBundle): ProtoBundle {
  return {
    trust_domain: b.trustDomain,
    x509_authorities: b.x509Authorities,
    jwt_authorities: b.jwtAuthorities.map((k) => ({
      kid: k.kid,
      public_key: createPublicKey(k.publicKeyPem).export({ type: 'spki', format: 'der' }),
      expires_at: seconds(k.notAfter),
    })),
    sequence: b.sequence,
  };
}

export function storedBundleToTrustBundle(b: StoredBundle): TrustBundle {
  return {
    trustDomain: b.trustDomain,
    x509Authorities: b.x509Authorities,
    jwtAuthorities: b.jwtAuthorities.map((k) => ({ kid: k.kid, publicKey: createPublicKey(k.publicKeyPem) })),
    sequence: b.sequence,
  };
}

export function agentToProto(a: AttestedAgent): ProtoAgent {
  return {
    spiffe_id: a.spiffeId,
    datacenter: a.datacenter,
    selectors: a.selectors.map((s) => ({ type: s.type, value: s.value })),
    cert_serial: a.certSerial,
    cert_expires_at: seconds(a.certNotAfter),
    banned: a.banned,
    attested_at: seconds(a.attestedAt),
    cert_issuer_id: a.certIssuerId ?? '',
    agent_version: a.agentVersion ?? '',
  };
}
