/**
 * The openssl CLI as an independent judge of the certificates meshid makes. Every helper writes its inputs to a fresh
 * temporary directory and removes it afterwards.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface OpensslResult {
  ok: boolean;
  /** stdout and stderr together. */
  output: string;
}

function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'meshid-openssl-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function run(args: string[], input?: Buffer): OpensslResult {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  if (r.error) throw r.error;
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

export interface VerifyInput {
  roots: Buffer[];
  intermediates?: Buffer[];
  leaf: Buffer;
  purpose?: 'sslclient' | 'sslserver';
  /** Verify as of this instant (epoch ms) instead of the real clock. */
  atTime?: number;
}

/**
 * `openssl verify -x509_strict [-purpose …] [-attime …] -CAfile roots.pem [-untrusted inter.pem] leaf.pem`. `ok` is
 * true only when openssl exits 0 and prints "leaf.pem: OK".
 */
export function opensslVerify(input: VerifyInput): OpensslResult {
  return withTempDir((dir) => {
    const rootsFile = join(dir, 'root.pem');
    const leafFile = join(dir, 'leaf.pem');
    writeFileSync(rootsFile, input.roots.map((d) => pem('CERTIFICATE', d)).join(''));
    writeFileSync(leafFile, pem('CERTIFICATE', input.leaf));
    const args = ['verify', '-x509_strict'];
    if (input.purpose) args.push('-purpose', input.purpose);
    if (input.atTime !== undefined) args.push('-attime', String(Math.floor(input.atTime / 1000)));
    args.push('-CAfile', rootsFile);
    if (input.intermediates && input.intermediates.length > 0) {
      const interFile = join(dir, 'inter.pem');
      writeFileSync(interFile, input.intermediates.map((d) => pem('CERTIFICATE', d)).join(''));
      args.push('-untrusted', interFile);
    }
    args.push(leafFile);
    const r = run(args);
    return { ok: r.ok && r.output.includes(`${leafFile}: OK`), output: r.output };
  });
}

/** `openssl x509 -noout -text` of a DER certificate. Throws when openssl cannot read it. */
export function opensslText(der: Buffer): string {
  const r = run(['x509', '-inform', 'DER', '-noout', '-text'], der);
  if (!r.ok) throw new Error(`openssl x509 failed: ${r.output}`);
  return r.output;
}

/** `openssl req -verify` of a DER PKCS#10 request: ok when the self-signature verifies. */
export function opensslReqVerify(der: Buffer): OpensslResult {
  return run(['req', '-inform', 'DER', '-noout', '-verify'], der);
}

/**
 * Makes a DER CSR with openssl itself, with a subject and a URI SAN that meshid must ignore. EC P-256 by default;
 * Ed25519 to exercise an algorithm meshid does not accept.
 */
export function opensslMakeCsr(keyType: 'ec-p256' | 'ec-p521' | 'ed25519' = 'ec-p256'): { csrDer: Buffer; keyPem: string } {
  return withTempDir((dir) => {
    const keyFile = join(dir, 'key.pem');
    const csrFile = join(dir, 'csr.der');
    const algorithm = keyType === 'ed25519' ? ['-algorithm', 'ed25519'] : ['-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${keyType === 'ec-p521' ? 'P-521' : 'P-256'}`];
    const gen = run(['genpkey', '-out', keyFile, ...algorithm]);
    if (!gen.ok) throw new Error(gen.output);
    const req = run([
      'req', '-new', '-key', keyFile, '-subj', '/CN=evil/O=attacker', '-addext', 'subjectAltName=URI:spiffe://evil.example/admin',
      '-outform', 'DER', '-out', csrFile,
    ]);
    if (!req.ok) throw new Error(req.output);
    return { csrDer: readFileSync(csrFile), keyPem: readFileSync(keyFile, 'utf8') };
  });
}

/** `openssl asn1parse` of DER: one line per element, e.g. "… prim: UTCTIME :491231235959Z". */
export function opensslAsn1parse(der: Buffer): string {
  const r = run(['asn1parse', '-inform', 'DER'], der);
  if (!r.ok) throw new Error(`openssl asn1parse failed: ${r.output}`);
  return r.output;
}

/** Key types opensslSelfSigned makes besides EC P-256: ones meshid carries in bundles (Ed*) and ones it cannot. */
export type OpensslKeyAlgorithm = 'ed25519' | 'ed448' | 'dsa' | 'secp256k1';

/**
 * A self-signed EC P-256 certificate (or one of `keyAlgorithm`) made by `openssl req -x509`, as DER: an independent
 * fixture for meshid's parser. `extensions` are -addext values, e.g. "subjectAltName=URI:spiffe://example.org/a".
 */
export function opensslSelfSigned(opts: { subject: string; extensions: string[]; serial: string; days: number; keyAlgorithm?: OpensslKeyAlgorithm }): Buffer {
  return withTempDir((dir) => {
    const certFile = join(dir, 'cert.der');
    const args = ['req', '-x509', ...newKeyArgs(dir, opts.keyAlgorithm), '-nodes', '-keyout', join(dir, 'key.pem')];
    args.push('-subj', opts.subject, '-set_serial', opts.serial, '-days', String(opts.days), '-outform', 'DER', '-out', certFile);
    for (const e of opts.extensions) args.push('-addext', e);
    const r = run(args);
    if (!r.ok) throw new Error(r.output);
    return readFileSync(certFile);
  });
}

function newKeyArgs(dir: string, keyAlgorithm: OpensslKeyAlgorithm | undefined): string[] {
  switch (keyAlgorithm) {
    case undefined:
      return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    case 'secp256k1':
      return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'];
    case 'dsa': {
      // OpenSSL 3 makes DSA keys from a parameter file only.
      const params = join(dir, 'dsa-params.pem');
      const r = run(['genpkey', '-genparam', '-algorithm', 'DSA', '-pkeyopt', 'dsa_paramgen_bits:2048', '-out', params]);
      if (!r.ok) throw new Error(r.output);
      return ['-newkey', `dsa:${params}`];
    }
    default:
      return ['-newkey', keyAlgorithm];
  }
}

export interface OpensslCaFiles {
  /** PEM certificate file. */
  cert: string;
  /** PEM private key file. */
  key: string;
}

/**
 * An EC P-256 CA (or one of `keyAlgorithm`) made by the openssl CLI into `dir` as `<name>.pem` and `<name>.key`: self-signed, or issued by
 * `issuer`. An operator's PKI, for the upstream-CA tests. `pathLen` sets basicConstraints' pathlen.
 */
export function opensslCa(
  dir: string,
  name: string,
  opts: {
    issuer?: OpensslCaFiles;
    pathLen?: number;
    days?: number;
    subject?: string;
    reuseKey?: string;
    keyAlgorithm?: OpensslKeyAlgorithm;
    /** Replace the CA extensions (basicConstraints, keyUsage, SKI and, when issued, AKI), e.g. to leave one out with "…=none". */
    extensions?: string[];
    /** The serial of an issued CA (default: the current time in ms), e.g. "-12345". */
    serial?: string;
  } = {},
): OpensslCaFiles {
  const cert = join(dir, `${name}.pem`);
  const key = opts.reuseKey ?? join(dir, `${name}.key`);
  const newKey = opts.reuseKey === undefined ? [...newKeyArgs(dir, opts.keyAlgorithm), '-nodes', '-keyout', key] : ['-key', key];
  const basic = `basicConstraints=critical,CA:TRUE${opts.pathLen !== undefined ? `,pathlen:${opts.pathLen}` : ''}`;
  const days = String(opts.days ?? 3650);
  const subject = opts.subject ?? `/O=Example Corp/CN=${name}`;
  const steps: string[][] = [];
  const extensions = opts.extensions ?? [basic, 'keyUsage=critical,keyCertSign,cRLSign', 'subjectKeyIdentifier=hash', ...(opts.issuer ? ['authorityKeyIdentifier=keyid'] : [])];
  if (opts.issuer === undefined) {
    steps.push(['req', '-x509', ...newKey, '-out', cert, '-subj', subject, '-days', days, ...extensions.flatMap((e) => ['-addext', e])]);
  } else {
    const csr = join(dir, `${name}.csr`);
    const ext = join(dir, `${name}.ext`);
    writeFileSync(ext, extensions.map((e) => `${e}\n`).join(''));
    steps.push(['req', '-new', ...newKey, '-out', csr, '-subj', subject]);
    steps.push(['x509', '-req', '-in', csr, '-CA', opts.issuer.cert, '-CAkey', opts.issuer.key, '-set_serial', opts.serial ?? String(Date.now()), '-days', days, '-extfile', ext, '-out', cert]);
  }
  for (const args of steps) {
    const r = run(args);
    if (!r.ok) throw new Error(`openssl ${args[0]}: ${r.output}`);
  }
  return { cert, key };
}

/**
 * A web PKI server certificate from `ca` for `dnsName` (serverAuth), as a certbot or cert-manager renewal would
 * leave it: `<name>.pem` (the leaf, then the CA) and `<name>.key`.
 */
export function opensslWebLeaf(dir: string, ca: OpensslCaFiles, name: string, dnsName = 'localhost'): OpensslCaFiles {
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, `subjectAltName=DNS:${dnsName}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
  for (const args of [
    ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-subj', `/CN=${dnsName}`, '-out', csr],
    ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', String(process.hrtime.bigint()), '-days', '1', '-extfile', ext, '-out', cert],
  ]) {
    const r = run(args);
    if (!r.ok) throw new Error(`openssl ${args[0]}: ${r.output}`);
  }
  writeFileSync(cert, readFileSync(cert, 'utf8') + readFileSync(ca.cert, 'utf8'));
  return { cert, key };
}
