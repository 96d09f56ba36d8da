/**
 * A real grpc-js server on a temporary Unix socket serving workloadApiHandlers (behind the security-header
 * interceptor, as the agent installs it) and the gRPC health service, over a FakeWorkloadCache. Attestation is
 * stubbed: `attest` returns the selectors in `harness.caller` (peer-credential attestation is tested elsewhere), or
 * throws `harness.attestError`. Clients are plain insecure grpc-js clients on unix:///path.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { systemClock, type Clock } from '../../../src/common/clock.js';
import { GrpcHealthService } from '../../../src/common/grpc/health-service.js';
import { loadProto } from '../../../src/common/grpc/proto.js';
import { serviceOf } from '../../../src/common/grpc/service.js';
import { silentLogger } from '../../../src/common/log.js';
import { parseSelector, type Selector } from '../../../src/common/spiffe/selector.js';
import { workloadSecurityHeaderInterceptor } from '../../../src/agent/endpoints/interceptors.js';
import { BASE_INTERCEPTORS, BASE_SERVER_OPTIONS } from '../../../src/common/grpc/server-options.js';
import { workloadApiHandlers, workloadApiServiceDefinition, type WorkloadApiService } from '../../../src/agent/workload/handler.js';
import type { WorkloadApiOptions } from '../../../src/agent/workload/workload-context.js';
import { connectWorkloadApi, type WorkloadApiClient } from '../../../src/agent/cli/workload-client.js';
import { FakeWorkloadCache, TestCa } from '../../support/fake-workload-cache.js';

export const TD = 'example.org';
export const FOREIGN_TD = 'partner.example';
export const APP_A = 'spiffe://example.org/ns/default/sa/frontend';
export const APP_B = 'spiffe://example.org/ns/default/sa/backend';
export const SELECTOR_A = 'unix:uid:1001';
export const SELECTOR_B = 'unix:uid:1002';

export interface HarnessOptions {
  clock?: Clock;
  options?: WorkloadApiOptions;
  /** Install the security-header interceptor (default true); false shows the handler's own safety net. */
  interceptor?: boolean;
  /** The stubbed caller's selectors; default [SELECTOR_A]. */
  caller?: string[];
  /** The stubbed attestation answers with a promise (settled a turn later) instead of synchronously. */
  asyncAttest?: boolean;
  /** The stubbed attestation answers once this promise settles (a slow attestation). */
  attestHeld?: () => Promise<void>;
}

export interface WorkloadHarness {
  cache: FakeWorkloadCache;
  service: WorkloadApiService;
  socketPath: string;
  /** A client with the security header, as a workload would use. */
  client: WorkloadApiClient;
  /** What the stubbed attestation returns. */
  caller: Selector[];
  attestError: Error | undefined;
  attestCalls: () => number;
  /** A raw grpc-js SpiffeWorkloadAPI client (no header added), for header tests. */
  rawClient: () => grpc.Client;
  close: () => Promise<void>;
}

export async function startWorkloadHarness(ca: TestCa, setup: (cache: FakeWorkloadCache) => void = () => {}, o: HarnessOptions = {}): Promise<WorkloadHarness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-wl-'));
  const socketPath = path.join(dir, 'api.sock');
  const clock = o.clock ?? systemClock;
  const cache = new FakeWorkloadCache(ca, () => clock.now());
  setup(cache);
  let attestCalls = 0;
  const raws: grpc.Client[] = [];
  const harness = {
    caller: (o.caller ?? [SELECTOR_A]).map(parseSelector),
    attestError: undefined as Error | undefined,
  } as WorkloadHarness;
  const service = workloadApiHandlers({
    cache,
    log: silentLogger(),
    clock,
    options: o.options ?? {},
    attest: () => {
      attestCalls++;
      const error = harness.attestError;
      const caller = harness.caller;
      if (o.attestHeld !== undefined) return o.attestHeld().then(() => (error !== undefined ? Promise.reject(error) : caller));
      if (o.asyncAttest === true) {
        return new Promise((resolve, reject) => setImmediate(() => (error !== undefined ? reject(error) : resolve(caller))));
      }
      if (error !== undefined) throw error;
      return caller;
    },
  });
  // As the agent's endpoint: requests malformed or past their limits end before the handlers (strict-requests.ts).
  const server = new grpc.Server(
    o.interceptor === false ? BASE_SERVER_OPTIONS : { ...BASE_SERVER_OPTIONS, interceptors: [...BASE_INTERCEPTORS, workloadSecurityHeaderInterceptor] },
  );
  server.addService(workloadApiServiceDefinition(), service.implementation);
  server.addService(serviceOf(loadProto('grpc/health/v1/health.proto'), 'grpc.health.v1.Health'), new GrpcHealthService({ services: ['SpiffeWorkloadAPI'], serving: () => cache.ready(), clock, daemon: 'meshid-agent' }).implementation);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  const client = connectWorkloadApi(socketPath);
  Object.assign(harness, {
    cache,
    service,
    socketPath,
    client,
    attestCalls: () => attestCalls,
    rawClient: () => {
      const Ctor = grpc.makeGenericClientConstructor(workloadApiServiceDefinition(), 'SpiffeWorkloadAPI');
      const raw = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure());
      raws.push(raw);
      return raw;
    },
    close: async () => {
      client.close();
      for (const raw of raws) raw.close();
      service.close();
      server.forceShutdown();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  });
  return harness;
}

/** Polls `predicate` on the event loop (no timers of the code under test are involved) until true, or throws. */
export async function eventually(predicate: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Rejects after `ms` with a message naming `what`: a bound for awaits that must not hang a test. */
export function within<T>(promise: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
