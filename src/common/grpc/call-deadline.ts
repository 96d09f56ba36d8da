import type { Deadline } from '@grpc/grpc-js';
import type { Clock } from '../clock.js';

/**
 * A call's deadline on `clock`, Infinity when the client set none: so that a wait the agent makes for a caller (a
 * budget refusal, SVIDs being signed) ends before the caller stops listening. grpc-js gives the deadline on the wall
 * clock, the one `clock` reads outside tests; the time left is carried over, not the instant.
 */
export function callDeadlineOnClock(call: { getDeadline(): Deadline }, clock: Clock): number {
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(at) ? clock.now() + (at - Date.now()) : Infinity;
}
