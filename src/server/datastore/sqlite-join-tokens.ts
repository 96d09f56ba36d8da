import { alreadyExists, invalidArgument } from '../../common/errors.js';
import { joinTokenSha256 } from '../../common/join-token-fingerprint.js';
import type { JoinToken, NewJoinToken } from './datastore.js';
import { normalizeSelectors } from './entry-identity.js';
import { requireText, requireTime } from './record-guards.js';
import { joinTokenFromRow, type JoinTokenRow } from './sqlite-rows.js';
import type { SqliteScope } from './sqlite-scope.js';

/**
 * Join tokens in the SQLite datastore, stored by their SHA-256 only (the secret never reaches the database) and
 * consumed once, by a DELETE … RETURNING. Each function runs inside the datastore's read or write.
 */

export function createJoinToken(tx: SqliteScope, input: NewJoinToken): JoinToken {
  if (typeof input.token !== 'string' || input.token === '') throw invalidArgument('join token value is empty');
  requireText('join token datacenter', input.datacenter);
  requireTime('join token expiresAt', input.expiresAt);
  requireTime('join token createdAt', input.createdAt);
  const token: JoinToken = {
    tokenHash: joinTokenSha256(input.token),
    datacenter: input.datacenter,
    selectors: normalizeSelectors(input.selectors),
    expiresAt: input.expiresAt,
    createdAt: input.createdAt,
  };
  if (tx.s.joinTokenExists.get(token.tokenHash) !== undefined) throw alreadyExists('a join token with this value already exists');
  tx.s.insertJoinToken.run(token.tokenHash, token.datacenter, JSON.stringify(token.selectors), token.expiresAt, token.createdAt);
  return token;
}

export function consumeJoinToken(tx: SqliteScope, token: string): JoinToken | undefined {
  if (typeof token !== 'string' || token === '') return undefined;
  const row = tx.s.consumeJoinToken.get(joinTokenSha256(token)) as JoinTokenRow | undefined;
  return row === undefined ? undefined : joinTokenFromRow(row);
}

export function consumeAllJoinTokens(tx: SqliteScope): JoinToken[] {
  return (tx.s.consumeAllJoinTokens.all() as JoinTokenRow[]).map(joinTokenFromRow);
}

export function findJoinToken(tx: SqliteScope, token: string): JoinToken | undefined {
  if (typeof token !== 'string' || token === '') return undefined;
  const row = tx.s.joinTokenByHash.get(joinTokenSha256(token)) as JoinTokenRow | undefined;
  return row === undefined ? undefined : joinTokenFromRow(row);
}

export function pruneJoinTokens(tx: SqliteScope, now: number): number {
  return tx.s.pruneJoinTokens.run(now).changes;
}
