import { randomBytes } from 'node:crypto';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';
import type { Logger } from '../../common/log.js';
import { invalidArgument, notFound } from '../../common/errors.js';
import { MAX_JOIN_TOKEN_TTL_SECONDS } from '../config.js';
import type { Datastore } from '../datastore/datastore.js';
import { validateSelectors } from './entry-validation.js';
import { unary } from './handler.js';
import { unservedDatacenter } from './unserved-datacenter.js';
import type { ProtoSelector } from './proto-types.js';
import { joinTokenFingerprint } from '../../common/join-token-fingerprint.js';

/** Selectors of this type are the server's own facts about an agent (meshid:datacenter:<dc>). */
const RESERVED_SELECTOR_TYPE = 'meshid';

/**
 * Unknown, used and revoked tokens look the same in the datastore (their rows are gone), so the answer lists what to
 * check. The operator holds the admin socket; telling them a token was used is no leak.
 */
const NO_UNUSED_TOKEN =
  'no unused join token has this value: it is mistyped, was revoked already, expired, or was used by an agent ' +
  '(see `meshid-server agent list`; `meshid-server agent ban` cuts an agent off)';

/**
 * Admin API: join tokens (meshid.admin.v1.Tokens). The value is returned once and stored only as a hash; revoking
 * finds it by the same hash, or takes every one out at once. None logs the value.
 */
export function tokenService(
  ds: Datastore,
  opts: { datacenters: readonly string[]; defaultTtlMs: number },
  clock: Clock,
  log: Logger,
): UntypedServiceImplementation {
  return {
    GenerateJoinToken: unary(log, 'GenerateJoinToken', async (req: { datacenter?: string; ttl?: number; selectors?: ProtoSelector[] }) => {
      const datacenter = req.datacenter || opts.datacenters[0]!;
      if (!opts.datacenters.includes(datacenter)) {
        throw unservedDatacenter(datacenter, opts.datacenters);
      }
      const ttl = Number(req.ttl ?? 0);
      if (!Number.isInteger(ttl) || ttl < 0 || ttl > MAX_JOIN_TOKEN_TTL_SECONDS) {
        throw invalidArgument(`ttl must be between 1 and ${MAX_JOIN_TOKEN_TTL_SECONDS} seconds (0 = default ${opts.defaultTtlMs / 1000} s)`);
      }
      const selectors = validateSelectors(req.selectors ?? []);
      // The server sets meshid:datacenter:<dc> from the token's datacenter; a token carrying its own meshid selectors
      // could make its agent match another datacenter's node aliases.
      const reserved = selectors.find((s) => s.type === RESERVED_SELECTOR_TYPE);
      if (reserved !== undefined) {
        throw invalidArgument(`selector type "${RESERVED_SELECTOR_TYPE}" is reserved for what the server records itself (${RESERVED_SELECTOR_TYPE}:${reserved.value}); choose the datacenter with --datacenter`);
      }
      // Hex, not base64url: a token starting with '-' would read as a flag on command lines.
      const token = randomBytes(20).toString('hex');
      const now = clock.now();
      const expiresAt = now + (ttl > 0 ? ttl * 1000 : opts.defaultTtlMs);
      await ds.createJoinToken({ token, datacenter, selectors, expiresAt, createdAt: now });
      log.info({ datacenter, expiresAt: new Date(expiresAt).toISOString(), tokenFingerprint: joinTokenFingerprint(token) }, 'join token generated');
      return { token, expires_at: Math.floor(expiresAt / 1000), datacenter };
    }),

    RevokeJoinToken: unary(log, 'RevokeJoinToken', async (req: { token?: string }) => {
      const token = req.token ?? '';
      if (token === '') throw invalidArgument('token is required: the join token as `meshid-server token generate` printed it');
      // Revoking is using the token up without attesting: the same atomic delete Attest commits with, so of a revoke
      // and an attestation racing for one token exactly one gets it, and the loser is told.
      const record = await ds.consumeJoinToken(token);
      if (record === undefined) throw notFound(NO_UNUSED_TOKEN);
      const expiresAt = new Date(record.expiresAt).toISOString();
      if (record.expiresAt <= clock.now()) {
        throw notFound(`the join token expired at ${expiresAt}: no agent can attest with it, so there is nothing to revoke`);
      }
      log.info({ datacenter: record.datacenter, expiresAt }, 'join token revoked');
      return { datacenter: record.datacenter, expires_at: Math.floor(record.expiresAt / 1000) };
    }),

    RevokeAllJoinTokens: unary(log, 'RevokeAllJoinTokens', async () => {
      // One delete for all: an Attest racing it either committed its token first (and that token is not counted) or
      // finds it gone and gets the spent-token refusal.
      const voided = await ds.consumeAllJoinTokens();
      const now = clock.now();
      // Expired ones are deleted too (housekeeping would have), but counting them would overstate what was at risk.
      const revoked = voided.filter((t) => t.expiresAt > now).length;
      log.info({ revoked, expired: voided.length - revoked }, 'all join tokens revoked');
      return { revoked };
    }),
  };
}
