import { invalidArgument } from '../errors.js';
import { DerError, readTlv } from './der-reader.js';

/**
 * PEM (RFC 7468) and concatenated DER. SDS serves PEM; the Workload API serves chains and bundles as concatenated DER
 * certificates with no separators (SPEC-NOTES §1, §3), so both directions live here.
 */

/** One PEM block with base64 wrapped at 64 columns (RFC 7468 §2). */
export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** PEM "CERTIFICATE" blocks, in order, one after another. */
export function certificatesToPem(ders: readonly Buffer[]): string {
  return ders.map((d) => toPem('CERTIFICATE', d)).join('');
}

const BLOCK_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END ([A-Z0-9 ]+)-----/g;

/**
 * Every PEM block labelled `label`, decoded, in order. Text outside blocks is ignored (RFC 7468 §5.2 explanatory
 * text); blocks with another label are an error, as are mismatched END lines, bad base64 and, for certificates, a
 * body that is not exactly one DER SEQUENCE. Throws MeshidError(invalid_argument); an input with no block is an error.
 */
export function pemToDerList(pem: string, label = 'CERTIFICATE'): Buffer[] {
  if (typeof pem !== 'string') throw invalidArgument('PEM input must be text');
  const out: Buffer[] = [];
  for (const m of pem.matchAll(BLOCK_RE)) {
    const [, begin, body, end] = m;
    const n = out.length + 1;
    if (begin !== end) throw invalidArgument(`PEM block ${n}: BEGIN ${begin} does not match END ${end}`);
    if (begin !== label) throw invalidArgument(`PEM block ${n} is a "${begin}", expected "${label}"`);
    const b64 = body!.replace(/\s+/g, '');
    if (b64 === '' || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) {
      throw invalidArgument(`PEM block ${n} (${label}) does not hold valid base64`);
    }
    const der = Buffer.from(b64, 'base64');
    if (label === 'CERTIFICATE') {
      try {
        const t = readTlv(der);
        if (t.tag !== 0x30 || t.end !== der.length) throw new DerError('not a single DER SEQUENCE');
      } catch (err) {
        throw invalidArgument(`PEM block ${n} is not a DER certificate: ${(err as Error).message}`, err);
      }
    }
    out.push(der);
  }
  if (pem.split('-----BEGIN ').length - 1 !== out.length) throw invalidArgument('malformed PEM: a BEGIN line has no matching END line');
  if (out.length === 0) throw invalidArgument(`no PEM "${label}" block found`);
  return out;
}

/**
 * Splits concatenated DER into its elements by walking each top-level SEQUENCE's length. An empty buffer is an empty
 * list; anything that is not a run of complete SEQUENCEs throws MeshidError(invalid_argument). The elements are
 * views into `buf`, not copies.
 */
export function splitConcatenatedDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < buf.length; ) {
    let end: number;
    try {
      const t = readTlv(buf, at);
      if (t.tag !== 0x30) throw new DerError(`expected a SEQUENCE, found tag 0x${t.tag.toString(16)}`);
      end = t.end;
    } catch (err) {
      throw invalidArgument(`malformed concatenated DER at byte ${at} (element ${out.length + 1}): ${(err as Error).message}`, err);
    }
    out.push(buf.subarray(at, end));
    at = end;
  }
  return out;
}
