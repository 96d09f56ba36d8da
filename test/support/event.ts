/**
 * `promise`, or a rejection naming `what` if it has not settled in `ms` (10 s by default, as until() gives up): a
 * server event, not time logic. Every wait on a stream's next message, an emitter's event or a loop of either goes
 * through here: without its own bound, a regression that never sends would hang the file until the runner's limit,
 * which names no test.
 */
export async function event<T>(what: string, promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s waiting for ${what}`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
