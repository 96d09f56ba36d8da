import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';

/**
 * node:crypto's generateKeyPairSync for tests, without its Node 20 deadlock: the KeyObjects it returns share a mutex
 * with the generation job, whose destructor takes it when the GC collects the job, while a JWK or DER export holds it
 * and allocates. A GC during such an export hangs the process (bundle.test hung 5 times in 40 under CPU load, until
 * the runner's timeout). src/common/x509/keys.ts generateKeyPair avoids it the same way: the key is encoded inside
 * the job and imported, so nothing returned is tied to the job.
 */
export function jobFreeKeyPair(type: string, options: Record<string, unknown> = {}): { privateKey: KeyObject; publicKey: KeyObject } {
  const generate = generateKeyPairSync as unknown as (t: string, o: Record<string, unknown>) => { privateKey: Buffer };
  const { privateKey: der } = generate(type, {
    ...options,
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'der' },
  });
  const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}
