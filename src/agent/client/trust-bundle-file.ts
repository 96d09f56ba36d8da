import fs from 'node:fs';
import { invalidArgument } from '../../common/errors.js';
import { parseSpiffeId } from '../../common/spiffe/spiffe-id.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import { pemToDerList } from '../../common/x509/pem.js';
import { readProblem } from '../../common/cli/input.js';

/**
 * Reads the trust bundle the operator gave for the first attestation: PEM CA certificates, as `meshid-server bundle
 * show` prints them. Every certificate must be a CA (a leaf here would make the agent trust a single server key).
 */
export function readTrustBundleFile(file: string): Buffer[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw invalidArgument(`cannot read the trust bundle ${file}: ${readProblem(err)}`);
  }
  let roots: Buffer[];
  try {
    roots = pemToDerList(text);
  } catch (err) {
    throw invalidArgument(`the trust bundle ${file} is not PEM certificates (meshid-server bundle show): ${(err as Error).message}`, err);
  }
  roots.forEach((der, i) => {
    if (!parseCertificate(der).isCa) throw invalidArgument(`certificate ${i + 1} of the trust bundle ${file} is not a CA certificate`);
  });
  return roots;
}

/**
 * The trust domain the roots name in their URI SAN (X509-SVID §3.2: a signing certificate's SAN is spiffe://<td>),
 * or undefined when none does (e.g. an operator-supplied upstream root). Roots naming different trust domains are
 * an error.
 */
export function trustDomainOfRoots(roots: readonly Buffer[]): string | undefined {
  const domains = new Set<string>();
  for (const der of roots) {
    for (const uri of parseCertificate(der).uriSans) {
      if (uri.startsWith('spiffe://')) domains.add(parseSpiffeId(uri).trustDomain);
    }
  }
  if (domains.size > 1) throw invalidArgument(`the trust bundle names several trust domains (${[...domains].join(', ')})`);
  return domains.values().next().value;
}
