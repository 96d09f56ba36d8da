import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { writeFileAtomic } from '../../common/atomic-file.js';
import { createDirectory, directoryCreationError } from '../../common/create-directory.js';
import { renderFields, type FieldValue } from '../../common/cli/output.js';
import { certificatesToPem, splitConcatenatedDer, toPem } from '../../common/x509/pem.js';
import type { X509SvidResponse } from '../workload/messages.js';

/** "2026-01-01 00:00:00 +0000 UTC": how spire-agent prints certificate times, so output reads the same. */
function formatCertTime(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} +0000 UTC`;
}

function validity(der: Buffer): { after: string; until: string } {
  const cert = new X509Certificate(der);
  return { after: formatCertTime(Date.parse(cert.validFrom)), until: formatCertTime(Date.parse(cert.validTo)) };
}

/**
 * The human-readable description of an X509SVIDResponse, one block per SVID as spire-agent's `api fetch x509`
 * prints it: SPIFFE ID, hint, the leaf's validity, each intermediate's, each CA's of the bundle, and the federated
 * trust domains.
 */
export function describeX509SvidResponse(res: X509SvidResponse): string {
  const blocks = res.svids.map((svid) => {
    const rows: Array<[string, FieldValue]> = [['SPIFFE ID', svid.spiffe_id], ['Hint', svid.hint || undefined]];
    const [leaf, ...intermediates] = splitConcatenatedDer(svid.x509_svid);
    if (leaf !== undefined) {
      const v = validity(leaf);
      rows.push(['SVID Valid After', v.after], ['SVID Valid Until', v.until]);
    }
    intermediates.forEach((der, i) => {
      const v = validity(der);
      rows.push([`Intermediate #${i + 1} Valid After`, v.after], [`Intermediate #${i + 1} Valid Until`, v.until]);
    });
    splitConcatenatedDer(svid.bundle).forEach((der, i) => {
      const v = validity(der);
      rows.push([`CA #${i + 1} Valid After`, v.after], [`CA #${i + 1} Valid Until`, v.until]);
    });
    return renderFields(rows);
  });
  const federated = Object.entries(res.federated_bundles ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  if (federated.length > 0) {
    blocks.push(renderFields(federated.map(([td, der]) => [`Federated bundle`, `${td} (${splitConcatenatedDer(der).length} CA)`] as [string, FieldValue])));
  }
  return blocks.join('\n');
}

/**
 * The response as spire-agent's `api fetch x509 -output json` prints it (protojson with proto names and unset fields
 * included), so that scripts reading `.federated_bundles` or `.svids[0].hint` find an empty value, not null.
 */
export function x509SvidResponseJson(res: X509SvidResponse): object {
  return {
    svids: res.svids.map((s) => ({ spiffe_id: s.spiffe_id, x509_svid: s.x509_svid, x509_svid_key: s.x509_svid_key, bundle: s.bundle, hint: s.hint ?? '' })),
    crl: res.crl ?? [],
    federated_bundles: res.federated_bundles ?? {},
  };
}

/**
 * Writes the response the way `spire-agent api fetch x509 -write DIR` does: per SVID i, `svid.i.pem` (the chain, leaf
 * first), `svid.i.key` (PKCS#8 PEM, mode 0600), `bundle.i.pem` (the own trust domain's roots) and
 * `federated_bundle.i.j.pem` per federated trust domain (sorted by name); certificates 0644. Each file is written
 * atomically. Creates `dir` (0700) when missing. Returns the lines to print, one per file.
 */
export function writeX509SvidFiles(dir: string, res: X509SvidResponse): string[] {
  try {
    createDirectory(dir, 0o700);
  } catch (err) {
    throw directoryCreationError(err, dir, 'output directory', '--write');
  }
  const lines: string[] = [];
  const write = (label: string, file: string, data: string, mode: number): void => {
    const full = path.join(dir, file);
    writeFileAtomic(full, data, mode);
    lines.push(`Writing ${label} to file ${full}.`);
  };
  const federated = Object.entries(res.federated_bundles ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  res.svids.forEach((svid, i) => {
    write(`SVID #${i}`, `svid.${i}.pem`, certificatesToPem(splitConcatenatedDer(svid.x509_svid)), 0o644);
    write(`key #${i}`, `svid.${i}.key`, toPem('PRIVATE KEY', svid.x509_svid_key), 0o600);
    write(`bundle #${i}`, `bundle.${i}.pem`, certificatesToPem(splitConcatenatedDer(svid.bundle)), 0o644);
    federated.forEach(([td, der], j) => {
      write(`federated bundle #${j} (${td})`, `federated_bundle.${i}.${j}.pem`, certificatesToPem(splitConcatenatedDer(der)), 0o644);
    });
  });
  return lines;
}
