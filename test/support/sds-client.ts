/**
 * A test SDS client, built like Envoy's from the Envoy proto definitions in proto/envoy: it opens StreamSecrets /
 * DeltaSecrets / FetchSecrets on a Unix socket, queues every response, records which nonces it ACKed and NACKed, and
 * decodes the Secrets inside the Any resources.
 */
import * as grpc from '@grpc/grpc-js';
import { loadProto, unpackAny, type AnyMessage } from '../../src/common/grpc/proto.js';
import { serviceClient } from '../../src/common/grpc/service.js';

export const SECRET_TYPE_NAME = 'envoy.extensions.transport_sockets.tls.v3.Secret';
export const SECRET_TYPE_URL = `type.googleapis.com/${SECRET_TYPE_NAME}`;
export const SPIFFE_VALIDATOR_CONFIG_TYPE_NAME = 'envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig';

export interface DiscoveryResponse {
  version_info?: string;
  resources?: AnyMessage[];
  type_url?: string;
  nonce?: string;
}

export interface DeltaResource {
  name?: string;
  version?: string;
  resource?: AnyMessage;
}

export interface DeltaDiscoveryResponse {
  system_version_info?: string;
  resources?: DeltaResource[];
  type_url?: string;
  nonce?: string;
  removed_resources?: string[];
}

export interface CallStatus {
  code: number;
  details: string;
}

type DataSource = { inline_bytes?: Buffer; inline_string?: string; filename?: string; specifier?: string };

/** A decoded envoy.extensions.transport_sockets.tls.v3.Secret (keepCase, defaults absent). */
export interface DecodedSecret {
  name?: string;
  type?: string;
  tls_certificate?: { certificate_chain?: DataSource; private_key?: DataSource; password?: DataSource };
  validation_context?: {
    trusted_ca?: DataSource;
    custom_validator_config?: { name?: string; typed_config?: AnyMessage };
  };
}

export interface DecodedTrustDomain {
  name: string;
  trustBundlePem: string;
  specifier: string | undefined;
}

const DEFAULT_WAIT_MS = 5000;

/** An SDS client on `unix://<socketPath>` with plain (insecure) credentials, as Envoy connects (SPEC-NOTES §12). */
export function connectSds(socketPath: string): grpc.Client {
  const Client = serviceClient(loadProto('envoy/service/secret/v3/sds.proto'), 'envoy.service.secret.v3.SecretDiscoveryService');
  return new Client(`unix://${socketPath}`, grpc.credentials.createInsecure());
}

/** A queue of messages from a stream, with waiters that time out (so a missing message fails the test, not hangs it). */
class Inbox<T> {
  readonly all: T[] = [];
  private readonly queue: T[] = [];
  private waiters: Array<{ resolve: (m: T) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private ended: Error | undefined;

  push(message: T): void {
    this.all.push(message);
    const waiter = this.waiters.shift();
    if (waiter === undefined) this.queue.push(message);
    else {
      clearTimeout(waiter.timer);
      waiter.resolve(message);
    }
  }

  end(error: Error): void {
    this.ended = error;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(error);
    }
  }

  /** Messages received but not yet taken with next(). */
  get pending(): number {
    return this.queue.length;
  }

  next(timeoutMs: number): Promise<T> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended !== undefined) return Promise.reject(this.ended);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.timer !== timer);
        reject(new Error(`no message within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push({ resolve, reject, timer });
    });
  }
}

/** What both stream clients share: the call, its inbox, its final status, ACK/NACK records. */
abstract class StreamClient<Req, Res> {
  protected readonly call: grpc.ClientDuplexStream<Req, Res>;
  protected readonly inbox = new Inbox<Res>();
  /** Nonces this client ACKed / NACKed, in order. */
  readonly acked: string[] = [];
  readonly nacked: string[] = [];
  /** The call's final status (resolves on OK and on error). */
  readonly status: Promise<CallStatus>;

  constructor(client: grpc.Client, method: 'StreamSecrets' | 'DeltaSecrets', metadata: grpc.Metadata) {
    const fn = (client as unknown as Record<string, (m: grpc.Metadata) => grpc.ClientDuplexStream<Req, Res>>)[method]!;
    this.call = fn.call(client, metadata);
    this.status = new Promise((resolve) => {
      this.call.on('status', (s: grpc.StatusObject) => resolve({ code: s.code, details: s.details }));
    });
    this.call.on('data', (m: Res) => this.inbox.push(m));
    this.call.on('error', (e: Error) => this.inbox.end(e));
    this.call.on('end', () => this.inbox.end(new Error('stream ended')));
  }

  /** Every response received so far, in order. */
  get received(): readonly Res[] {
    return this.inbox.all;
  }

  /** Responses received and not yet taken by next(). */
  get pending(): number {
    return this.inbox.pending;
  }

  send(request: Req): void {
    this.call.write(request);
  }

  next(timeoutMs = DEFAULT_WAIT_MS): Promise<Res> {
    return this.inbox.next(timeoutMs);
  }

  cancel(): void {
    this.call.cancel();
  }

  /** Half-closes the request side, as a client that is done. */
  end(): void {
    this.call.end();
  }
}

/**
 * A node as a current Envoy sends it. An agent (SPIRE's or meshid's) answers it with the SPIFFE certificate validator;
 * a build version below 1.18 here would get `trusted_ca`.
 */
export function envoyNode(id = 'sidecar', extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    cluster: 'test',
    user_agent_name: 'envoy',
    user_agent_build_version: { version: { major_number: 1, minor_number: 31, patch: 2 } },
    ...extra,
  };
}

/** StreamSecrets (SotW) as Envoy drives it: first request with node, then ACK/NACK carrying the full name list. */
export class SotwClient extends StreamClient<Record<string, unknown>, DiscoveryResponse> {
  constructor(client: grpc.Client, metadata = new grpc.Metadata()) {
    super(client, 'StreamSecrets', metadata);
  }

  /** The first request: version and nonce empty, node set (SPEC-NOTES §10). */
  subscribe(resourceNames: string[], node: Record<string, unknown> = envoyNode()): void {
    this.send({ node, resource_names: resourceNames, type_url: SECRET_TYPE_URL, version_info: '', response_nonce: '' });
  }

  /** ACK `response`, optionally changing the subscription at the same time. */
  ack(response: DiscoveryResponse, resourceNames: string[]): void {
    this.acked.push(response.nonce ?? '');
    this.send({ resource_names: resourceNames, type_url: SECRET_TYPE_URL, version_info: response.version_info, response_nonce: response.nonce });
  }

  /** NACK `response` as Envoy does: error_detail with code 13, version_info = the last accepted version. */
  nack(response: DiscoveryResponse, resourceNames: string[], lastAcceptedVersion: string, message = 'rejected by test'): void {
    this.nacked.push(response.nonce ?? '');
    this.send({
      resource_names: resourceNames,
      type_url: SECRET_TYPE_URL,
      version_info: lastAcceptedVersion,
      response_nonce: response.nonce,
      error_detail: { code: 13, message },
    });
  }
}

/** DeltaSecrets (incremental). */
export class DeltaClient extends StreamClient<Record<string, unknown>, DeltaDiscoveryResponse> {
  constructor(client: grpc.Client, metadata = new grpc.Metadata()) {
    super(client, 'DeltaSecrets', metadata);
  }

  request(fields: {
    subscribe?: string[];
    unsubscribe?: string[];
    initialVersions?: Record<string, string>;
    node?: Record<string, unknown>;
    nonce?: string;
    errorMessage?: string;
  }): void {
    const message: Record<string, unknown> = { type_url: SECRET_TYPE_URL };
    if (fields.node) message['node'] = fields.node;
    if (fields.subscribe) message['resource_names_subscribe'] = fields.subscribe;
    if (fields.unsubscribe) message['resource_names_unsubscribe'] = fields.unsubscribe;
    if (fields.initialVersions) message['initial_resource_versions'] = fields.initialVersions;
    if (fields.nonce !== undefined) message['response_nonce'] = fields.nonce;
    if (fields.errorMessage !== undefined) message['error_detail'] = { code: 13, message: fields.errorMessage };
    this.send(message);
  }

  ack(response: DeltaDiscoveryResponse): void {
    this.acked.push(response.nonce ?? '');
    this.request({ nonce: response.nonce ?? '' });
  }

  nack(response: DeltaDiscoveryResponse, message = 'rejected by test'): void {
    this.nacked.push(response.nonce ?? '');
    this.request({ nonce: response.nonce ?? '', errorMessage: message });
  }
}

/** FetchSecrets (unary); rejects with the grpc ServiceError. */
export function fetchSecrets(client: grpc.Client, request: Record<string, unknown>, metadata = new grpc.Metadata()): Promise<DiscoveryResponse> {
  const fn = (client as unknown as Record<string, Function>)['FetchSecrets']!;
  return new Promise((resolve, reject) => {
    fn.call(client, request, metadata, (err: grpc.ServiceError | null, res: DiscoveryResponse) => (err ? reject(err) : resolve(res)));
  });
}

/** Decodes resources of a SotW response, checking each Any's type URL. */
export function decodeSecrets(resources: readonly AnyMessage[] | undefined): DecodedSecret[] {
  return (resources ?? []).map((any) => unpackAny(any, SECRET_TYPE_NAME) as DecodedSecret);
}

/** Decodes a delta response's resources: name, version and the Secret. */
export function decodeDeltaResources(response: DeltaDiscoveryResponse): Array<{ name: string; version: string; secret: DecodedSecret }> {
  return (response.resources ?? []).map((r) => ({
    name: r.name ?? '',
    version: r.version ?? '',
    secret: unpackAny(r.resource ?? { type_url: '', value: Buffer.alloc(0) }, SECRET_TYPE_NAME) as DecodedSecret,
  }));
}

/** Secrets of a response by name. */
export function secretsByName(response: DiscoveryResponse): Map<string, DecodedSecret> {
  return new Map(decodeSecrets(response.resources).map((s) => [s.name ?? '', s]));
}

/** The trust domains of a SPIFFE-validator validation context; throws when the secret uses another form. */
export function spiffeTrustDomains(secret: DecodedSecret): DecodedTrustDomain[] {
  const custom = secret.validation_context?.custom_validator_config;
  if (custom?.typed_config === undefined) throw new Error(`secret ${secret.name} has no custom_validator_config`);
  const config = unpackAny(custom.typed_config, SPIFFE_VALIDATOR_CONFIG_TYPE_NAME) as {
    trust_domains?: Array<{ name?: string; trust_bundle?: DataSource }>;
  };
  return (config.trust_domains ?? []).map((td) => ({
    name: td.name ?? '',
    trustBundlePem: dataSourceText(td.trust_bundle),
    specifier: td.trust_bundle?.specifier,
  }));
}

/** The text of an inline DataSource; throws for file or environment sources (never acceptable in SDS). */
/** The DER of every CERTIFICATE block in `pem`, decoded here rather than by meshid's own PEM code. */
export function pemBlocks(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) =>
    Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'),
  );
}

export function dataSourceText(source: DataSource | undefined): string {
  if (source?.inline_bytes !== undefined) return source.inline_bytes.toString('utf8');
  if (source?.inline_string !== undefined) return source.inline_string;
  throw new Error(`DataSource is not inline: ${JSON.stringify(source)}`);
}
