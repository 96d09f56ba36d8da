/**
 * Waits for something a server or agent does over the network (an event, not time logic), polling every 25 ms for
 * up to `boundMs` (10 s by default): the value `probe` returns (or resolves with) once it is not undefined.
 */
export async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, boundMs = 10_000): Promise<T> {
  for (let i = 0; i * 25 < boundMs; i++) {
    const returned = probe();
    // Awaited only when a promise: a synchronous probe is checked in the same turn, as it always was.
    const v = returned instanceof Promise ? await returned : returned;
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}
