import { experimental } from '@grpc/grpc-js';

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/**
 * A grpc-js certificate provider fed by meshid itself: the CA bundle and the identity (chain + key) are set whenever
 * they rotate, and grpc-js applies them to new TLS handshakes without restarting the server or channel.
 */
export class MemoryCertificateProvider implements experimental.CertificateProvider {
  private ca: Buffer | null = null;
  private identity: { certificate: Buffer; privateKey: Buffer } | null = null;
  private caListeners = new Set<CaListener>();
  private identityListeners = new Set<IdentityListener>();

  setCa(pem: string): void {
    this.ca = Buffer.from(pem);
    for (const l of this.caListeners) l({ caCertificate: this.ca });
  }

  setIdentity(certChainPem: string, privateKeyPem: string): void {
    this.identity = { certificate: Buffer.from(certChainPem), privateKey: Buffer.from(privateKeyPem) };
    for (const l of this.identityListeners) l(this.identity);
  }

  // grpc-js registers its own watcher only after adding these listeners, so the current value must arrive
  // asynchronously: delivered synchronously it would be lost and every connection refused.
  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      if (this.ca && this.caListeners.has(listener)) listener({ caCertificate: this.ca });
    });
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identity && this.identityListeners.has(listener)) listener(this.identity);
    });
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }
}
