/**
 * A real grpc-js server on a temporary Unix socket serving sdsHandlers over a FakeSdsCache, with stubbed
 * attestation: the caller's selector comes from the `x-test-selector` metadata header instead of peer credentials.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { BASE_SERVER_OPTIONS } from '../../../src/common/grpc/server-options.js';
import { systemClock } from '../../../src/common/clock.js';
import { silentLogger, type Logger } from '../../../src/common/log.js';
import { parseSelector } from '../../../src/common/spiffe/selector.js';
import { sdsHandlers, sdsServiceDefinition, type SdsHandlerDeps, type SdsService } from '../../../src/agent/sds/handler.js';
import type { SdsOptions } from '../../../src/agent/sds/sds-options.js';
import { FakeSdsCache, TestCa } from '../../support/fake-sds-cache.js';
import { connectSds } from '../../support/sds-client.js';

export const TD = 'example.org';
export const FOREIGN_TD = 'partner.example';
export const APP_A = 'spiffe://example.org/ns/default/sa/frontend';
export const APP_B = 'spiffe://example.org/ns/default/sa/backend';
/** A second identity of workload A. */
export const APP_A2 = 'spiffe://example.org/ns/default/sa/frontend-admin';
export const SELECTOR_A = 'unix:uid:1001';
export const SELECTOR_B = 'unix:uid:1002';
export const UNREGISTERED = 'unix:uid:4242';

/** The most common cache setup: workload A holds APP_A. */
export const registerA = (c: FakeSdsCache): void => c.addEntry(SELECTOR_A, APP_A);

/**
 * A setup where workload A holds APP_A and federates with `domains`, each of whose bundles is ~0.7 MB of roots (1,000
 * copies of `foreign`'s root: size is what counts): for answers over what one response or gRPC message carries.
 */
export function registerAFederatingLarge(foreign: TestCa, domains: string[]): (cache: FakeSdsCache) => void {
  const roots = Array.from({ length: 1000 }, () => foreign.rootDer);
  return (c) => {
    c.addEntry(SELECTOR_A, APP_A, { federatesWith: domains });
    for (const trustDomain of domains) c.setFederatedBundle({ trustDomain, x509Authorities: roots, jwtAuthorities: [], sequence: 1 });
  };
}

export interface SdsHarness {
  cache: FakeSdsCache;
  service: SdsService;
  client: grpc.Client;
  socketPath: string;
  /** Times the stubbed attestation ran. */
  attestCalls: () => number;
  close: () => Promise<void>;
}

/** Metadata that makes stubbed attestation return `selector`. */
export function as(selector: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('x-test-selector', selector);
  return md;
}

/** Starts the server; `setup` registers entries before the first call. The CA is the caller's (shared per file). */
export async function startSdsHarness(
  ca: TestCa,
  setup: (cache: FakeSdsCache) => void = () => {},
  options: SdsOptions = {},
  log: Logger = silentLogger(),
  deps: Pick<SdsHandlerDeps, 'clock' | 'signingWaitMs' | 'nameCharsPerUid'> = {},
): Promise<SdsHarness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-sds-'));
  const socketPath = path.join(dir, 'agent.sock');
  const cache = new FakeSdsCache(ca);
  setup(cache);
  let attestCalls = 0;
  const service = sdsHandlers({
    ...deps,
    cache,
    log,
    options,
    attest: (call) => {
      attestCalls++;
      return call.metadata.get('x-test-selector').map((v) => parseSelector(String(v)));
    },
  });
  // As the agent's endpoint: requests malformed or past their limits end before the handlers (strict-requests.ts).
  const server = new grpc.Server(BASE_SERVER_OPTIONS);
  server.addService(sdsServiceDefinition({ log, clock: deps.clock ?? systemClock }), service.implementation);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  const client = connectSds(socketPath);
  return {
    cache,
    service,
    client,
    socketPath,
    attestCalls: () => attestCalls,
    close: async () => {
      client.close();
      service.close();
      server.forceShutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `predicate` on the event loop (no timers of the code under test are involved) until true, or throws. */
export async function eventually(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A describe block's test CAs, and harnesses over the own one. */
export interface SuiteTrustDomains {
  /** The own trust domain's CA. */
  readonly ca: TestCa;
  /** A federated trust domain's CA. */
  readonly foreign: TestCa;
  /** Runs `body` against a harness over `ca` started for it, closed however the body ends. */
  withHarness(
    setup: (cache: FakeSdsCache) => void,
    body: (h: SdsHarness) => Promise<void>,
    options?: SdsOptions,
    deps?: Pick<SdsHandlerDeps, 'clock' | 'signingWaitMs' | 'nameCharsPerUid'>,
  ): Promise<void>;
}

/**
 * The test CAs of the own trust domain and a federated one for the tests of the enclosing describe block: made
 * before them (each an openssl-made root and intermediate) and disposed after them.
 */
export function trustDomainsForSuite(): SuiteTrustDomains {
  let cas: { ca: TestCa; foreign: TestCa } | undefined;
  before(() => {
    cas = { ca: new TestCa(TD), foreign: new TestCa(FOREIGN_TD) };
  });
  after(() => {
    cas?.ca.dispose();
    cas?.foreign.dispose();
  });
  const made = (): { ca: TestCa; foreign: TestCa } => {
    if (cas === undefined) throw new Error('the suite\'s CAs exist only while its tests run');
    return cas;
  };
  return {
    get ca() {
      return made().ca;
    },
    get foreign() {
      return made().foreign;
    },
    async withHarness(setup, body, options, deps) {
      const h = await startSdsHarness(made().ca, setup, options, silentLogger(), deps);
      try {
        await body(h);
      } finally {
        await h.close();
      }
    },
  };
}
