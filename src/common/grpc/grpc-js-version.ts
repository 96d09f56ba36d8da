import { createRequire } from 'node:module';

/**
 * The installed @grpc/grpc-js's version, as a refusal to start names it ("version 1.14.7"): meshid reads a few grpc-js
 * internals that a release may rename, and package.json takes any 1.x from 1.14 on, so an install that does not
 * follow package-lock.json can bring one. "version unknown" when its package.json cannot be read (a bundle deployed
 * without node_modules).
 */
export function installedGrpcJsVersion(): string {
  try {
    return `version ${(createRequire(import.meta.url)('@grpc/grpc-js/package.json') as { version: string }).version}`;
  } catch {
    return 'version unknown';
  }
}
