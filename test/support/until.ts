/**
 * Waits for something a server or agent does over the network (an event, not time logic), polling every 25 ms for
 * up to `boundMs` (10 s by default): the value `probe` returns (or resolves with) once it is not undefined.
 *
 * A probe answers with what it waited for, or undefined for "not yet": `cond ? true : undefined`, never a bare
 * boolean, whose false is a value and would end the wait at once, leaving the test's next assertion to race what it
 * waited for (hence files of boolean waits kept an `until` of their own). The type refuses a probe that may return
 * false.
 */
export async function until<T extends object | string | number | bigint | symbol | true>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  boundMs = 10_000,
): Promise<T> {
  for (let i = 0; i * 25 < boundMs; i++) {
    const returned = probe();
    // Awaited only when a promise: a synchronous probe is checked in the same turn, as it always was.
    const v = returned instanceof Promise ? await returned : returned;
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}
