import type { KeyObject } from 'node:crypto';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { failedPrecondition, invalidArgument, unavailable, type MeshidError } from '../../common/errors.js';
import { fromServiceError, isServiceError } from '../../common/grpc-status.js';
import { closedToCalmDown, connectionFailure, withoutEmptyResolutionNote } from '../../common/grpc/call-failure.js';
import { loadProto } from '../../common/grpc/proto.js';
import { serviceClient } from '../../common/grpc/service.js';
import type { Logger } from '../../common/log.js';
import { exportPkcs8Pem } from '../../common/x509/keys.js';
import { certificatesToPem } from '../../common/x509/pem.js';
import type { SignedJwtSvid } from '../cache/jwt-svid-cache.js';
import type { SignedItem } from '../cache/svid-issuer.js';
import type {
  AttestResponseMessage,
  SignJwtSvidResponseMessage,
  SignX509SvidsResponseMessage,
  SyncRequestMessage,
  SyncUpdateMessage,
} from './messages.js';
import { serverIdentityCheck } from './server-identity.js';
import { rejectionOf, supersededSerial } from './rejection.js';
import { parseCertificate } from '../../common/x509/certificate.js';
import { meshidVersion } from '../../common/meshid-version.js';

/** The agent SPIFFE ID an agent SVID names (its one URI SAN). */
const agentIdOf = (identity: AgentCredentials | undefined): string | undefined =>
  identity === undefined ? undefined : parseCertificate(identity.chain[0]!).uriSans[0];

export const AGENT_API_PROTO = 'meshid/v1/agent.proto';
const NODE_SERVICE = 'meshid.agent.v1.Node';

/** The agent's own SVID as the TLS client identity. */
export interface AgentCredentials {
  readonly chain: readonly Buffer[];
  readonly privateKey: KeyObject;
}

export interface NodeClientOptions {
  /** host:port of meshid-server's agent API. */
  serverAddress: string;
  log: Logger;
  /** Deadline of unary calls; default 30 s. */
  deadlineMs?: number;
  /**
   * The OpenSSL cipher list offered to the server (TLS 1.3 suites by their TLS_ names too); default the environment's
   * GRPC_SSL_CIPHER_SUITES, which grpc-js's own TLS credentials honour and this client's secure context
   * (allowPartialTrustChain) would otherwise drop; unset: Node's default list.
   */
  cipherSuites?: string | undefined;
}

/** The variable grpc-js reads its TLS cipher list from (tls-helpers): one setting for every gRPC client in a process. */
export const CIPHER_SUITES_VARIABLE = 'GRPC_SSL_CIPHER_SUITES';

/**
 * The cipher list, checked now: grpc-js throws on one OpenSSL matches nothing when a channel is made, which here would
 * be the first call to the server, long after the start, with OpenSSL's "No cipher match" for a message.
 */
function checkedCipherSuites(ciphers: string | undefined): string | undefined {
  if (ciphers === undefined || ciphers === '') return undefined;
  try {
    tls.createSecureContext({ ciphers });
  } catch (err) {
    throw invalidArgument(
      `${CIPHER_SUITES_VARIABLE} (${JSON.stringify(ciphers)}) names no cipher suite this OpenSSL supports (${(err as Error).message}): ` +
        'fix it (an OpenSSL cipher list, e.g. "ECDHE-ECDSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384") or unset it',
      err,
    );
  }
  return ciphers;
}

type Unary = (req: unknown, md: grpc.Metadata, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: unknown) => void) => void;
type ServerStream = (req: unknown, md: grpc.Metadata, options?: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;

/** The name the TLS layer sends as SNI and hands to checkServerIdentity, which ignores it: identity is the SPIFFE ID. */
export const TLS_NAME = 'meshid-server';

const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.ssl_target_name_override': TLS_NAME,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  // The agent runs its own backoff; the channel's must not add minutes on top of it after a server restart.
  'grpc.initial_reconnect_backoff_ms': 500,
  'grpc.max_reconnect_backoff_ms': 5_000,
  // A SignX509Svids answer is ~1.4 KB per SVID (350 KB for a batch of 250). With HTTP/2's default 64 KB window the
  // server could send the next 64 KB only after the agent's event loop came round to acknowledge the last, which
  // during a mass rotation (the agent building the next batches) turned one answer into a dozen waits.
  'grpc-node.flow_control_window': 8 * 1024 * 1024,
  // No service config from DNS (a TXT record of the server's name): one published there could add a retry policy or
  // change the deadlines under the agent's own handling of refusals (backoff, retry pushback, budget waits), making
  // it retry what the server asked it not to. The agent's behaviour is its own, not its DNS zone's.
  'grpc.service_config_disable_resolution': 1,
};

/**
 * The agent's client of meshid-server's agent API (meshid.agent.v1.Node) over TLS: the server must present
 * spiffe://<td>/meshid/server chaining to the trust bundle (serverIdentityCheck); the agent presents its SVID as
 * client certificate. When the trust (bundle, trust domain) or the agent SVID changes, the next call uses a new
 * channel with the new credentials — calls already started finish on the old one — and `onCredentialsChange`
 * listeners are told, so a long-lived stream can move over. Failures are MeshidErrors with the server's code and
 * message (fromServiceError).
 */
export class NodeClient {
  private readonly Ctor: grpc.ServiceClientConstructor;
  private readonly log: Logger;
  private readonly deadlineMs: number;
  private readonly ciphers: string | undefined;
  private trustDomain: string | undefined;
  private rootsPem: string | undefined;
  private identity: AgentCredentials | undefined;
  private client: grpc.Client | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly checkServer = serverIdentityCheck(() => this.trustDomain);

  constructor(private readonly options: NodeClientOptions) {
    this.Ctor = serviceClient(loadProto(AGENT_API_PROTO), NODE_SERVICE);
    this.log = options.log;
    this.deadlineMs = options.deadlineMs ?? 30_000;
    this.ciphers = checkedCipherSuites('cipherSuites' in options ? options.cipherSuites : process.env[CIPHER_SUITES_VARIABLE]);
  }

  /** The trust domain whose server identity is expected, and the roots its certificate must chain to. */
  setTrust(trustDomain: string, roots: readonly Buffer[]): void {
    const pem = roots.length > 0 ? certificatesToPem(roots) : undefined;
    if (trustDomain === this.trustDomain && pem === this.rootsPem) return;
    this.trustDomain = trustDomain;
    this.rootsPem = pem;
    this.credentialsChanged();
  }

  /** The agent SVID presented from now on (undefined: none, e.g. before attestation). */
  setIdentity(identity: AgentCredentials | undefined): void {
    if (identity === this.identity) return;
    this.identity = identity;
    this.credentialsChanged();
  }

  onCredentialsChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  /**
   * Node attestation with a join token. `insecure`: the server is not authenticated (insecure bootstrap: there is no
   * trust bundle yet); the caller must treat the answer as trust on first use.
   */
  async attest(joinToken: string, csr: Buffer, options: { insecure?: boolean } = {}): Promise<AttestResponseMessage> {
    const request = { join_token: joinToken, csr, agent_version: meshidVersion() };
    if (!options.insecure) return this.unary<AttestResponseMessage>(this.channel(), 'Attest', request);
    const creds = grpc.credentials.createSsl(null, null, null, { rejectUnauthorized: false });
    const client = new this.Ctor(this.options.serverAddress, creds, CHANNEL_OPTIONS);
    try {
      return await this.unary<AttestResponseMessage>(client, 'Attest', request);
    } finally {
      client.close();
    }
  }

  async renew(csr: Buffer): Promise<Buffer[]> {
    const res = await this.unary<{ svid_chain?: Buffer[] }>(this.channel(), 'Renew', { csr });
    return res.svid_chain ?? [];
  }

  /**
   * Opens the Sync push stream (no deadline: it lives as long as the connection). Each open reports this agent's
   * version, as Attest does: an agent restarted on its stored identity (a new build, during an upgrade) attests no more.
   */
  openSync(request: SyncRequestMessage): grpc.ClientReadableStream<SyncUpdateMessage> {
    const client = this.channel();
    const fn = (client as unknown as Record<string, ServerStream>)['Sync']!;
    return fn.call(client, { ...request, agent_version: meshidVersion() }, new grpc.Metadata()) as grpc.ClientReadableStream<SyncUpdateMessage>;
  }

  async signX509Svids(items: ReadonlyArray<{ entryId: string; csr: Buffer }>): Promise<SignedItem[]> {
    const res = await this.unary<SignX509SvidsResponseMessage>(this.channel(), 'SignX509Svids', {
      items: items.map((i) => ({ entry_id: i.entryId, csr: i.csr })),
    });
    return (res.results ?? []).map((r) => ({ entryId: r.entry_id ?? '', code: r.code ?? 0, message: r.message ?? '', chain: r.svid_chain ?? [] }));
  }

  async signJwtSvid(entryId: string, audience: readonly string[]): Promise<SignedJwtSvid> {
    const res = await this.unary<SignJwtSvidResponseMessage>(this.channel(), 'SignJwtSvid', { entry_id: entryId, audience: [...audience] });
    return { token: res.token ?? '', issuedAt: (res.issued_at ?? 0) * 1000, expiresAt: (res.expires_at ?? 0) * 1000 };
  }

  close(): void {
    this.client?.close();
    this.client = undefined;
    this.listeners.clear();
  }

  private credentialsChanged(): void {
    // Calls already started keep their connection; new calls get a new channel (and so a new TLS handshake).
    this.client?.close();
    this.client = undefined;
    for (const l of [...this.listeners]) {
      try {
        l();
      } catch (err) {
        this.log.error({ err }, 'a credentials-change listener failed');
      }
    }
  }

  private channel(): grpc.Client {
    if (this.client !== undefined) return this.client;
    if (this.trustDomain === undefined || this.rootsPem === undefined) {
      throw failedPrecondition('no trust bundle to authenticate meshid-server with: pass --trust-bundle (or --insecure-bootstrap)');
    }
    // allowPartialTrustChain: every certificate of a SPIFFE bundle is a trust anchor, as go-spiffe and SPIRE take it,
    // self-signed or not; OpenSSL would otherwise insist on reaching a self-signed root, and an agent whose
    // --trust-bundle holds the intermediate an operator's PKI anchors the mesh on could never reach its server.
    const context = tls.createSecureContext({
      ca: this.rootsPem,
      key: this.identity ? exportPkcs8Pem(this.identity.privateKey) : undefined,
      cert: this.identity ? certificatesToPem(this.identity.chain) : undefined,
      allowPartialTrustChain: true,
      ...(this.ciphers !== undefined ? { ciphers: this.ciphers } : {}),
    });
    const creds = grpc.credentials.createFromSecureContext(context, { checkServerIdentity: this.checkServer });
    this.client = new this.Ctor(this.options.serverAddress, creds, CHANNEL_OPTIONS);
    return this.client;
  }

  /**
   * A call that never reached the server says so, naming it: the message travels on to the workload (FetchJWTSVID
   * while the server is down), where grpc-js's own wording would read as if the agent's socket had failed. So does a
   * call whose connection the server closed for one of its connection bounds, which grpc-js words as if this agent
   * had run out of memory; that is a connection lost, retried as any other.
   */
  translate(err: unknown, method: string, sentWith?: AgentCredentials): MeshidError {
    if (!isServiceError(err)) return fromServiceError(err);
    // Not a dropped connection: that call may have reached the server before the connection went.
    if (connectionFailure(err) === 'not-connected') {
      return unavailable(`meshid-agent cannot reach meshid-server at ${this.options.serverAddress} (${method}): ${withoutEmptyResolutionNote(err.details)}`, err);
    }
    if (closedToCalmDown(err)) {
      return unavailable(
        `meshid-server at ${this.options.serverAddress} closed the connection of ${method} (HTTP/2 ENHANCE_YOUR_CALM): it holds as many ` +
          "connections as one of its bounds allows (its log names which; README, 'Limits of the agent API port'); retrying",
        err,
      );
    }
    const translated = fromServiceError(err);
    const sentAs = sentWith === undefined || sentWith === this.identity ? undefined : agentIdOf(sentWith);
    if (sentAs !== undefined && rejectionOf(translated) !== undefined && sentAs !== agentIdOf(this.identity)) {
      // Made as an agent this one has since stopped being (it attested again while the call was out): the refusal is
      // that identity's, and taken for the one held now it would make the agent give up an identity just attested.
      return unavailable(`meshid-server refused ${method}, sent as ${sentAs}, which this agent no longer is (it attested again); a call made now goes as the agent it is`, translated);
    }
    const superseded = supersededSerial(translated);
    if (superseded !== undefined && this.identity !== undefined && superseded !== parseCertificate(this.identity.chain[0]!).serialHex) {
      // Made with an SVID this agent has renewed away from (a call sent before it moved, handled after its first call
      // with the renewed one): the identity it holds now is not the one refused. Retried on the current channel.
      return unavailable(`meshid-server refused ${method}, sent with the agent's previous SVID (serial ${superseded}); retrying with the renewed one`, translated);
    }
    return translated;
  }

  /**
   * Whether `err` (from translate) is a connection the server closed for one of its connection bounds: its GOAWAY came
   * over the TLS channel, so the server was reached and authenticated.
   */
  static closedByServerBound(err: unknown): boolean {
    const cause = err instanceof Error ? err.cause : undefined;
    return isServiceError(cause) && closedToCalmDown(cause);
  }

  private unary<T>(client: grpc.Client, method: string, request: unknown): Promise<T> {
    const fn = (client as unknown as Record<string, Unary>)[method]!;
    // The channel presents the identity held when it was made, which is the one held now.
    const sentWith = this.identity;
    // A transport deadline on the wall clock: it bounds a wedged call, it decides nothing about identities.
    const deadline = new Date(Date.now() + this.deadlineMs);
    return new Promise((resolve, reject) => {
      fn.call(client, request, new grpc.Metadata(), { deadline }, (err, res) => (err ? reject(this.translate(err, method, sentWith)) : resolve(res as T)));
    });
  }
}
