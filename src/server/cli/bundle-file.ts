import { invalidArgument, isMeshidError } from '../../common/errors.js';
import { readAll, readTextFile } from '../../common/cli/input.js';
import { refuseDuplicateKeys } from '../../common/json-duplicate-key.js';
import type { CliIo } from '../../common/cli/output.js';
import { federatedBundleFromText, rootsOfAnotherTrustDomain } from '../federation/federated-bundle.js';

/**
 * A federated bundle file an operator pointed a command at (`bundle set --path`, `federation create|update --bundle-path`),
 * read and checked here as the server will check it, so a file that is no bundle is refused naming the file: the
 * server only sees the text, and its 'no PEM "CERTIFICATE" block found' does not say which file held it.
 */
export function readBundleFile(file: string, trustDomain: string, format: string | undefined): string {
  return checkedBundle(readTextFile(file, 'bundle file'), `bundle file ${file}`, trustDomain, format);
}

/**
 * `federation create|update --bundle-path -`: the bundle from standard input, as `entry create --data -` reads its
 * entries, checked as a file is. Empty input is refused as such: the parser's 'no PEM "CERTIFICATE" block found'
 * would not tell that nothing was piped in.
 */
export async function readBundleInput(
  file: string, flag: string, trustDomain: string, format: string | undefined, io: Pick<CliIo, 'stdin' | 'stderr'>,
): Promise<string> {
  if (file !== '-') return readBundleFile(file, trustDomain, format);
  const text = await readAll(io, `${flag} - reads the bundle from standard input, and there is none`, 'the bundle (PEM or a SPIFFE bundle document)');
  if (text.trim() === '') throw invalidArgument(`${flag} - reads the bundle from standard input, which is empty: pipe the PEM CA certificates or the SPIFFE bundle document into it`);
  return checkedBundle(text, 'the bundle on standard input', trustDomain, format);
}

/** `text` when it is a bundle the server will take, else an InvalidArgument naming where it came from (`source`). */
function checkedBundle(text: string, source: string, trustDomain: string, format: string | undefined): string {
  // First, so the refusal names `source` alone: the server-side parse below refuses a repeated key too.
  refuseRepeatedKeys(text, source);
  try {
    // The sequence and time of a stored bundle do not matter to whether the text is one.
    federatedBundleFromText(trustDomain, text, format, undefined, 0);
  } catch (err) {
    if (isMeshidError(err, 'invalid_argument')) throw invalidArgument(`${source}: ${err.message}`, err);
    throw err;
  }
  return text;
}

/**
 * A SPIFFE bundle document (a JWK set) holding a key twice ("keys", say) is refused, naming `source`: the server would
 * trust the last silently. Text that is not JSON is left to the server's own checks.
 */
export function refuseRepeatedKeys(text: string, source: string): void {
  if (isJson(text)) refuseDuplicateKeys(text, source);
}

/**
 * After a federated bundle was stored for `trustDomain`: a warning on stderr if one of its roots is another trust
 * domain's CA (rootsOfAnotherTrustDomain), as when partner B's bundle is set for partner A.
 */
export function warnOfAnotherTrustDomain(trustDomain: string, text: string, format: string | undefined, io: Pick<CliIo, 'stderr'>): void {
  let x509Authorities: readonly Buffer[];
  try {
    x509Authorities = federatedBundleFromText(trustDomain, text, format, undefined, 0).x509Authorities;
  } catch {
    return; // the server took it; what it stored is its business, not this warning's
  }
  const other = rootsOfAnotherTrustDomain(trustDomain, x509Authorities);
  if (other === undefined) return;
  io.stderr.write(
    `Warning: ${other.message}: if it is ${other.trustDomains.join(' or ')}'s bundle, it was set for the wrong trust domain, ` +
      `and "meshid-server bundle delete --trust-domain ${trustDomain}" takes it out\n`,
  );
}

/**
 * After a federated bundle was stored for `trustDomain`: a warning on stderr for each key of the document that was left
 * out (or read with a flaw), saying why, since "Bundle set" alone would have the operator trust a root that is not.
 */
export function warnOfLeftOutKeys(trustDomain: string, text: string, format: string | undefined, io: Pick<CliIo, 'stderr'>): void {
  try {
    federatedBundleFromText(trustDomain, text, format, undefined, 0, (reasons) => {
      for (const reason of reasons) io.stderr.write(`Warning: ${reason}\n`);
    });
  } catch {
    // the server took it; what it stored is its business, not this warning's
  }
}

/** Whether the text is JSON (a SPIFFE bundle document) rather than PEM. */
function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
