import { invalidArgument, MeshidError } from '../common/errors.js';
import { formatDuration, parseDuration } from '../common/duration.js';

/**
 * The longest duration a setting may hold. A certificate's notAfter ends at the year 9999 and a JavaScript Date
 * sooner than Infinity: a root_ttl past them passed `validate` and failed at start on a "malformed GeneralizedTime".
 */
const MAX_CONFIG_DURATION_MS = 36_500 * 86_400_000;

/** A duration setting (parseDuration's syntax), at most MAX_CONFIG_DURATION_MS. */
export function configDuration(value: string | number, name: string): number {
  const ms = parseDuration(value, name);
  if (ms > MAX_CONFIG_DURATION_MS) {
    throw invalidArgument(`${name} (${typeof value === 'number' ? value : `"${value}"`}) is longer than any setting may be (36500d, 100 years): lower it`);
  }
  return ms;
}

/**
 * How long a new root or JWT key is published before it first signs, at the least (ca/rotation-plan.ts). A successor
 * is prepared at half its predecessor's life and takes over once the predecessor can no longer cover a full child: a
 * JWT key is thus published half of jwt_key_ttl less max_jwt_svid_ttl ahead, not half of jwt_key_ttl; a root
 * root_activation_delay ahead, or half of root_ttl less intermediate_ttl when that comes first.
 */
export function publicationLeadMs(ttls: {
  rootActivationDelayMs: number; rootTtlMs: number; intermediateTtlMs: number; jwtKeyTtlMs: number; maxJwtSvidTtlMs: number;
}): number {
  return Math.min(ttls.rootActivationDelayMs, ttls.rootTtlMs / 2 - ttls.intermediateTtlMs, ttls.jwtKeyTtlMs / 2 - ttls.maxJwtSvidTtlMs);
}

/**
 * The TTL model that cannot silently truncate. An intermediate is prepared at half its life and becomes active when
 * the current one could no longer cover a full SVID, so every intermediate must live more than twice the longest
 * SVID; the same rule holds one level up (root vs intermediate) and for JWT keys vs JWT-SVIDs.
 */
export function checkCoverage(
  svid: number, maxSvid: number, agentSvid: number, intermediate: number, root: number, jwtSvid: number, jwtKey: number,
): void {
  const f = formatDuration;
  if (maxSvid < svid) {
    throw invalidArgument(`max_x509_svid_ttl (${f(maxSvid)}) is shorter than default_x509_svid_ttl (${f(svid)}): raise max_x509_svid_ttl or lower the default`);
  }
  const longest = Math.max(maxSvid, agentSvid);
  if (intermediate <= 2 * longest) {
    throw new MeshidError(
      'invalid_argument',
      `intermediate_ttl (${f(intermediate)}) cannot cover a full X.509-SVID lifetime (${f(longest)}) at its activation point: ` +
        `it must be more than twice the longest SVID TTL. Raise intermediate_ttl above ${f(2 * longest)} or lower ` +
        `${maxSvid >= agentSvid ? 'default_x509_svid_ttl/max_x509_svid_ttl' : 'agent_svid_ttl'}`,
    );
  }
  if (root <= 2 * intermediate) {
    throw invalidArgument(
      `root_ttl (${f(root)}) cannot cover a full intermediate lifetime (${f(intermediate)}): it must be more than twice intermediate_ttl. ` +
        `Raise root_ttl above ${f(2 * intermediate)} or lower intermediate_ttl`,
    );
  }
  if (jwtKey <= 2 * jwtSvid) {
    throw invalidArgument(
      `jwt_key_ttl (${f(jwtKey)}) must be more than twice the longest JWT-SVID TTL (${f(jwtSvid)}): raise jwt_key_ttl above ${f(2 * jwtSvid)} or lower default_jwt_svid_ttl/max_jwt_svid_ttl`,
    );
  }
}
