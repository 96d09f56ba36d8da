/**
 * A seeded, randomized protocol test of the agent's Envoy SDS v3 server against the xDS rules (SPEC-NOTES §10–§12):
 * a real meshid-server and meshid-agent process, and clients that behave as Envoys do — and as they legitimately
 * might under load or across reconnects — on StreamSecrets and DeltaSecrets streams (several per connection) and
 * FetchSecrets, while the operator changes entries and the federated bundle. A small model checks every response
 * as it arrives and, after every step, that every stream converged to what FetchSecrets says is current.
 *
 * MESHID_SDS_MODEL_SEED=<n> replays one seed; MESHID_SDS_MODEL_RUNS=<n> runs n random seeds (locally, for many more
 * than the suite's fixed ones); MESHID_SDS_MODEL_LOG=1 prints every run's step log. A failure names the seed and
 * prints the step log. Replays repeat the steps; response timing, and so some interleavings, may differ.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { unpackAny, type AnyMessage } from '../../src/common/grpc/proto.js';
import { Cluster, startCluster, type AgentProcess } from '../support/cluster.js';
import { opensslCa } from '../support/openssl.js';
import { connectSds, envoyNode, fetchSecrets, SECRET_TYPE_NAME, SECRET_TYPE_URL, type DeltaDiscoveryResponse, type DiscoveryResponse } from '../support/sds-client.js';
import { seededRandom } from '../support/seeded-random.js';

const A = 'spiffe://example.org/model/a';
const B = 'spiffe://example.org/model/b';
const PARTNER_TD = 'partner.example';
const PARTNER = `spiffe://${PARTNER_TD}`;
/** Names a random client picks from: aliases, SVIDs, trust domains, and names that never resolve. */
const NAME_POOL = ['default', 'ROOTCA', 'ALL', A, B, 'spiffe://example.org', PARTNER, 'spiffe://example.org/model/nobody', 'no-such-secret'];
/** The explicit wildcard (SPEC-NOTES §10, §11): every name that resolves for the caller. */
const WILDCARD = '*';
const STEPS_PER_SEED = 30;
const FIXED_SEEDS = [1, 2, 3];
/** How long a stream may take to reflect a change before the run fails (a bound, not a measurement). */
const CONVERGENCE_LIMIT_MS = 15_000;

let cluster: Cluster;
let agent: AgentProcess;
let entryA = '';
let entryB = '';
let partnerRoots: string[] = [];

before(async () => {
  cluster = await startCluster('meshid-sds-model-');
  partnerRoots = [opensslCa(cluster.dir, 'Partner Root 1'), opensslCa(cluster.dir, 'Partner Root 2')].map((ca) => fs.readFileSync(ca.cert, 'utf8'));
  await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: PARTNER_TD, bundle: partnerRoots[0] });
  const uid = `unix:uid:${process.getuid!()}`;
  entryA = await cluster.createEntry({ spiffeId: A, selectors: [uid], federatesWith: [PARTNER_TD] });
  entryB = await cluster.createEntry({ spiffeId: B, selectors: [uid] });
  agent = await cluster.startAgent({ joinToken: await cluster.token() });
});

after(async () => {
  await cluster?.cleanup();
});

class Rng {
  constructor(readonly next: () => number) {}
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  subset(items: readonly string[], min = 1): string[] {
    const out = items.filter(() => this.chance(0.35));
    while (out.length < min) {
      const n = this.pick(items);
      if (!out.includes(n)) out.push(n);
    }
    if (items === NAME_POOL && this.chance(0.08)) out.push(WILDCARD);
    return out;
  }
}

/** A Secret's decoded content as a comparable string; without its name when `withName` is false. */
function secretKey(any: AnyMessage, withName = true): { name: string; key: string } {
  const secret = unpackAny(any, SECRET_TYPE_NAME) as Record<string, unknown> & { name?: string };
  const { name, ...rest } = secret;
  const json = JSON.stringify(withName ? secret : rest, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? Buffer.from((v as { data: number[] }).data).toString('base64') : v,
  );
  return { name: name ?? '', key: createHash('sha256').update(json).digest('hex').slice(0, 16) };
}

/** What the agent currently serves, as FetchSecrets with the wildcard tells it: name → content key. */
async function currentTruth(client: grpc.Client): Promise<Map<string, string>> {
  const r = await fetchSecrets(client, { node: envoyNode('model-truth'), resource_names: [], type_url: SECRET_TYPE_URL });
  return new Map((r.resources ?? []).map((any) => {
    const { name, key } = secretKey(any);
    return [name, key];
  }));
}


/** State shared by every stream of one run: the log, and version ↔ content consistency across streams. */
class Run {
  readonly log: string[] = [];
  readonly violations: string[] = [];
  private readonly sotwVersions = new Map<string, string>();
  private readonly sotwContents = new Map<string, string>();
  private readonly deltaVersions = new Map<string, string>();
  private readonly deltaContents = new Map<string, string>();

  note(line: string): void {
    this.log.push(line);
  }

  violate(line: string): void {
    this.violations.push(line);
    this.log.push(`VIOLATION ${line}`);
  }

  /** SotW version_info changes iff the content changed: the same version never names two contents, and back. */
  sotwVersion(stream: string, version: string, content: string): void {
    const seen = this.sotwVersions.get(version);
    if (seen !== undefined && seen !== content) this.violate(`${stream}: version_info ${version} names two different contents`);
    this.sotwVersions.set(version, content);
    const had = this.sotwContents.get(content);
    if (had !== undefined && had !== version) this.violate(`${stream}: one content came with versions ${had} and ${version}`);
    this.sotwContents.set(content, version);
  }

  /** Delta per-resource versions: content-derived, so equal across streams and names for equal content. */
  deltaVersion(stream: string, version: string, content: string): void {
    const seen = this.deltaVersions.get(version);
    if (seen !== undefined && seen !== content) this.violate(`${stream}: resource version ${version} names two different secrets`);
    this.deltaVersions.set(version, content);
    const had = this.deltaContents.get(content);
    if (had !== undefined && had !== version) this.violate(`${stream}: one secret came with versions ${had} and ${version}`);
    this.deltaContents.set(content, version);
  }
}

type Ended = { code: number; details: string } | undefined;

/** What both modelled streams share: the call, nonce uniqueness, what the server believes the client holds. */
abstract class ModelStream<Res> {
  protected readonly call: grpc.ClientDuplexStream<Record<string, unknown>, Res>;
  protected readonly nonces = new Set<string>();
  /** name → content key of what the server last sent (ACKed or NACKed): what it believes the client holds. */
  received = new Map<string, string>();
  /**
   * Resends the client asked for and has not had: one per (re)subscription of a name. A response may carry a name
   * with the content the client holds only against one of these (xds_protocol: a newly subscribed name is sent even
   * if the server believes the client has it); otherwise only when the content changed.
   */
  protected owed = new Map<string, number>();
  /** Names any request since the last response subscribed: a response may carry only these. */
  protected allowed = new Set<string>();
  responses = 0;
  ended: Ended;
  cancelled = false;

  constructor(
    readonly id: string,
    readonly connection: number,
    client: grpc.Client,
    method: 'StreamSecrets' | 'DeltaSecrets',
    protected readonly run: Run,
    protected readonly rng: Rng,
  ) {
    this.call = (client as unknown as Record<string, () => grpc.ClientDuplexStream<Record<string, unknown>, Res>>)[method]!.call(client);
    this.call.on('data', (response: Res) => {
      this.responses++;
      try {
        this.onResponse(response);
      } catch (error) {
        this.run.violate(`${this.id}: ${(error as Error).message}`);
      }
    });
    this.call.on('status', (s: grpc.StatusObject) => {
      this.ended = { code: s.code, details: s.details };
      if (!this.cancelled) this.run.violate(`${this.id}: stream ended with ${grpc.status[s.code]}: ${s.details}`);
    });
    this.call.on('error', () => undefined);
  }

  protected abstract onResponse(response: Res): void;

  /**
   * A SotW secret that stopped resolving and came back may be sent again even with the content the client kept
   * (meshid forgets a name that stops resolving; Envoy's SotW SDS keeps a secret missing from a response): the
   * model lets it, once it saw the name gone from the current state.
   */
  observe(truth: ReadonlyMap<string, string>): void {
    if (this instanceof SotwModel) for (const name of this.watchedNames()) if (!truth.has(name)) this.owe(name, false);
  }

  /** Records one more resend owed for `name` (or at least one, when `add` is false). */
  protected owe(name: string, add = true): void {
    const n = this.owed.get(name) ?? 0;
    this.owed.set(name, add ? n + 1 : Math.max(n, 1));
  }

  /** Whether a resource in a response is news to the client; takes one owed resend if it is one. */
  protected justified(name: string, key: string): boolean {
    const owed = this.owed.get(name) ?? 0;
    if (owed > 0) this.owed.set(name, owed - 1);
    return owed > 0 || this.received.get(name) !== key;
  }

  /** Names that must match the current state once the stream converged. */
  abstract watchedNames(): readonly string[];

  /** Why the stream is not (yet) in the current state, or undefined. */
  abstract lag(truth: ReadonlyMap<string, string>): string | undefined;

  protected checkNonce(nonce: string | undefined): string {
    if (nonce === undefined || nonce === '') throw new Error('a streaming response without a nonce');
    if (this.nonces.has(nonce)) throw new Error(`nonce ${nonce} sent twice on one stream`);
    this.nonces.add(nonce);
    return nonce;
  }

  protected send(request: Record<string, unknown>): void {
    this.call.write({ type_url: SECRET_TYPE_URL, ...request });
  }

  cancel(): void {
    this.cancelled = true;
    this.call.cancel();
  }
}

/** A StreamSecrets client: ACKs or NACKs every response at once, carrying its full name list, as Envoy does. */
class SotwModel extends ModelStream<DiscoveryResponse> {
  names: string[];
  latestNonce = '';
  /** Every nonce received, oldest first: stale ones for requests that race a response. */
  readonly nonceHistory: string[] = [];
  acceptedVersion: string;
  lastVersion = '';
  private nackedLast = false;

  constructor(id: string, connection: number, client: grpc.Client, run: Run, rng: Rng, names: string[], resume?: { version: string; received: Map<string, string> }) {
    super(id, connection, client, 'StreamSecrets', run, rng);
    this.names = names;
    this.acceptedVersion = resume?.version ?? '';
    if (resume !== undefined) this.received = new Map([...resume.received].filter(([name]) => names.includes(WILDCARD) || names.includes(name)));
    this.oweAll(names);
    this.allowed = new Set(names);
    // A reconnect resumes with the last accepted version and no nonce (xds_protocol); the node only on the first.
    this.send({ node: envoyNode(id), resource_names: names, version_info: this.acceptedVersion, response_nonce: '' });
  }

  protected onResponse(response: DiscoveryResponse): void {
    const nonce = this.checkNonce(response.nonce);
    this.nonceHistory.push(nonce);
    this.latestNonce = nonce;
    if (response.type_url !== SECRET_TYPE_URL) throw new Error(`response type_url ${response.type_url}`);
    const version = response.version_info ?? '';
    if (version === '') throw new Error('a streaming response without version_info');
    const got = new Map<string, string>();
    for (const any of response.resources ?? []) {
      if (any.type_url !== SECRET_TYPE_URL) throw new Error(`resource type_url ${any.type_url}`);
      const { name, key } = secretKey(any);
      if (got.has(name)) throw new Error(`${name} twice in one response`);
      if (!this.allowed.has(name) && !this.allowed.has(WILDCARD)) throw new Error(`${name} sent, never requested (requested: ${[...this.allowed].join(' ')})`);
      got.set(name, key);
    }
    this.run.sotwVersion(this.id, version, JSON.stringify([...got].sort()));
    // Only send updates when something changed: a name (re)subscribed since it was last sent, new content, or a
    // withdrawal (a watched name the client holds left out: each response carries every subscribed secret that
    // resolves, so it stands for the whole state of the names it watches).
    const news = [...got].filter(([name, key]) => this.justified(name, key));
    const withdrawn = [...this.received.keys()].filter((name) => this.watches(name) && !got.has(name));
    // A new stream that resumed with a version other than this one: the client's state is news to it, even empty.
    const resumedStale = this.responses === 1 && this.acceptedVersion !== '' && version !== this.acceptedVersion;
    if (news.length === 0 && withdrawn.length === 0 && !resumedStale) {
      throw new Error(`response ${nonce} (version ${version}) repeats what the client holds: ${[...got.keys()].join(' ')}`);
    }
    for (const name of withdrawn) this.received.delete(name);
    for (const [name, key] of got) this.received.set(name, key);
    this.lastVersion = version;
    this.allowed = new Set(this.names);
    const nack = this.rng.chance(this.nackedLast ? 0.1 : 0.2);
    this.nackedLast = nack;
    // Sometimes a listener change rides on the ACK or NACK: the server must honour it either way (SPEC-NOTES §10).
    if (this.rng.chance(0.15)) this.applyNames(this.rng.subset(NAME_POOL));
    this.run.note(`${this.id} <- ${nonce} v=${version.slice(0, 8)} [${[...got.keys()].join(' ')}] ${nack ? 'NACK' : 'ACK'} [${this.names.join(' ')}]`);
    if (nack) {
      this.send({ resource_names: this.names, version_info: this.acceptedVersion, response_nonce: nonce, error_detail: { code: 13, message: 'model NACK' } });
    } else {
      this.acceptedVersion = version;
      this.send({ resource_names: this.names, version_info: version, response_nonce: nonce });
    }
  }

  /** A subscription change with the latest nonce (what Envoy sends when a listener adds or drops a secret). */
  resubscribe(names: string[]): void {
    this.applyNames(names);
    this.send({ resource_names: names, version_info: this.acceptedVersion, response_nonce: this.latestNonce });
  }

  /**
   * The same change, but as a request that crossed a response on the wire: it carries an older (or no) nonce, and
   * the client then answers the response it had not seen with its current names.
   */
  resubscribeStale(names: string[], staleNonce: string): void {
    this.applyNames(names);
    this.send({ resource_names: names, version_info: this.acceptedVersion, response_nonce: staleNonce });
    this.send({ resource_names: names, version_info: this.acceptedVersion, response_nonce: this.latestNonce });
  }

  private oweAll(names: readonly string[]): void {
    for (const n of new Set(names.includes(WILDCARD) ? [...names, ...NAME_POOL] : names)) this.owe(n);
  }

  private applyNames(names: string[]): void {
    const changed = names.length !== this.names.length || names.some((n) => !this.names.includes(n));
    // Any name of a changed list may count as newly requested: the client cannot know which of its earlier lists the
    // server applied and which it dropped as stale, nor, under `*`, which names the wildcard had brought.
    if (changed) this.oweAll(names);
    for (const n of names) this.allowed.add(n);
    this.names = names;
    // A secret the client stops watching is dropped (Envoy removes the watch), so it holds nothing of it any more.
    for (const name of [...this.received.keys()]) if (!this.watches(name)) this.received.delete(name);
  }

  watchedNames(): readonly string[] {
    return this.names;
  }

  private watches(name: string): boolean {
    return this.names.includes(WILDCARD) || this.names.includes(name);
  }

  lag(truth: ReadonlyMap<string, string>): string | undefined {
    for (const name of this.names.includes(WILDCARD) ? [...this.names, ...truth.keys()] : this.names) {
      const want = truth.get(name);
      if (want !== undefined && this.received.get(name) !== want) return `${name} is ${this.received.get(name) ?? 'missing'}, current ${want}`;
    }
    for (const name of this.received.keys()) if (this.watches(name) && !truth.has(name)) return `${name} is withdrawn but still held`;
    return undefined;
  }
}

/** A DeltaSecrets client: ACKs or NACKs each response at once; subscription changes with whatever nonce it has. */
class DeltaModel extends ModelStream<DeltaDiscoveryResponse> {
  subscribed: Set<string>;
  /** name → resource version the server sent last (what initial_resource_versions declares on a reconnect). */
  versions = new Map<string, string>();
  readonly nonceHistory: string[] = [];
  private nackedLast = false;

  constructor(
    id: string, connection: number, client: grpc.Client, run: Run, rng: Rng, names: string[],
    resume?: { versions: Map<string, string>; received: Map<string, string> },
  ) {
    super(id, connection, client, 'DeltaSecrets', run, rng);
    this.subscribed = new Set(names);
    this.allowed = new Set(names);
    const initial: Record<string, string> = {};
    if (resume !== undefined) {
      for (const [name, version] of resume.versions) {
        if (!this.subscribed.has(name) && !this.subscribed.has(WILDCARD)) continue;
        initial[name] = version;
        this.versions.set(name, version);
        // Declared with its version: the server may skip it.
        this.received.set(name, resume.received.get(name)!);
      }
    }
    for (const name of names) if (initial[name] === undefined) this.owe(name);
    this.send({ node: envoyNode(id), resource_names_subscribe: names, initial_resource_versions: initial });
  }

  protected onResponse(response: DeltaDiscoveryResponse): void {
    const nonce = this.checkNonce(response.nonce);
    this.nonceHistory.push(nonce);
    if (response.type_url !== SECRET_TYPE_URL) throw new Error(`response type_url ${response.type_url}`);
    const names = new Set<string>();
    const updates: Array<[string, string, string]> = [];
    for (const r of response.resources ?? []) {
      const name = r.name ?? '';
      if (names.has(name)) throw new Error(`${name} twice in one response`);
      names.add(name);
      if (r.resource?.type_url !== SECRET_TYPE_URL) throw new Error(`resource type_url ${r.resource?.type_url}`);
      const { name: secretName, key } = secretKey(r.resource);
      if (secretName !== name) throw new Error(`Resource.name ${name} holds Secret ${secretName}`);
      if (!this.allowed.has(name) && !this.allowed.has(WILDCARD)) throw new Error(`${name} sent, not subscribed (subscribed: ${[...this.allowed].join(' ')})`);
      const version = r.version ?? '';
      if (version === '') throw new Error(`${name} without a version`);
      this.run.deltaVersion(this.id, version, secretKey(r.resource, false).key);
      if (!this.justified(name, key)) throw new Error(`${name} resent unchanged (version ${version})`);
      updates.push([name, version, key]);
    }
    for (const name of response.removed_resources ?? []) {
      if (names.has(name)) throw new Error(`${name} both sent and removed`);
      if (!this.received.has(name)) throw new Error(`${name} removed, but the client never held it`);
    }
    if (updates.length === 0 && (response.removed_resources ?? []).length === 0) throw new Error(`empty response ${nonce}`);
    for (const [name, version, key] of updates) {
      this.received.set(name, key);
      this.versions.set(name, version);
    }
    for (const name of response.removed_resources ?? []) {
      this.received.delete(name);
      this.versions.delete(name);
    }
    this.allowed = new Set(this.subscribed);
    const nack = this.rng.chance(this.nackedLast ? 0.1 : 0.2);
    this.nackedLast = nack;
    this.run.note(`${this.id} <- ${nonce} [${updates.map((u) => u[0]).join(' ')}] removed [${(response.removed_resources ?? []).join(' ')}] ${nack ? 'NACK' : 'ACK'}`);
    this.send(nack ? { response_nonce: nonce, error_detail: { code: 13, message: 'model NACK' } } : { response_nonce: nonce });
  }

  /** Subscription changes carrying the latest nonce, an older one, or none: the server honours them all (§11). */
  change(subscribe: string[], unsubscribe: string[], nonce: string | undefined): void {
    for (const n of subscribe) {
      this.subscribed.add(n);
      this.allowed.add(n);
      // Subscribing again asks for it again.
      this.owe(n);
    }
    for (const n of unsubscribe) {
      this.subscribed.delete(n);
      // Envoy drops what it held for a name it unsubscribed (for `*`: what it held through the wildcard alone).
      const dropped = n === WILDCARD ? [...this.received.keys()].filter((name) => !this.subscribed.has(name)) : [n];
      for (const name of dropped) {
        this.received.delete(name);
        this.versions.delete(name);
        this.owed.delete(name);
      }
    }
    const request: Record<string, unknown> = { resource_names_subscribe: subscribe, resource_names_unsubscribe: unsubscribe };
    if (nonce !== undefined) request['response_nonce'] = nonce;
    this.send(request);
  }

  watchedNames(): readonly string[] {
    return [...this.subscribed];
  }

  lag(truth: ReadonlyMap<string, string>): string | undefined {
    const wildcard = this.subscribed.has(WILDCARD);
    const watched = wildcard ? new Set([...this.subscribed, ...truth.keys(), ...this.received.keys()]) : this.subscribed;
    for (const name of watched) {
      if (name === WILDCARD) continue;
      const want = truth.get(name);
      const held = this.received.get(name);
      if (want !== held) return `${name} is ${held ?? 'not held'}, current ${want ?? 'absent'}`;
    }
    return undefined;
  }
}

async function runSeed(seed: number): Promise<void> {
  const rng = new Rng(seededRandom(seed));
  const run = new Run();
  const connections = [connectSds(agent.socketPath), connectSds(agent.socketPath)];
  const streams: Array<SotwModel | DeltaModel> = [];
  let serial = 0;
  const streamRng = (): Rng => new Rng(seededRandom(seed * 1000 + ++serial));

  const openSotw = (names = rng.subset(NAME_POOL)): void => {
    const connection = rng.int(connections.length);
    const s = new SotwModel(`sotw${serial + 1}`, connection, connections[connection]!, run, streamRng(), names);
    run.note(`open ${s.id} on c${connection} [${names.join(' ')}]`);
    streams.push(s);
  };
  const openDelta = (names = rng.subset(NAME_POOL)): void => {
    const connection = rng.int(connections.length);
    const s = new DeltaModel(`delta${serial + 1}`, connection, connections[connection]!, run, streamRng(), names);
    run.note(`open ${s.id} on c${connection} [${names.join(' ')}]`);
    streams.push(s);
  };

  /** Waits until every open stream holds what the agent currently serves for the names it watches. */
  const converge = async (): Promise<void> => {
    const limit = Date.now() + CONVERGENCE_LIMIT_MS;
    for (;;) {
      const truth = await currentTruth(connections[0]!);
      for (const s of streams) s.observe(truth);
      const lagging = streams.map((s) => [s, s.lag(truth)] as const).filter(([, why]) => why !== undefined);
      if (lagging.length === 0) return;
      if (Date.now() > limit) {
        for (const [s, why] of lagging) run.violate(`${s.id} did not converge: ${why}`);
        return;
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const steps: Array<[number, () => Promise<void> | void]> = [
    [3, () => openSotw()],
    [3, () => openDelta()],
    [4, () => {
      const s = rng.pick(streams.filter((x): x is SotwModel => x instanceof SotwModel));
      if (s === undefined) return;
      const names = rng.subset(NAME_POOL, 0);
      if (rng.chance(0.4) && s.nonceHistory.length > 0) {
        const stale = rng.chance(0.3) || s.nonceHistory.length < 2 ? '' : s.nonceHistory[rng.int(s.nonceHistory.length - 1)]!;
        run.note(`${s.id} resubscribe with stale nonce "${stale}" [${names.join(' ')}]`);
        s.resubscribeStale(names, stale);
      } else {
        run.note(`${s.id} resubscribe [${names.join(' ')}]`);
        s.resubscribe(names);
      }
    }],
    [4, () => {
      const s = rng.pick(streams.filter((x): x is DeltaModel => x instanceof DeltaModel));
      if (s === undefined) return;
      const subscribe = rng.chance(0.7) ? rng.subset(NAME_POOL, 0) : [];
      const unsubscribe = rng.chance(0.6) ? rng.subset([...s.subscribed], 0) : [];
      const dupFree = unsubscribe.filter((n) => !subscribe.includes(n));
      const latest = s.nonceHistory[s.nonceHistory.length - 1];
      const nonce = rng.chance(0.3) ? undefined : rng.chance(0.3) && s.nonceHistory.length > 0 ? rng.pick(s.nonceHistory) : latest;
      run.note(`${s.id} subscribe [${subscribe.join(' ')}] unsubscribe [${dupFree.join(' ')}] nonce ${nonce ?? '-'}`);
      s.change(subscribe, dupFree, nonce);
    }],
    [2, () => {
      // Reconnect: the old stream goes, a new one resumes with what the client holds.
      const s = rng.pick(streams);
      if (s === undefined) return;
      s.cancel();
      streams.splice(streams.indexOf(s), 1);
      const connection = rng.int(connections.length);
      const id = `${s instanceof SotwModel ? 'sotw' : 'delta'}${serial + 1}`;
      // An Envoy that watches nothing opens no stream: an empty first request would be the legacy wildcard.
      const names = rng.chance(0.7) && s.watchedNames().length > 0 ? [...s.watchedNames()] : rng.subset(NAME_POOL);
      const next = s instanceof SotwModel
        ? new SotwModel(id, connection, connections[connection]!, run, streamRng(), names, { version: s.acceptedVersion, received: s.received })
        : new DeltaModel(id, connection, connections[connection]!, run, streamRng(), names, { versions: s.versions, received: s.received });
      run.note(`reconnect ${s.id} as ${id} on c${connection} [${names.join(' ')}]`);
      streams.push(next);
    }],
    [1, () => {
      const s = rng.pick(streams);
      if (s === undefined) return;
      run.note(`close ${s.id}`);
      s.cancel();
      streams.splice(streams.indexOf(s), 1);
    }],
    [2, async () => {
      const names = rng.chance(0.2) ? [] : rng.subset(NAME_POOL);
      const truth = await currentTruth(connections[0]!);
      const connection = connections[rng.int(connections.length)]!;
      run.note(`fetch [${names.join(' ')}]`);
      try {
        const r = await fetchSecrets(connection, { node: envoyNode('model-fetch'), resource_names: names, type_url: SECRET_TYPE_URL });
        const got = (r.resources ?? []).map((any) => secretKey(any).name);
        const wildcard = names.length === 0 || names.includes(WILDCARD);
        for (const name of names) if (name !== WILDCARD && !got.includes(name)) run.violate(`FetchSecrets left out ${name}`);
        for (const name of got) if (!wildcard && !names.includes(name)) run.violate(`FetchSecrets sent ${name}, not asked for`);
      } catch (error) {
        const e = error as grpc.ServiceError;
        const resolvable = names.every((n) => n === WILDCARD || truth.has(n));
        if (e.code !== grpc.status.NOT_FOUND || resolvable) run.violate(`FetchSecrets [${names.join(' ')}] failed ${grpc.status[e.code]}: ${e.details}`);
      }
    }],
    [3, () => adminChange()],
    [2, async () => {
      // A stream that was down while the state changed resumes with versions that are no longer current.
      const s = rng.pick(streams);
      if (s === undefined) return;
      run.note(`disconnect ${s.id}`);
      s.cancel();
      streams.splice(streams.indexOf(s), 1);
      await adminChange();
      const connection = rng.int(connections.length);
      const id = `${s instanceof SotwModel ? 'sotw' : 'delta'}${serial + 1}`;
      const names = s.watchedNames().length > 0 ? [...s.watchedNames()] : rng.subset(NAME_POOL);
      const next = s instanceof SotwModel
        ? new SotwModel(id, connection, connections[connection]!, run, streamRng(), names, { version: s.acceptedVersion, received: s.received })
        : new DeltaModel(id, connection, connections[connection]!, run, streamRng(), names, { versions: s.versions, received: s.received });
      run.note(`reconnect ${s.id} as ${id} on c${connection} [${names.join(' ')}]`);
      streams.push(next);
    }],
  ];
  const total = steps.reduce((n, [w]) => n + w, 0);

  /** One operator change that the agent pushes: a re-signing entry update, the federated bundle, entitlements. */
  async function adminChange(): Promise<void> {
    const truthBefore = await currentTruth(connections[0]!);
    const which = rng.int(4);
    if (which === 0) {
      const [id, spiffeId] = rng.chance(0.5) || !truthBefore.has(B) ? [entryA, A] : [entryB, B];
      run.note(`admin: update ${spiffeId} (re-sign)`);
      await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id, dns_names: [`n${seed}-${serial}-${rng.int(1e6)}.mesh.internal`] }, mask: ['dns_names'] });
      await waitFor(connections[0]!, (t) => t.get(spiffeId) !== truthBefore.get(spiffeId));
    } else if (which === 1) {
      const root = partnerRoots[rng.int(2)]!;
      run.note(`admin: set ${PARTNER_TD} bundle to root ${partnerRoots.indexOf(root) + 1}`);
      await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: PARTNER_TD, bundle: root });
    } else if (which === 2) {
      const federates = !truthBefore.has(PARTNER);
      run.note(`admin: entry A ${federates ? 'federates with' : 'stops federating with'} ${PARTNER_TD}`);
      await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: entryA, federates_with: federates ? [PARTNER_TD] : [] }, mask: ['federates_with'] });
      await waitFor(connections[0]!, (t) => t.has(PARTNER) === federates);
    } else {
      // B's entry goes or comes back (a new SVID): its SVID is withdrawn from, or returns to, every stream.
      const exists = truthBefore.has(B);
      run.note(`admin: ${exists ? 'delete' : 'create'} the entry of ${B}`);
      if (exists) await cluster.deleteEntry(entryB);
      else entryB = await cluster.createEntry({ spiffeId: B, selectors: [`unix:uid:${process.getuid!()}`] });
      await waitFor(connections[0]!, (t) => t.has(B) !== exists);
    }
  }

  let stepsRun = 0;
  const first: Array<SotwModel | DeltaModel> = [];
  try {
    openSotw(['default', 'ROOTCA']);
    openDelta(['default', 'ROOTCA']);
    first.push(...streams);
    await converge();
    for (let i = 0; i < STEPS_PER_SEED && run.violations.length === 0; i++, stepsRun++) {
      let pick = rng.int(total);
      const step = steps.find(([w]) => (pick -= w) < 0)![1];
      run.note(`-- step ${i}`);
      await step();
      await converge();
    }
  } finally {
    for (const s of streams) s.cancel();
    for (const c of connections) c.close();
  }
  if (process.env['MESHID_SDS_MODEL_LOG']) console.log(`seed ${seed}\n${run.log.join('\n')}`);
  assert.deepEqual(run.violations, [], `seed ${seed} (replay: MESHID_SDS_MODEL_SEED=${seed}): ${run.violations[0]}\n${run.log.join('\n')}`);
  // A run that checked nothing passes nothing: every step ran, and the streams were answered.
  assert.equal(stepsRun, STEPS_PER_SEED, `seed ${seed}: only ${stepsRun} of ${STEPS_PER_SEED} steps ran`);
  // The first two streams ask for `default` and ROOTCA, which always resolve: a server that answers nothing fails here.
  for (const s of first) assert.ok(s.responses > 0, `seed ${seed}: ${s.id} (default, ROOTCA) was never answered`);
}

/** Waits until the agent serves a state that satisfies `done` (after an admin change reached it). */
async function waitFor(client: grpc.Client, done: (truth: Map<string, string>) => boolean): Promise<void> {
  const limit = Date.now() + CONVERGENCE_LIMIT_MS;
  while (!done(await currentTruth(client))) {
    if (Date.now() > limit) throw new Error('the agent did not pick up the admin change');
    await new Promise((r) => setTimeout(r, 25));
  }
}

function seeds(): number[] {
  const replay = process.env['MESHID_SDS_MODEL_SEED'];
  if (replay !== undefined && replay !== '') return [Number(replay)];
  const runs = Number(process.env['MESHID_SDS_MODEL_RUNS'] ?? 0);
  if (runs > 0) return Array.from({ length: runs }, () => Math.floor(Math.random() * 2 ** 31));
  return FIXED_SEEDS;
}

for (const seed of seeds()) {
  test(`SDS protocol model, seed ${seed}: every response obeys xDS and every stream converges after each change`, async () => {
    await runSeed(seed);
  });
}

