import type { Clock, TimerHandle } from '../common/clock.js';
import type { Logger } from '../common/log.js';
import { generateKeyPair, exportPkcs8Pem } from '../common/x509/keys.js';
import { chainNamesKeyId, parseCertificate } from '../common/x509/certificate.js';
import { certificatesToPem, pemToDerList } from '../common/x509/pem.js';
import { renewalTime } from '../common/rotation.js';
import type { CaManager } from './ca/ca-manager.js';

export interface ServerIdentity {
  certChainPem: string;
  privateKeyPem: string;
  notAfter: number;
}

/**
 * The server's own SVID (spiffe://<td>/meshid/server) that it presents to agents. Held in memory only — a restart
 * simply mints a new one — and renewed at half-life, with the new one handed to the TLS layer.
 */
export class ServerSvid {
  private current: ServerIdentity | undefined;
  private timer: TimerHandle | undefined;
  private listeners = new Set<(id: ServerIdentity) => void>();
  private unfollow: (() => void) | undefined;

  constructor(
    private readonly ca: CaManager,
    private readonly datacenter: string,
    private readonly ttlMs: number,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {}

  get spiffeId(): string {
    return `spiffe://${this.ca.trustDomain}/meshid/server`;
  }

  identity(): ServerIdentity {
    return this.current ?? this.renew();
  }

  onChange(listener: (id: ServerIdentity) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  renew(): ServerIdentity {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const signed = this.ca.signX509Svid({ datacenter: this.datacenter, publicKey, spiffeId: this.spiffeId, ttlMs: this.ttlMs });
    this.current = { certChainPem: certificatesToPem(signed.chain), privateKeyPem: exportPkcs8Pem(privateKey), notAfter: signed.notAfter };
    this.timer?.cancel();
    const at = renewalTime({ notBefore: this.clock.now(), notAfter: signed.notAfter }, 0);
    this.timer = this.clock.setTimer(() => this.renewOrRetry(), at - this.clock.now());
    this.log.debug({ notAfter: new Date(signed.notAfter).toISOString() }, 'server SVID issued');
    for (const l of this.listeners) l(this.current);
    return this.current;
  }

  /** A renewal from a timer: a failure (no active intermediate, say) is retried every 60 s, never thrown. */
  private renewOrRetry(): void {
    try {
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
   * `ca revoke`: the SVID stays on it until then (or its own half-life), and moves at once when it leaves the bundle.
   * Staying adds nothing for whoever holds the tainted key: agents trust that root for as long as it is published.
   */
  followTaints(): void {
    this.unfollow?.();
    this.unfollow = this.ca.onChange(() => {
      const current = this.current;
      if (current === undefined) return;
      const chain = pemToDerList(current.certChainPem);
      // The root the chain hangs from: the issuer of the datacenter intermediate (under an upstream PKI, the CA it
      // issued, which its anchors publish), among the roots the CA holds.
      const root = chain.length > 1 ? parseCertificate(chain[1]!).authorityKeyId : undefined;
      const roots = root === undefined ? [] : this.ca.listAuthorities().filter((a) => a.kind === 'root' && a.certDer !== undefined);
      if (root !== undefined && !roots.some((r) => parseCertificate(r.certDer!).subjectKeyId === root)) {
        this.log.info('the root the server SVID chains to was revoked; re-issuing it');
        this.renewOrRetry();
        return;
      }
      const tainted = new Set(this.ca.taintedKeyIds());
      if (!chainNamesKeyId(chain, tainted)) return;
      if (root !== undefined && tainted.has(root) && this.ca.activeIntermediate(this.datacenter)?.authorityKeyId !== root) {
        this.log.info('the server SVID chains to a tainted root; kept on it while it is published, so agents that have not stored its replacement yet can still reach the server');
        return;
      }
      this.log.info('the server SVID chains to a tainted authority; re-issuing it');
      this.renewOrRetry();
    });
  }

  stop(): void {
    this.unfollow?.();
    this.unfollow = undefined;
    this.timer?.cancel();
    this.timer = undefined;
  }
}
