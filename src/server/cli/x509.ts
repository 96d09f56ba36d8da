import fs from 'node:fs';
import path from 'node:path';
import { failedPrecondition, invalidArgument } from '../../common/errors.js';
import { writeFilesAtomic } from '../../common/atomic-file.js';
import { createDirectory } from '../../common/create-directory.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { createCsr } from '../../common/x509/csr.js';
import { exportPkcs8Der, exportPkcs8Pem, generateKeyPair } from '../../common/x509/keys.js';
import { certificatesToPem } from '../../common/x509/pem.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import { isoTime } from './entry-output.js';
import { readProblem } from '../../common/cli/input.js';
import { checkSpiffeId, datacenterFlag, spiffeIdFlag, ttlFlag } from './flags.js';

/** The three files `x509 mint --write DIR` leaves, with their modes: only the key is private. */
export const MINT_FILES = Object.freeze({
  svid: { name: 'svid.pem', mode: 0o644 },
  key: { name: 'key.pem', mode: 0o600 },
  bundle: { name: 'bundle.pem', mode: 0o644 },
});

const mint: Command = {
  name: 'mint',
  summary: 'Mints an X509-SVID for tooling. The P-256 key is generated here and never leaves this machine; the server signs a CSR.',
  flags: [
    spiffeIdFlag('SPIFFE ID of the SVID; required'),
    ttlFlag('Lifetime of the SVID, in seconds or like 1h, 24h; 0 or absent: the server default (default_x509_svid_ttl)'),
    { name: 'dns', aliases: ['dnsName'], type: 'strings', valueName: 'NAME', description: 'DNS name to add as a SAN' },
    datacenterFlag("Datacenter whose intermediate CA signs (default: the server's first)"),
    { name: 'write', type: 'string', valueName: 'DIR', description: 'Write svid.pem (leaf + intermediate), key.pem (PKCS#8, 0600) and bundle.pem to DIR instead of printing them (a DIR it creates is 0700)' },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const spiffeId = checkSpiffeId(args.requiredString('spiffe-id'), 'SPIFFE ID');
    const ttl = args.seconds('ttl');
    const datacenter = args.string('datacenter');
    const dir = args.string('write');
    // Before the server signs: a --write that cannot be written would throw the new SVID and key away.
    const created = dir !== undefined ? prepareMintDir(dir) : undefined;
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const csr = await createCsr(privateKey, publicKey);
    const res = await withAdminClient(args, io.env, (client) =>
      client.call('Svids', 'MintX509Svid', {
        csr,
        spiffe_id: spiffeId,
        dns_names: args.strings('dns'),
        ...(ttl !== undefined ? { ttl } : {}),
        ...(datacenter !== undefined ? { datacenter } : {}),
      }),
    ).catch((err: unknown) => {
      // Nothing to write: the directories made for the files go again (only while empty, never one that was there).
      if (created !== undefined && dir !== undefined) removeEmptyDirs(dir, created);
      throw err;
    });
    const chain = res.svid_chain ?? [];
    if (chain.length === 0) throw invalidArgument('the server returned no certificate');
    const pems = { svid: certificatesToPem(chain), key: exportPkcs8Pem(privateKey), bundle: certificatesToPem(res.root_cas ?? []) };
    const expiresAt = res.expires_at ?? 0;
    const json = outputFormat(args) === 'json';

    if (dir !== undefined) {
      const files = writeMintFiles(dir, pems);
      // meshid's own document (spire-server prints lines here), so its int64 is a JSON number, as in every document of
      // meshid's own; only those in spire-server's shapes write protojson's decimal strings (README, --output json).
      if (json) io.stdout.write(renderJson({ spiffe_id: spiffeId, expires_at: expiresAt, svid_path: files.svid, key_path: files.key, bundle_path: files.bundle }));
      else io.stdout.write(`X509-SVID written to ${files.svid}\nPrivate key written to ${files.key}\nRoot CAs written to ${files.bundle}\n`);
      return 0;
    }
    // spire-server's mint result: the chain, the PKCS#8 key and the roots, each DER in base64.
    if (json) io.stdout.write(renderJson({ x509_svid: chain, private_key: exportPkcs8Der(privateKey), root_cas: res.root_cas ?? [] }));
    else io.stdout.write(`X509-SVID (expires ${isoTime(expiresAt) ?? 'unknown'}):\n${pems.svid}\nPrivate key:\n${pems.key}\nRoot CAs:\n${pems.bundle}`);
    return 0;
  },
};

/**
 * Makes sure --write names a directory meshid can write into, creating it (0700, as `meshid-agent api fetch --write`
 * does: it receives a private key) when absent; returns the first directory it created, if any.
 */
function prepareMintDir(dir: string): string | undefined {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw failedPrecondition(`--write ${dir}: ${readProblem(err)}`);
  }
  if (st !== undefined && !st.isDirectory()) throw failedPrecondition(`--write ${dir} is a file, not a directory: name the directory the PEM files go to`);
  let created: string | undefined;
  try {
    if (st === undefined) created = createDirectory(dir, 0o700);
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    throw failedPrecondition(`--write ${dir}: cannot write there: ${readProblem(err)}`);
  }
  return created;
}

/**
 * Removes `dir` and its parents up to `top`, each only while it is empty (rmdir refuses anything else). Up the path as
 * written, as createDirectory made them: resolved by name, `link/..` would name other directories than the kernel's.
 */
function removeEmptyDirs(dir: string, top: string): void {
  const stop = top;
  for (let d = dir; ; d = path.dirname(d)) {
    try {
      fs.rmdirSync(d);
    } catch {
      return;
    }
    if (d === stop || path.dirname(d) === d) return;
  }
}

/**
 * Writes the three PEM files; returns their paths. Each file is whole, old or new, but the set is replaced a rename at
 * a time (writeFilesAtomic), so the order is what a reader can tell from a mint cut short: the bundle first (an older
 * SVID still verifies against a newer bundle, which keeps a root while anything chains to it; a newer SVID may not
 * verify against an older one), then the key, then the SVID, last, so a new svid.pem means the set is whole and a
 * new key beside an old svid.pem is a mismatch every TLS library refuses to load rather than a silent mix.
 */
function writeMintFiles(dir: string, pems: { svid: string; key: string; bundle: string }): { svid: string; key: string; bundle: string } {
  const paths = {
    svid: path.join(dir, MINT_FILES.svid.name),
    key: path.join(dir, MINT_FILES.key.name),
    bundle: path.join(dir, MINT_FILES.bundle.name),
  };
  try {
    writeFilesAtomic([
      { file: paths.bundle, data: pems.bundle, mode: MINT_FILES.bundle.mode },
      { file: paths.key, data: pems.key, mode: MINT_FILES.key.mode },
      { file: paths.svid, data: pems.svid, mode: MINT_FILES.svid.mode },
    ]);
  } catch (err) {
    throw failedPrecondition(`cannot write to ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return paths;
}

/** `meshid-server x509 mint`: X509-SVIDs for tooling (admin API meshid.admin.v1.Svids). */
export async function x509Command(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server x509', 'Mint X509-SVIDs.', [mint], argv, io);
}
