/**
 * A small trust domain for the x509 tests: one root and two datacenter intermediates of a chosen key type, built
 * with meshid's own CA functions. Times are fixed so every test is reproducible; openssl checks use -attime.
 */
import type { KeyObject } from 'node:crypto';
import { createIntermediateCertificate, createRootCertificate } from '../../../src/common/x509/ca-certificates.js';
import { generateKeyPair, type KeyType } from '../../../src/common/x509/keys.js';

export const TD = 'example.org';
export const T0 = Date.UTC(2026, 0, 1);
export const DAY = 86_400_000;

export interface Authority {
  der: Buffer;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface Pki {
  root: Authority;
  east: Authority;
  west: Authority;
}

export async function makeAuthority(
  issuer: Authority,
  datacenter: string,
  keyType: KeyType,
  notBefore = T0,
  notAfter = T0 + 30 * DAY,
): Promise<Authority> {
  const keys = generateKeyPair(keyType);
  const der = await createIntermediateCertificate({
    trustDomain: TD,
    datacenter,
    publicKey: keys.publicKey,
    issuerCertDer: issuer.der,
    issuerPrivateKey: issuer.privateKey,
    notBefore,
    notAfter,
  });
  return { der, ...keys };
}

export async function makeRoot(keyType: KeyType, notAfter = T0 + 365 * DAY): Promise<Authority> {
  const keys = generateKeyPair(keyType);
  const der = await createRootCertificate({ trustDomain: TD, ...keys, notBefore: T0 - 10_000, notAfter });
  return { der, ...keys };
}

export async function makePki(keyType: KeyType): Promise<Pki> {
  const root = await makeRoot(keyType);
  return { root, east: await makeAuthority(root, 'dc-east', keyType), west: await makeAuthority(root, 'dc-west', keyType) };
}
