/**
 * Counters for the SDS service, read through `stats()` by tests, the agent's health output and benchmarks. Plain
 * numbers: they only ever go up, except the open-stream gauges.
 */
export interface SdsStats {
  /** StreamSecrets / DeltaSecrets streams open right now. */
  sotwStreams: number;
  deltaStreams: number;
  /** Streams ever accepted (attested, and entitled unless the agent serves verifiers). */
  streamsOpened: number;
  /** Responses written on streams, and unary FetchSecrets answered. */
  responses: number;
  fetches: number;
  /** Requests acknowledging the latest response without error_detail. */
  acks: number;
  /** Requests carrying error_detail: Envoy rejected what it was sent (SPEC-NOTES §10, §11). */
  nacks: number;
  /** SotW requests ignored because their nonce is not the latest one sent (SPEC-NOTES §10). */
  staleRequests: number;
  /** Times a change arrived while a response was still being written and was folded into the next one. */
  coalescedUpdates: number;
  /** Calls refused: not attested or not entitled (PERMISSION_DENIED / UNAVAILABLE). */
  deniedCalls: number;
  /**
   * Calls ended for a request that cannot be served as asked: INVALID_ARGUMENT / NOT_FOUND for a bad request,
   * FAILED_PRECONDITION for `ALL` without the SPIFFE validator.
   */
  rejectedRequests: number;
}

export function emptyStats(): SdsStats {
  return {
    sotwStreams: 0,
    deltaStreams: 0,
    streamsOpened: 0,
    responses: 0,
    fetches: 0,
    acks: 0,
    nacks: 0,
    staleRequests: 0,
    coalescedUpdates: 0,
    deniedCalls: 0,
    rejectedRequests: 0,
  };
}
