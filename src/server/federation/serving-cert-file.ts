import fs from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Clock, TimerHandle } from '../../common/clock.js';
import { invalidArgument } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import { exportPkcs8Pem, importPrivateKey, keyMatchesCertificate } from '../../common/x509/keys.js';
import { certificatesToPem, pemToDerList } from '../../common/x509/pem.js';
import { readProblem } from '../../common/cli/input.js';

/** What a TLS server presents: a certificate chain, leaf first, and the leaf's key (PEM). */
export interface ServingCert {
  certChainPem: string;
  privateKeyPem: string;
  notAfter: number;
}

export interface ServingCertFiles {
  certFile: string;
  keyFile: string;
  /** How often the files are checked for a change (SPIRE's file_sync_interval). */
  syncIntervalMs: number;
}

/**
 * The bundle endpoint's certificate for the https_web profile: a web PKI certificate and key the operator keeps in
 * two PEM files (SPIRE's `serving_cert_file`), renewed by something else — certbot, cert-manager. The files are
 * checked every sync interval and a changed pair is presented from the next handshake on, without a restart. A pair
 * that does not load (half-written, key and certificate from different renewals) is logged and the last good one
 * kept; at start it is an error, so a typo never starts an endpoint nobody can reach.
 */
export class ServingCertFile {
  private current: ServingCert;
  private stamp: string;
  private timer: TimerHandle | undefined;
  private readonly listeners = new Set<(cert: ServingCert) => void>();
  private failing = false;

  private constructor(
    private readonly files: ServingCertFiles,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    // Stamped before loading, so a change made in between is seen at the next sync; loading reports a missing file.
    this.stamp = safeStamp(files);
    this.current = loadServingCert(files);
  }

  /** Loads the pair (MeshidError(invalid_argument) naming the file and what is wrong) and starts watching it. */
  static start(files: ServingCertFiles, clock: Clock, log: Logger): ServingCertFile {
    const cert = new ServingCertFile(files, clock, log);
    if (cert.current.notAfter <= clock.now()) {
      log.warn({ certFile: files.certFile, notAfter: new Date(cert.current.notAfter).toISOString() }, 'the bundle endpoint certificate has expired; peers will refuse it until it is renewed');
    }
    cert.arm();
    return cert;
  }

  cert(): ServingCert {
    return this.current;
  }

  onChange(listener: (cert: ServingCert) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private arm(): void {
    this.timer = this.clock.setTimer(() => {
      this.sync();
      if (this.timer !== undefined) this.arm();
    }, this.files.syncIntervalMs);
  }

  /** Reloads when either file's identity, size or mtime moved since the last good load. */
  private sync(): void {
    let stamp: string;
    let next: ServingCert;
    try {
      stamp = fileStamp(this.files);
      if (stamp === this.stamp) return;
      next = loadServingCert(this.files);
    } catch (err) {
      // Logged once per failing spell, not every interval; the old pair keeps being served meanwhile.
      if (!this.failing) this.log.error({ err, certFile: this.files.certFile, keyFile: this.files.keyFile }, 'the bundle endpoint certificate files do not load; still serving the previous certificate');
      this.failing = true;
      return;
    }
    this.failing = false;
    this.stamp = stamp;
    this.current = next;
    this.log.info({ certFile: this.files.certFile, notAfter: new Date(next.notAfter).toISOString() }, 'bundle endpoint certificate reloaded');
    for (const listener of this.listeners) listener(next);
  }
}

function safeStamp(files: ServingCertFiles): string {
  try {
    return fileStamp(files);
  } catch {
    return '';
  }
}

function fileStamp(files: ServingCertFiles): string {
  return [files.certFile, files.keyFile]
    .map((file) => {
      const s = fs.statSync(file);
      return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
    })
    .join('|');
}

/** Reads and checks the pair: a certificate chain, leaf first, and the leaf's private key. */
export function loadServingCert(files: Pick<ServingCertFiles, 'certFile' | 'keyFile'>): ServingCert {
  const read = (file: string, what: string): string => {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw invalidArgument(`cannot read the bundle endpoint ${what} ${file}: ${readProblem(err)}`, err);
    }
  };
  const certText = read(files.certFile, 'certificate');
  const keyText = read(files.keyFile, 'key');
  let chain: Buffer[];
  let notAfter: number;
  try {
    chain = pemToDerList(certText);
    notAfter = parseCertificate(chain[0]!).notAfter;
  } catch (err) {
    throw invalidArgument(`the bundle endpoint certificate ${files.certFile} does not parse: ${(err as Error).message}`, err);
  }
  let key;
  try {
    key = importPrivateKey(keyText);
  } catch (err) {
    throw invalidArgument(`the bundle endpoint key ${files.keyFile} does not parse: ${(err as Error).message}`, err);
  }
  if (!keyMatchesCertificate(key, chain[0]!)) {
    throw invalidArgument(`the bundle endpoint key ${files.keyFile} is not the key of the first certificate in ${files.certFile}`);
  }
  const served = { certChainPem: certificatesToPem(chain), privateKeyPem: exportPkcs8Pem(key), notAfter };
  try {
    // What OpenSSL itself refuses (an RSA-512 key at the default security level) must not reach a live server.
    createSecureContext({ cert: served.certChainPem, key: served.privateKeyPem });
  } catch (err) {
    throw invalidArgument(`TLS refuses the bundle endpoint certificate ${files.certFile} and key ${files.keyFile}: ${(err as Error).message}`, err);
  }
  return served;
}
