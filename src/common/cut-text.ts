/**
 * `text` cut to at most `maxChars` UTF-16 code units, never between the two halves of a character outside the BMP
 * (an emoji, say): a lone high surrogate left at the end is no character at all, and JSON log lines would carry it as
 * a "\ud83d" escape that strict readers refuse. For values a client sent that are logged cut short.
 */
export function cutText(text: string, maxChars: number): string {
  if (text.length <= maxChars) return text;
  const end = maxChars > 0 && isHighSurrogate(text.charCodeAt(maxChars - 1)) ? maxChars - 1 : maxChars;
  return text.slice(0, end);
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff;
}
