/**
 * A simulated agent for fleet-scale benchmarks: an attested identity of its own (join token, key, SVID) and the real
 * agent's client of the server (NodeClient: the same channel options, mTLS with its own SVID) holding a Sync stream,
 * reconnecting after a failure with the agent's own backoff (client/backoff.ts). It keeps only what a reconnect
 * sends (the entry revisions held, the bundle sequence), not SVIDs or a cache: thousands fit in one process.
 */
import { Backoff } from '../src/agent/client/backoff.js';
import type { SyncUpdateMessage } from '../src/agent/client/messages.js';
import { NodeClient } from '../src/agent/client/node-client.js';
import { silentLogger } from '../src/common/log.js';
import { createCsr } from '../src/common/x509/csr.js';
import { generateKeyPair } from '../src/common/x509/keys.js';
import type { ClientReadableStream } from '@grpc/grpc-js';
import type { KeyObject } from 'node:crypto';

export class SimulatedAgent {
  /** Sync stream opens tried (each a new call; a refused connection fails it at once). */
  attempts = 0;
  /** When the last initial update arrived (performance.now()). */
  syncedAt: number | undefined;
  /** gRPC status code of each failed stream, counted. */
  readonly failures = new Map<number, number>();
  private readonly held = new Map<string, number>();
  private revision = 0;
  private bundleSequence = 0;
  private readonly backoff = new Backoff();
  private stream: ClientReadableStream<SyncUpdateMessage> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private waiters: Array<() => void> = [];

  private readonly client: NodeClient;

  private constructor(
    readonly id: string,
    /** Its SVID and key, and the server's roots: what another client for the same agent needs. */
    private readonly credentials: { chain: Buffer[]; privateKey: KeyObject; roots: readonly Buffer[] },
    serverAddress: string,
    /** Told of every stream open attempt, for the arrival profile. */
    private readonly onAttempt: () => void,
  ) {
    this.client = new NodeClient({ serverAddress, log: silentLogger() });
    this.client.setTrust('example.org', credentials.roots);
    this.client.setIdentity({ chain: credentials.chain, privateKey: credentials.privateKey });
  }

  /**
   * Attests with `token` through `attestAddress` (a relay giving each group of agents a source address of its own,
   * as hosts of a fleet have: the server limits attestations per address) and returns the agent, not yet syncing.
   */
  static async attest(serverAddress: string, attestAddress: string, token: string, roots: readonly Buffer[], onAttempt: () => void): Promise<SimulatedAgent> {
    const { privateKey, publicKey } = generateKeyPair('ec-p256');
    const attester = new NodeClient({ serverAddress: attestAddress, log: silentLogger() });
    attester.setTrust('example.org', roots);
    let res;
    try {
      res = await attester.attest(token, await createCsr(privateKey, publicKey));
    } finally {
      attester.close();
    }
    return new SimulatedAgent(res.spiffe_id ?? '', { chain: res.svid_chain ?? [], privateKey, roots }, serverAddress, onAttempt);
  }

  /** The same agent (SVID, key) as a new client of another server, not yet syncing: for a baseline server. */
  withServer(serverAddress: string): SimulatedAgent {
    return new SimulatedAgent(this.id, this.credentials, serverAddress, () => undefined);
  }

  /** How many entries the agent holds. */
  get entries(): number {
    return this.held.size;
  }

  start(): void {
    this.open();
  }

  /** Resolves at the next initial update (or at once when `since` is before the last one). */
  synced(since = 0): Promise<void> {
    if (this.syncedAt !== undefined && this.syncedAt >= since) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.stream?.cancel();
    this.client.close();
  }

  private open(): void {
    if (this.stopped) return;
    this.attempts++;
    this.onAttempt();
    const stream = this.client.openSync({
      since_revision: this.revision,
      known: [...this.held].map(([id, revision]) => ({ id, revision })),
      bundle_sequence: this.bundleSequence,
    });
    this.stream = stream;
    let done = false;
    const failed = (code: number): void => {
      if (done || this.stopped) return;
      done = true;
      this.failures.set(code, (this.failures.get(code) ?? 0) + 1);
      // What ServerConnection.streamFailed does: the agent's backoff, on the agent's policy.
      this.timer = setTimeout(() => this.open(), this.backoff.next());
    };
    stream.on('data', (u: SyncUpdateMessage) => this.apply(u));
    stream.on('error', (e: { code?: number }) => failed(e.code ?? -1));
    stream.on('end', () => failed(14));
  }

  private apply(u: SyncUpdateMessage): void {
    for (const e of u.entries ?? []) if (e.id) this.held.set(e.id, Number(e.revision ?? 0));
    for (const id of u.removed_entry_ids ?? []) this.held.delete(id);
    if (u.bundle?.sequence !== undefined) this.bundleSequence = Number(u.bundle.sequence);
    if (typeof u.revision === 'number') this.revision = u.revision;
    if (u.initial) {
      this.syncedAt = performance.now();
      this.backoff.reset();
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w();
    }
  }
}
