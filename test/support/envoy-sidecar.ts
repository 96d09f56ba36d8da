/**
 * A long-lived StreamSecrets subscriber that behaves like an Envoy sidecar: one stream for its whole life, the first
 * request with a node, then an ACK (same names, the response's version and nonce) for every response. It keeps the
 * latest secret of each name and notes, per response, which subscribed secrets actually changed — the evidence that a
 * push reached only the streams watching what changed (SPEC-NOTES §10: no response unless something changed).
 */
import type * as grpc from '@grpc/grpc-js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { dataSourceText, decodeSecrets, SotwClient, spiffeTrustDomains, type DecodedSecret, type DiscoveryResponse } from './sds-client.js';

/** What one response changed for this sidecar. */
export interface SidecarUpdate {
  response: DiscoveryResponse;
  /** Names whose content differs from what the sidecar held before this response. */
  changed: string[];
}

export class EnvoySidecar extends SotwClient {
  /** The latest secret received under each name. */
  readonly latest = new Map<string, DecodedSecret>();
  readonly updates: SidecarUpdate[] = [];
  /** Protocol faults seen (unexpected names, a response that changed nothing, the stream ending): none expected. */
  readonly faults: string[] = [];
  private closing = false;

  constructor(
    client: grpc.Client,
    readonly names: readonly string[],
    node: Record<string, unknown>,
    private readonly onUpdate: (update: SidecarUpdate) => void = () => undefined,
  ) {
    super(client);
    this.call.on('data', (r: DiscoveryResponse) => this.receive(r));
    this.call.on('error', (e: Error) => {
      if (!this.closing) this.faults.push(`stream failed: ${e.message}`);
    });
    this.call.on('end', () => {
      if (!this.closing) this.faults.push('stream ended');
    });
    this.subscribe([...names], node);
  }

  /** The certificate chain (DER, leaf first) of tls_certificate secret `name`, if received. */
  chain(name: string): Buffer[] | undefined {
    const secret = this.latest.get(name)?.tls_certificate;
    return secret === undefined ? undefined : pemToDerList(dataSourceText(secret.certificate_chain));
  }

  /** The PKCS#8 PEM private key of tls_certificate secret `name`, if received. */
  privateKeyPem(name: string): string | undefined {
    const secret = this.latest.get(name)?.tls_certificate;
    return secret === undefined ? undefined : dataSourceText(secret.private_key);
  }

  /** The roots (DER) of the own trust domain in validation-context secret `name`, if received. */
  roots(name: string): Buffer[] | undefined {
    const secret = this.latest.get(name);
    if (secret?.validation_context === undefined) return undefined;
    const domains = spiffeTrustDomains(secret);
    if (domains.length !== 1) throw new Error(`${name}: expected one trust domain, got ${domains.map((d) => d.name).join(', ')}`);
    return pemToDerList(domains[0]!.trustBundlePem);
  }

  close(): void {
    this.closing = true;
    this.cancel();
  }

  private receive(response: DiscoveryResponse): void {
    const changed: string[] = [];
    for (const secret of decodeSecrets(response.resources)) {
      const name = secret.name ?? '';
      if (!this.names.includes(name)) this.faults.push(`response ${response.nonce} carries unsubscribed secret "${name}"`);
      if (contentOf(this.latest.get(name)) !== contentOf(secret)) changed.push(name);
      this.latest.set(name, secret);
    }
    if (changed.length === 0) this.faults.push(`response ${response.nonce} changes none of the subscribed secrets`);
    const update = { response, changed };
    this.updates.push(update);
    this.ack(response, [...this.names]);
    this.onUpdate(update);
  }
}

/** What identifies a secret's content: certificate chain and key, or the trust bundle. */
function contentOf(secret: DecodedSecret | undefined): string {
  if (secret === undefined) return '';
  if (secret.tls_certificate !== undefined) {
    return `${dataSourceText(secret.tls_certificate.certificate_chain)}|${dataSourceText(secret.tls_certificate.private_key)}`;
  }
  return spiffeTrustDomains(secret).map((d) => `${d.name}=${d.trustBundlePem}`).join('|');
}
