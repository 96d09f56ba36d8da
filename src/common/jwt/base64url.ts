import { invalidArgument } from '../errors.js';

/** RFC 7515 §2: base64url without padding. Node's own decoder silently skips invalid characters, hence the check. */
const BASE64URL_RE = /^[A-Za-z0-9_-]*$/;

/** Decodes unpadded base64url strictly: any character outside the alphabet, padding or a dangling 6 bits is an error. */
export function decodeBase64Url(text: string, what: string): Buffer {
  if (!BASE64URL_RE.test(text) || text.length % 4 === 1) throw invalidArgument(`${what} is not valid base64url`);
  return Buffer.from(text, 'base64url');
}

export function encodeBase64Url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}
