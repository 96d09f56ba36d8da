import type { MeshidError } from '../../common/errors.js';
import { NEW_JOIN_TOKEN } from '../join-token-ways.js';
import type { OutageLog } from '../../common/outage-log.js';
import { serverCertificateTimeProblem } from './server-clock.js';

/*
 * How ServerConnection tells the operator that meshid-server cannot be reached or trusted, each kind of failure once
 * (OutageLog), not per retry: one this host can fix (its clock, its trust bundle) at error, an outage at warn.
 */

/** OpenSSL's words, as grpc-js passes them on, for a server certificate that does not chain to the trusted roots. */
const UNTRUSTED_SERVER = /unable to get local issuer certificate|self[- ]signed certificate in certificate chain|unable to get issuer certificate|unable to verify the first certificate/i;

/** An attestation that failed at `now` and is retried in `wait` ms. */
export function logAttestFailure(outage: OutageLog, e: MeshidError, now: number, wait: number): void {
  const clockProblem = serverCertificateTimeProblem(e.message, now);
  if (clockProblem !== undefined) outage.failed('attest-clock', 'error', { reason: e.message, retryInMs: wait }, clockProblem);
  else if (e.code === 'unavailable') outage.failed('attest-unreachable', 'warn', { reason: e.message, retryInMs: wait }, 'cannot reach meshid-server to attest; will retry');
  else outage.failed('attest-exhausted', 'warn', { reason: e.message, retryInMs: wait }, 'meshid-server cannot attest this agent now (out of resources); will retry');
}

/**
 * The Sync stream that failed at `now` (not a refusal of the agent), with the line's `fields`. `syncedSinceStart`: the
 * stream was open at least once since this agent started, so this failure is a lost stream.
 */
export function logSyncFailure(outage: OutageLog, err: MeshidError, now: number, fields: Record<string, unknown>, syncedSinceStart: boolean): void {
  const clockProblem = serverCertificateTimeProblem(err.message, now);
  if (clockProblem !== undefined) {
    outage.failed('sync-clock', 'error', fields, `${clockProblem}; serving from the cache`);
  } else if (UNTRUSTED_SERVER.test(err.message)) {
    // Not an outage: no retry fixes it, and the cached SVIDs run out meanwhile.
    outage.failed(
      'sync-untrusted',
      'error',
      fields,
      "meshid-server presents a certificate this agent's trust bundle does not authenticate; serving from the cache and retrying. " +
        "If the server's root changed while this agent was away, pass the current bundle with --trust-bundle (meshid-server bundle show) and restart it " +
        `(with ${NEW_JOIN_TOKEN} too if the server's data dir was replaced: its new root never signed this agent's SVID)`,
    );
  } else if (syncedSinceStart) {
    outage.failed('sync-lost', 'warn', fields, 'lost the Sync stream to meshid-server; serving from the cache and reconnecting');
  } else {
    // An agent started while its server is down never had the stream: "lost" would send the operator looking for
    // what broke it.
    outage.failed('sync-unreachable', 'warn', fields, 'cannot open the Sync stream to meshid-server; serving from the cache and retrying');
  }
}
