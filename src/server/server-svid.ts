import fs from 'node:fs';
import path from 'node:path';
import { removeStaleTempFiles, writeFileAtomic } from '../common/atomic-file.js';
import type { Clock, TimerHandle } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { jsonSyntaxProblem } from '../common/json-object.js';
import { generateKeyPair, exportPkcs8Pem, importPrivateKey, keyMatchesCertificate } from '../common/x509/keys.js';
import { parseCertificate } from '../common/x509/certificate.js';
import { chainNamesKeyId, verifyChain } from '../common/x509/chain-verification.js';
import { certificatesToPem, pemToDerList } from '../common/x509/pem.js';
import { latestRenewalTime, renewalTime } from '../common/rotation.js';
import type { CaManager } from './ca/ca-manager.js';

export interface ServerIdentity {
  certChainPem: string;
  privateKeyPem: string;
  notAfter: number;
}

/** What a CA change means for the SVID the server presents. */
type Verdict = 'keep' | 'keep-on-tainted-root' | 'root-revoked' | 'tainted';

/**
 * The server's own SVID (spiffe://<td>/meshid/server) that it presents to agents, renewed at half-life, with the new
 * one handed to the TLS layer.
 *
 * Saved in the data dir (`file`, 0600 in the 0700 dir, next to the CA keys) so that a restart presents the same one
 * while it is still good. Minting a new one at every start would move it to the active root: after a root taint whose
 * bundle push the server did not live to send, agents that never stored the new root could not reach it again.
 */
export class ServerSvid {
  private current: ServerIdentity | undefined;
  private currentNotBefore = 0;
  private timer: TimerHandle | undefined;
  private listeners = new Set<(id: ServerIdentity) => void>();
  private unfollow: (() => void) | undefined;

  constructor(
    private readonly ca: CaManager,
    private readonly datacenter: string,
    private readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly file?: string,
  ) {}

  get spiffeId(): string {
    return `spiffe://${this.ca.trustDomain}/meshid/server`;
  }

  identity(): ServerIdentity {
    return this.current ?? this.restore() ?? this.renew();
  }

  onChange(listener: (id: ServerIdentity) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  renew(): ServerIdentity {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const signed = this.ca.signX509Svid({ datacenter: this.datacenter, publicKey, spiffeId: this.spiffeId, ttlMs: this.ttlMs });
    const issued = { certChainPem: certificatesToPem(signed.chain), privateKeyPem: exportPkcs8Pem(privateKey), notAfter: signed.notAfter };
    this.log.debug({ notAfter: new Date(signed.notAfter).toISOString() }, 'server SVID issued');
    this.save(issued);
    return this.present(issued, this.clock.now());
  }

  private present(id: ServerIdentity, notBefore: number): ServerIdentity {
    this.current = id;
    this.currentNotBefore = notBefore;
    this.renewAt(renewalTime({ notBefore, notAfter: id.notAfter }, 0));
    for (const l of this.listeners) l(id);
    return id;
  }

  private renewAt(at: number): void {
    this.timer?.cancel();
    this.timer = this.clock.setTimer(() => this.renewOrRetry(), Math.max(0, at - this.clock.now()));
  }

  /**
   * At its half-life, an SVID kept on a tainted root (keep-on-tainted-root) waits until 90 % of its life instead of
   * moving to the new root: an agent that was down across the taint has only the tainted root, and a renewal then
   * would strand it (it could not authenticate the server, and a new join token alone would not help) while the
   * README tells operators to wait for it. Staying longer adds nothing for whoever holds the tainted key (followTaints).
   */
  private heldOnTaintedRoot(): boolean {
    const current = this.current;
    if (current === undefined || this.verdict(pemToDerList(current.certChainPem)) !== 'keep-on-tainted-root') return false;
    const latest = latestRenewalTime({ notBefore: this.currentNotBefore, notAfter: current.notAfter });
    if (this.clock.now() >= latest) return false;
    this.log.info({ until: new Date(latest).toISOString() }, 'the server SVID chains to a tainted root that is still published; kept on it for agents that have not stored its replacement');
    this.renewAt(latest);
    return true;
  }

  /**
   * Best effort: a server that cannot save it still runs. The file then keeps the SVID saved before (if any), which
   * the next start presents while restore() still accepts it (valid, not ruled out by a taint or revoke), else a new
   * one is minted.
   */
  private save(id: ServerIdentity): void {
    if (this.file === undefined) return;
    try {
      writeFileAtomic(this.file, JSON.stringify({ chain_pem: id.certChainPem, key_pem: id.privateKeyPem }) + '\n', 0o600);
    } catch (err) {
      this.log.warn({ file: this.file, reason: (err as Error).message }, 'could not save the server SVID; a restart will issue a new one');
    }
  }

  /**
   * The saved SVID, when it is still one this server would present: its own ID and key, valid now and for no longer
   * than today's TTL, issued by an intermediate of this datacenter that chains to the published bundle, and not one a
   * CA change since (a taint, a revoke) has ruled out. Anything else, including a file that cannot be read, is
   * replaced by a new SVID.
   */
  private restore(): ServerIdentity | undefined {
    if (this.file === undefined) return undefined;
    removeStaleTempFiles(path.dirname(this.file), this.file);
    let saved: { chain_pem?: unknown; key_pem?: unknown };
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file: this.file, reason: (err as Error).message }, 'the saved server SVID cannot be read; issuing a new one');
      return undefined;
    }
    try {
      saved = JSON.parse(text) as typeof saved;
    } catch (err) {
      // Not V8's message: it quotes the text around the fault, and this file holds the server's private key.
      this.log.warn({ file: this.file, reason: `not valid JSON: ${jsonSyntaxProblem(err, text)}` }, 'the saved server SVID cannot be read; issuing a new one');
      return undefined;
    }
    const unusable = (why: string): undefined => {
      this.log.info({ file: this.file }, `the saved server SVID ${why}; issuing a new one`);
      return undefined;
    };
    try {
      if (typeof saved.chain_pem !== 'string' || typeof saved.key_pem !== 'string') return unusable('is incomplete');
      const chain = pemToDerList(saved.chain_pem);
      const leaf = parseCertificate(chain[0]!);
      const now = this.clock.now();
      if (leaf.uriSans.length !== 1 || leaf.uriSans[0] !== this.spiffeId) return unusable(`is not ${this.spiffeId}`);
      if (!keyMatchesCertificate(importPrivateKey(saved.key_pem), chain[0]!)) return unusable('has a key that does not match it');
      if (leaf.notAfter - now > this.ttlMs) return unusable('outlives the configured TTL');
      const issuer = chain.length > 1 ? parseCertificate(chain[1]!).subjectKeyId : undefined;
      const ours = this.ca.listAuthorities().some(
        (a) => a.kind === 'intermediate' && a.datacenter === this.datacenter && a.certDer !== undefined && parseCertificate(a.certDer).subjectKeyId === issuer,
      );
      if (!ours) return unusable(`was not issued by an intermediate CA of datacenter "${this.datacenter}"`);
      verifyChain(chain, this.ca.bundle().x509Authorities, now, { requireEndEntity: true });
      const verdict = this.verdict(chain);
      if (verdict === 'root-revoked' || verdict === 'tainted') return unusable(verdict === 'tainted' ? 'chains to a tainted authority' : 'chains to a revoked root');
      this.log.info({ notAfter: new Date(leaf.notAfter).toISOString() }, 'presenting the saved server SVID');
      return this.present({ certChainPem: certificatesToPem(chain), privateKeyPem: saved.key_pem, notAfter: leaf.notAfter }, leaf.notBefore);
    } catch (err) {
      return unusable(`is not valid (${(err as Error).message})`);
    }
  }

  /** A renewal from a timer: a failure (no active intermediate, say) is retried every 60 s, never thrown. */
  private renewOrRetry(): void {
    try {
      if (this.heldOnTaintedRoot()) return;
      this.renew();
    } catch (err) {
      this.log.error({ err }, 'server SVID renewal failed; retrying in 60 s');
      // One retry chain at a time: a taint may call this while a retry is already armed.
      this.timer?.cancel();
      this.timer = this.clock.setTimer(() => this.renewOrRetry(), 60_000);
    }
  }

  /**
   * From now until stop(), re-issues the SVID at once when its chain names an authority that has since been tainted:
   * agents are told to re-sign away from it, and the server's own certificate (agent API, bundle endpoint) must not
   * stay on it until its half-life.
   *
   * Except when the re-issue would move it to another root (the root itself was tainted, and replaced at once): an
   * agent that has not stored the new root yet (one restarting just then) could no longer authenticate the server,
   * and would never hear of the new root. The tainted root stays in the bundle, trusted by every agent, until
   * `ca revoke`: the SVID stays on it until then (or 90 % of its own life), and moves at once when it leaves the bundle.
   * Staying adds nothing for whoever holds the tainted key: agents trust that root for as long as it is published.
   * Under an upstream PKI a tainted upstream-issued CA is not waited for when its replacement ends at a PKI root the
   * tainted one's chains end at too (rootChainsVerifyUnderAnchorsOf).
   */
  followTaints(): void {
    this.unfollow?.();
    this.unfollow = this.ca.onChange(() => {
      const current = this.current;
      if (current === undefined) return;
      switch (this.verdict(pemToDerList(current.certChainPem))) {
        case 'keep':
          return;
        case 'keep-on-tainted-root':
          this.log.info('the server SVID chains to a tainted root; kept on it while it is published, so agents that have not stored its replacement yet can still reach the server');
          return;
        case 'root-revoked':
          this.log.info('the root the server SVID chains to was revoked; re-issuing it');
          break;
        case 'tainted':
          this.log.info('the server SVID chains to a tainted authority; re-issuing it');
      }
      this.renewOrRetry();
    });
  }

  private verdict(chain: readonly Buffer[]): Verdict {
    // The root the chain hangs from: the issuer of the datacenter intermediate (under an upstream PKI, the CA it
    // issued, which its anchors publish), among the roots the CA holds.
    const root = chain.length > 1 ? parseCertificate(chain[1]!).authorityKeyId : undefined;
    const roots = root === undefined ? [] : this.ca.listAuthorities().filter((a) => a.kind === 'root' && a.certDer !== undefined);
    if (root !== undefined && !roots.some((r) => parseCertificate(r.certDer!).subjectKeyId === root)) return 'root-revoked';
    const tainted = new Set(this.ca.taintedKeyIds());
    if (!chainNamesKeyId(chain, tainted)) return 'keep';
    if (root !== undefined && tainted.has(root)) {
      const activeRoot = this.ca.activeIntermediate(this.datacenter)?.authorityKeyId;
      // Under an upstream PKI the replacement may hang from the PKI root every agent already trusts: nothing to wait
      // for then. Not when it ends at another (the PKI rotated its own root): agents may not have that one yet.
      if (activeRoot !== root && (activeRoot === undefined || !this.ca.rootChainsVerifyUnderAnchorsOf(root, activeRoot))) return 'keep-on-tainted-root';
    }
    return 'tainted';
  }

  stop(): void {
    this.unfollow?.();
    this.unfollow = undefined;
    this.timer?.cancel();
    this.timer = undefined;
  }
}
