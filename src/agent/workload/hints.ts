/** WL-API §8 / SPEC-NOTES §8: hints longer than this are not supported. */
export const MAX_HINT_BYTES = 1024;

/**
 * Keeps the first item of each non-empty hint and drops later items with the same hint (SPEC-NOTES §8: a hint MUST
 * be unique within one response; clients take the first of duplicates, and SPIRE drops the later entries, keeping the
 * oldest — so svids[0], the oldest entry, is never the one dropped). A hint over 1024 bytes is treated as no hint:
 * the identity is still served, but clients cannot select it by an unsupported hint. `onDropped` hears of each item
 * left out and the one that kept its hint: a workload silently missing an identity is otherwise a mystery.
 */
export function uniqueHints<T extends { readonly hint: string }>(
  items: readonly T[],
  onDropped?: (dropped: T, kept: T) => void,
): Array<{ item: T; hint: string }> {
  const seen = new Map<string, T>();
  const out: Array<{ item: T; hint: string }> = [];
  for (const item of items) {
    const hint = Buffer.byteLength(item.hint, 'utf8') > MAX_HINT_BYTES ? '' : item.hint;
    if (hint !== '') {
      const kept = seen.get(hint);
      if (kept !== undefined) {
        onDropped?.(item, kept);
        continue;
      }
      seen.set(hint, item);
    }
    out.push({ item, hint });
  }
  return out;
}
