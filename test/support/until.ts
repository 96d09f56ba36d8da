/**
 * Waits for something a server or agent does over the network (an event, not time logic), polling every 25 ms for
 * up to 10 s: the value `probe` returns once it is not undefined.
 */
export async function until<T>(what: string, probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 400; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}
