import type { KeyType } from '../../common/x509/keys.js';
import type { ServerConfig } from '../config.js';
import type { UpstreamCa } from './upstream-ca.js';

/** Settings the CA needs; a slice of ServerConfig. */
export interface CaSettings {
  trustDomain: string;
  datacenters: readonly string[];
  caKeyType: KeyType;
  intermediateTtlMs: number;
  rootTtlMs: number;
  jwtKeyTtlMs: number;
  jwtSvidTtlMs: number;
  /** The longest SVID (workload or agent) an intermediate must be able to cover. */
  longestX509SvidTtlMs: number;
  /** How long a prepared root is published before it signs intermediates. */
  rootActivationDelayMs: number;
  /** The own bundle's spiffe_refresh_hint, in seconds. */
  refreshHintSeconds: number;
  upstreamCa?: UpstreamCa | undefined;
}

/** The CA's slice of the server config. */
export function caSettingsFrom(config: ServerConfig, upstreamCa?: CaSettings['upstreamCa']): CaSettings {
  return {
    trustDomain: config.trustDomain,
    datacenters: config.datacenters,
    caKeyType: config.caKeyType,
    intermediateTtlMs: config.intermediateTtlMs,
    rootTtlMs: config.rootTtlMs,
    rootActivationDelayMs: config.rootActivationDelayMs,
    jwtKeyTtlMs: config.jwtKeyTtlMs,
    jwtSvidTtlMs: config.maxJwtSvidTtlMs,
    longestX509SvidTtlMs: Math.max(config.maxX509SvidTtlMs, config.agentSvidTtlMs),
    refreshHintSeconds: config.bundleRefreshHintSeconds,
    upstreamCa,
  };
}
