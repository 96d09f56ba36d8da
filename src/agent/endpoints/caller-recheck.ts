import { isMeshidError, unavailable } from '../../common/errors.js';
import type { Selector } from '../../common/spiffe/selector.js';
import { workloadKey } from '../cache/entry-index.js';

/**
 * Whether a stream's caller is still the process it was opened for, checked before anything more is pushed to it.
 * A stream is attested once, when it opens; without this, a connection whose connecting process exited, dropped its
 * ids or exec'd another binary kept receiving that process's rotations and new identities on every stream it had
 * open, in the hands of whoever holds the socket now (a forked child, a relay). Throws the attestation failure (an
 * exited or changed caller also retires the connection: peerAttestation), or UNAVAILABLE when the caller now attests
 * to other selectors, so the client reconnects and is attested as what it is.
 *
 * A push reaches every stream of a connection in the same event-loop turn (a rotation: a thousand SDS streams over a
 * few connections), so the answer is kept per connection until that turn ends: one /proc read per connection and
 * push, not per stream.
 */
export function callerRecheck<Call extends { getPeer(): string }>(
  attest: (call: Call) => readonly Selector[] | Promise<readonly Selector[]>,
): (call: Call, selectors: readonly Selector[]) => void {
  let thisTurn = new Map<string, string | Error | undefined>();
  let clearing = false;
  // A stream's key does not change while it is open, and a push asks for a thousand of them: worked out on a stream's
  // first check and kept with its call (getPeer() formats a string each time; a key built anew is hashed anew).
  const keys = new WeakMap<Call, StreamKey>();
  return (call, selectors) => {
    let stream = keys.get(call);
    if (stream?.selectors !== selectors) keys.set(call, (stream = streamKey(call, selectors)));
    const { key, opened } = stream;
    let now = thisTurn.get(key);
    if (!thisTurn.has(key)) {
      try {
        const attested = attest(call);
        // Only an asynchronous attestor (none in the agent: tests' stubs) cannot answer here; the open did.
        now = attested instanceof Promise ? undefined : workloadKey(attested);
      } catch (error) {
        now = isMeshidError(error) ? error : unavailable('workload attestation failed', error);
      }
      thisTurn.set(key, now);
      if (!clearing) {
        clearing = true;
        setImmediate(() => {
          clearing = false;
          thisTurn = new Map();
        });
      }
    }
    if (now instanceof Error) throw now;
    if (now !== undefined && now !== opened) {
      throw unavailable('the calling process changed since this stream opened (its ids or its executable); reconnect to be attested again');
    }
  };
}

interface StreamKey {
  readonly selectors: readonly Selector[];
  /** workloadKey of the selectors the stream opened with. */
  readonly opened: string;
  /**
   * By connection and the selectors a stream opened with: the same for every stream of a connection, unless its
   * process changed between two opens (then the older streams end at their next check).
   */
  readonly key: string;
}

function streamKey(call: { getPeer(): string }, selectors: readonly Selector[]): StreamKey {
  const opened = workloadKey(selectors);
  return { selectors, opened, key: `${call.getPeer()}\n${opened}` };
}
