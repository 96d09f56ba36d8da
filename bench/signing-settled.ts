/** Waiting for an agent's signing burst to end, so that what is measured next is not the burst. */

/**
 * Resolves once the agent has logged no X.509-SVID issuance for 3 s, or after `limitMs`. `output` returns the
 * agent's log so far.
 */
export async function signingSettled(output: () => string, limitMs = 300_000): Promise<void> {
  const issued = (): number => (output().match(/X509-SVIDs issued/g) ?? []).length;
  for (let last = -1, quietSince = performance.now(), until = performance.now() + limitMs; performance.now() < until; ) {
    await new Promise((r) => setTimeout(r, 500));
    if (issued() !== last) {
      last = issued();
      quietSince = performance.now();
    } else if (performance.now() - quietSince > 3000) return;
  }
}
