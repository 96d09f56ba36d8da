import { setMaxListeners } from 'node:events';
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { isMeshidError } from '../../common/errors.js';
import { callDeadlineOnClock } from '../../common/grpc/call-deadline.js';
import { noIdentityFor, notSynced } from '../endpoints/refusal-log.js';
import type { JwtSvidResult } from '../cache/workload-cache.js';
import { uniqueHints } from './hints.js';
import { parseJwtSvidRequest } from './jwt-request.js';
import type { JwtSvid, JwtSvidRequest, JwtSvidResponse } from './messages.js';
import { unary } from './unary-rpc.js';
import type { WorkloadContext } from './workload-context.js';

/** The Workload API's FetchJWTSVID (WL-API §6.2.1): JWT-SVIDs for the requested audience, signed by the server on demand. */
export function fetchJwtSvidRpc(ctx: WorkloadContext) {
  const { deps, recheck, duplicateHint, admitEntitled } = ctx;
  const jwtDuplicateHint = duplicateHint('FetchJWTSVID');

  async function fetchJwtSvid(call: ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>): Promise<JwtSvidResponse> {
    const query = parseJwtSvidRequest(call.request);
    const { selectors } = await admitEntitled(call);
    // A wait for the server's signing budget ends with the call: a client that gave up without a deadline would
    // otherwise hold it for up to 20 s, and have a token signed for nobody at its end.
    const cancelled = new AbortController();
    // The cache listens on it once per identity it signs for, so a caller of more than ten identities passed Node's
    // default of ten listeners: every such call printed a "possible memory leak" warning, a raw line among the JSON
    // logs. The listeners are as many as the caller's entries and go when their signings end.
    setMaxListeners(0, cancelled.signal);
    const abort = (): void => cancelled.abort();
    call.on('cancelled', abort);
    if (call.cancelled) abort();
    let results: JwtSvidResult[];
    try {
      results = await deps.cache.fetchJwtSvids(selectors, query.audience, query.spiffeId, callDeadlineOnClock(call, deps.clock), cancelled.signal);
    } catch (error) {
      throw isMeshidError(error, 'permission_denied') ? notYetSynced(error, query.spiffeId) : error;
    } finally {
      call.removeListener('cancelled', abort);
    }
    // Attested before the signing, which can take up to the call's deadline: the token goes to the process that holds
    // the connection now, which must still be the one attested (callerRecheck), as a FetchSecrets that waited does.
    recheck(call, selectors);
    // Never hand out an identity that was not asked for, even if a cache implementation got the filter wrong.
    const wanted = query.spiffeId === undefined ? results : results.filter((r) => r.spiffeId === query.spiffeId);
    if (wanted.length === 0) {
      throw notYetSynced(noIdentityFor(selectors, query.spiffeId === undefined ? 'no identity issued' : `the caller is not entitled to ${query.spiffeId}`), query.spiffeId);
    }
    const svids = uniqueHints(wanted, jwtDuplicateHint).map(({ item, hint }): JwtSvid => {
      const svid: JwtSvid = { spiffe_id: item.spiffeId, svid: item.token };
      if (hint !== '') svid.hint = hint;
      return svid;
    });
    return { svids };
  }

  /**
   * A refusal, as the caller gets it. Admission already told a caller with no entry at all apart before the first sync
   * (workload-context.ts); a caller holding entries reaches here, and until the agent has synced its entries may be
   * stale: the entry for the identity it names may have been made while the agent was down, or, asked for every
   * identity, the entries held for it may have been changed or deleted on the server, which then refuses their signing
   * (the cache drops them, and finds none left). Until then that is UNAVAILABLE (retry), not PERMISSION_DENIED, which
   * clients take as final (SPEC-NOTES §7; java-spiffe gives up): the first sync tells which it is.
   */
  function notYetSynced(refusal: unknown, spiffeId: string | undefined): unknown {
    if (deps.cache.synced()) return refusal;
    return notSynced(spiffeId === undefined ? 'no entry it holds gives the caller an identity' : `no entry it holds gives the caller ${spiffeId}`, { cause: refusal });
  }

  return (call: ServerUnaryCall<JwtSvidRequest, JwtSvidResponse>, callback: sendUnaryData<JwtSvidResponse>): void => {
    unary(ctx, 'FetchJWTSVID', call, callback, () => fetchJwtSvid(call));
  };
}
