/**
 * A seeded, randomized model of meshid's core promise: a workload gets exactly the identities its registration
 * entries entitle it to, and every open stream follows the changes. A real server process and agent process serve
 * three workload processes of different uids/gids (test/support/entitlement-workload.ts: a FetchX509SVID stream, a
 * wildcard and an explicit StreamSecrets stream, ACKing as Envoy does). A seeded random sequence of admin operations
 * (entries created, updated in any field a workload sees, deleted; a partner's federated bundle replaced; an
 * intermediate tainted) goes through the real admin API; a small model says after each step what every workload must
 * see. The test waits (bounded) until every stream and a fresh fetch agree with the model, and checks that no message
 * received during the step named an identity or a federated trust domain outside what the caller was entitled to
 * before, during or after it.
 *
 * MESHID_MODEL_SEED=<n> replays one seed; MESHID_MODEL_SEEDS=<count> and MESHID_MODEL_STEPS=<n> run more (locally).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { packageRoot } from '../../src/common/paths.js';
import { parseSelector } from '../../src/common/spiffe/selector.js';
import { pemToDerList } from '../../src/common/x509/pem.js';
import { Cluster, startCluster, TRUST_DOMAIN, type AgentProcess } from '../support/cluster.js';
import { opensslCa } from '../support/openssl.js';

const WORKLOAD_MAIN = path.join(packageRoot, 'dist/test/support/entitlement-workload.js');
const OWN = `spiffe://${TRUST_DOMAIN}`;
const PARTNERS = ['partner-a.test', 'partner-b.test'] as const;
const SPIFFE_IDS = ['a', 'b', 'c', 'd', 'e'].map((n) => `${OWN}/svc/${n}`);
const DNS_NAMES = ['a.svc.local', 'b.svc.local'];
const TTLS = [0, 3600, 7200];
const DEFAULT_TTL = 86_400;
/** No agent attests into this datacenter: entries parented to its alias reach nobody. */
const UNSERVED_PARENT = `${OWN}/node/west`;
/** 1005 found the StreamSecrets withdrawal bug (step 13); the others are plain fixed seeds. */
const FIXED_SEEDS = [1005, 1, 2];
const SUITE_STEPS = 14;
const PERMISSION_DENIED = 7;

interface Workload {
  name: string;
  uid: number;
  gid: number;
}

const WORKLOADS: readonly Workload[] = [
  { name: 'w1', uid: 41001, gid: 41001 },
  { name: 'w2', uid: 41002, gid: 41001 },
  { name: 'w3', uid: 41003, gid: 41003 },
];
const SELECTORS = ['unix:uid:41001', 'unix:uid:41002', 'unix:uid:41003', 'unix:gid:41001', 'unix:gid:41003', 'unix:uid:41099'];

/** mulberry32: a small seeded PRNG, so a seed replays the same operations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface ModelEntry {
  id: string;
  createdAtMs: number;
  spiffeId: string;
  parentId: string;
  selectors: string[];
  dnsNames: string[];
  ttl: number;
  federatesWith: string[];
}

/** What one workload must see: its entries oldest first, and the federated trust domains they bring. */
interface Expected {
  entries: ModelEntry[];
  federated: string[];
}

class Model {
  readonly entries = new Map<string, ModelEntry>();
  /** Digests of each partner's current roots. */
  readonly partnerRoots = new Map<string, string[]>();

  constructor(
    readonly servedParents: readonly string[],
    readonly ownRoots: string[],
  ) {}

  expected(w: Workload): Expected {
    const mine = new Set([`unix:uid:${w.uid}`, `unix:gid:${w.gid}`]);
    const entries = [...this.entries.values()]
      .filter((e) => this.servedParents.includes(e.parentId) && e.selectors.every((s) => mine.has(s)))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const federated = [...new Set(entries.flatMap((e) => e.federatesWith))].sort();
    return { entries, federated };
  }

  /** SPIRE's (and meshid's) uniqueness: one entry per SPIFFE ID, parent and selector set. */
  duplicates(candidate: Omit<ModelEntry, 'id' | 'createdAtMs'>, except?: string): boolean {
    const key = (e: Omit<ModelEntry, 'id' | 'createdAtMs'>): string => JSON.stringify([e.spiffeId, e.parentId, [...new Set(e.selectors)].sort()]);
    return [...this.entries.values()].some((e) => e.id !== except && key(e) === key(candidate));
  }
}

const digest = (der: Buffer): string => createHash('sha256').update(der).digest('hex').slice(0, 16);

type Event = Record<string, unknown> & { s: string; seq: number };

/** One workload process and every line it printed, in order. */
class WorkloadProcess {
  readonly events: Event[] = [];
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private fetches = 0;
  stderr = '';

  constructor(
    readonly workload: Workload,
    socketPath: string,
    names: string[],
    private readonly counter: { seq: number },
  ) {
    this.child = spawn(process.execPath, [WORKLOAD_MAIN, socketPath, JSON.stringify(names)], {
      uid: workload.uid,
      gid: workload.gid,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.events.push({ ...(JSON.parse(line) as Record<string, unknown>), s: (JSON.parse(line) as { s: string }).s, seq: this.counter.seq++ });
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  /** The last event of one stream (`x509`, `wildcard`, `explicit`, or their `-end`). */
  last(stream: string): Event | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) {
      const e = this.events[i]!;
      if (e.s === stream || e.s === `${stream}-end`) return e;
    }
    return undefined;
  }

  /** A fresh FetchX509SVID, made by the workload process itself. */
  async fetch(): Promise<Event> {
    const n = ++this.fetches;
    this.child.stdin!.write(`fetch ${n}\n`);
    for (let i = 0; i < 1200; i++) {
      const found = this.events.find((e) => e.s === 'fetch' && e.n === n);
      if (found !== undefined) return found;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`${this.workload.name}: no answer to fetch ${n} within 30 s`);
  }

  async stop(): Promise<void> {
    this.child.stdin!.end();
    await this.exited;
  }
}

interface X509Summary {
  svids?: Array<{ id: string; uris: string[]; dns: string[]; lifetime: number; bundle: string[] }>;
  federated?: Record<string, string[]>;
  code?: number;
}

type SdsSecrets = Record<string, { uris?: string[]; trustDomains?: Record<string, string[]> }>;

/** Why an X.509 answer (a stream message or a fetch) differs from what `ex` says, or undefined when it agrees. */
function x509Mismatch(model: Model, ex: Expected, got: (Event & X509Summary) | undefined): string | undefined {
  if (got === undefined) return 'nothing received yet';
  if (ex.entries.length === 0) return got.code === PERMISSION_DENIED ? undefined : `expected PERMISSION_DENIED, got ${JSON.stringify(got)}`;
  if (got.svids === undefined) return `expected SVIDs, got ${JSON.stringify(got)}`;
  const want = ex.entries.map((e) => ({ id: e.spiffeId, uris: [e.spiffeId], dns: [...e.dnsNames].sort(), ttl: e.ttl || DEFAULT_TTL, bundle: model.ownRoots }));
  if (got.svids.length !== want.length) return `expected ${want.map((w) => w.id).join(',')}, got ${got.svids.map((s) => s.id).join(',')}`;
  for (const [i, w] of want.entries()) {
    const s = got.svids[i]!;
    if (s.id !== w.id || JSON.stringify(s.uris) !== JSON.stringify(w.uris)) return `svids[${i}]: expected ${w.id}, got ${s.id} (URI SANs ${s.uris.join(',')})`;
    if (JSON.stringify(s.dns) !== JSON.stringify(w.dns)) return `svids[${i}] ${s.id}: expected DNS names ${w.dns.join(',')}, got ${s.dns.join(',')}`;
    // Back-dated by 10 s.
    if (s.lifetime < w.ttl || s.lifetime > w.ttl + 11) return `svids[${i}] ${s.id}: expected a lifetime of ${w.ttl} s, got ${s.lifetime} s`;
    if (JSON.stringify(s.bundle) !== JSON.stringify(w.bundle)) return `svids[${i}] ${s.id}: another own bundle`;
  }
  const fed = Object.fromEntries(ex.federated.map((td) => [`spiffe://${td}`, model.partnerRoots.get(td)!]));
  if (JSON.stringify(sortKeys(got.federated ?? {})) !== JSON.stringify(fed)) return `expected federated bundles ${JSON.stringify(fed)}, got ${JSON.stringify(got.federated)}`;
  return undefined;
}

/** What an SDS stream subscribed to `names` (empty: wildcard) must hold now, name → URI SAN or trust domains. */
function expectedSecrets(model: Model, ex: Expected, names: readonly string[]): SdsSecrets {
  const all: SdsSecrets = {};
  const ownTd = { [TRUST_DOMAIN]: model.ownRoots };
  all['default'] = { uris: [ex.entries[0]!.spiffeId] };
  for (const e of ex.entries) all[e.spiffeId] = { uris: [e.spiffeId] };
  all['ROOTCA'] = { trustDomains: ownTd };
  all[OWN] = { trustDomains: ownTd };
  for (const td of ex.federated) all[`spiffe://${td}`] = { trustDomains: { [td]: model.partnerRoots.get(td)! } };
  all['ALL'] = { trustDomains: sortKeys({ ...ownTd, ...Object.fromEntries(ex.federated.map((td) => [td, model.partnerRoots.get(td)!])) }) };
  if (names.length === 0) return sortKeys(all);
  return sortKeys(Object.fromEntries(Object.entries(all).filter(([n]) => names.includes(n))));
}

function sdsMismatch(model: Model, ex: Expected, names: readonly string[], got: Event | undefined): string | undefined {
  if (got === undefined) return 'nothing received yet';
  if (ex.entries.length === 0) return got['code'] === PERMISSION_DENIED ? undefined : `expected PERMISSION_DENIED, got ${JSON.stringify(got)}`;
  if (got['secrets'] === undefined) return `expected secrets, got ${JSON.stringify(got)}`;
  const want = JSON.stringify(expectedSecrets(model, ex, names));
  const have = JSON.stringify(sortKeys(got['secrets'] as SdsSecrets));
  return want === have ? undefined : `expected ${want}\n     got ${have}`;
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** The identities and federated trust domains an event names (from its SPIFFE IDs and its certificates' SANs). */
function named(e: Event): { ids: string[]; tds: string[] } {
  const ids: string[] = [];
  const tds: string[] = [];
  for (const s of (e['svids'] as X509Summary['svids']) ?? []) ids.push(s.id, ...s.uris);
  for (const td of Object.keys((e['federated'] as Record<string, unknown>) ?? {})) tds.push(td.replace(/^spiffe:\/\//, ''));
  for (const [name, secret] of Object.entries((e['secrets'] as SdsSecrets) ?? {})) {
    if (name.startsWith(`${OWN}/`)) ids.push(name);
    ids.push(...(secret.uris ?? []));
    for (const td of Object.keys(secret.trustDomains ?? {})) tds.push(td);
    if (name.startsWith('spiffe://') && !name.startsWith(`${OWN}/`) && name !== OWN) tds.push(name.slice('spiffe://'.length));
  }
  return { ids, tds: tds.filter((td) => td !== TRUST_DOMAIN) };
}

interface RunOptions {
  seed: number;
  steps: number;
}

async function runModel({ seed, steps }: RunOptions): Promise<void> {
  const random = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const subset = <T>(xs: readonly T[], max = xs.length): T[] => xs.filter(() => random() < max / xs.length / 2 + 0.15).slice(0, max);
  const log: string[] = [];

  const cluster = await startCluster('meshid-model-');
  const workloads: WorkloadProcess[] = [];
  try {
    for (const td of PARTNERS) {
      const root = opensslCa(cluster.dir, `${td}-0`);
      await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: td, bundle: fs.readFileSync(root.cert, 'utf8') });
    }
    await cluster.admin.call('Entries', 'CreateEntries', {
      entries: [{ spiffe_id: Cluster.nodeAlias, parent_id: `${OWN}/meshid/server`, selectors: [parseSelector('meshid:datacenter:east')] }],
    });
    const agent: AgentProcess = await cluster.startAgent({ joinToken: await cluster.token() });
    const agentId = JSON.parse(fs.readFileSync(path.join(agent.dataDir, 'agent-svid.json'), 'utf8')).spiffe_id as string;
    const own = await cluster.admin.call('Bundles', 'GetBundle', {});
    const model = new Model([Cluster.nodeAlias, agentId], (own.x509_authorities ?? []).map((d: Buffer) => digest(Buffer.from(d))).sort());
    for (const td of PARTNERS) model.partnerRoots.set(td, pemToDerList(fs.readFileSync(path.join(cluster.dir, `${td}-0.pem`), 'utf8')).map(digest));
    const parents = [Cluster.nodeAlias, agentId, UNSERVED_PARENT];
    const explicitNames = ['default', 'ROOTCA', ...PARTNERS.map((td) => `spiffe://${td}`), ...SPIFFE_IDS.slice(0, 4)];
    const counter = { seq: 0 };
    for (const w of WORKLOADS) workloads.push(new WorkloadProcess(w, agent.socketPath, explicitNames, counter));

    const randomSpec = (): Omit<ModelEntry, 'id' | 'createdAtMs'> => ({
      spiffeId: pick(SPIFFE_IDS),
      parentId: random() < 0.85 ? pick(parents.slice(0, 2)) : UNSERVED_PARENT,
      selectors: random() < 0.7 ? [pick(SELECTORS)] : [...new Set([pick(SELECTORS), pick(SELECTORS)])],
      dnsNames: subset(DNS_NAMES),
      ttl: pick(TTLS),
      federatesWith: subset(PARTNERS),
    });
    const wire = (e: Omit<ModelEntry, 'id' | 'createdAtMs'>): Record<string, unknown> => ({
      spiffe_id: e.spiffeId,
      parent_id: e.parentId,
      selectors: e.selectors.map(parseSelector),
      dns_names: e.dnsNames,
      x509_svid_ttl: e.ttl,
      federates_with: e.federatesWith,
    });

    const create = async (): Promise<void> => {
      const spec = randomSpec();
      log.push(`create ${JSON.stringify(spec)}`);
      const r = await cluster.admin.call('Entries', 'CreateEntries', { entries: [wire(spec)] });
      const result = r.results![0]!;
      const code = result.status?.code ?? 0;
      if (model.duplicates(spec)) {
        assert.equal(code, 6, `a duplicate entry was not refused ALREADY_EXISTS: ${JSON.stringify(result.status)}`);
        log.push('  -> ALREADY_EXISTS');
        return;
      }
      assert.equal(code, 0, `create refused: ${JSON.stringify(result.status)}`);
      const id = result.entry!.id!;
      model.entries.set(id, { ...spec, id, createdAtMs: Number(result.entry!.created_at_ms) });
      log.push(`  -> ${id}`);
    };
    const update = async (): Promise<void> => {
      const current = pick([...model.entries.values()]);
      const fresh = randomSpec();
      const fields = subset(['spiffeId', 'parentId', 'selectors', 'dnsNames', 'ttl', 'federatesWith'] as const, 3);
      if (fields.length === 0) fields.push('selectors');
      const next: ModelEntry = { ...current };
      for (const f of fields) (next as unknown as Record<string, unknown>)[f] = fresh[f];
      const mask = fields.map((f) => ({ spiffeId: 'spiffe_id', parentId: 'parent_id', selectors: 'selectors', dnsNames: 'dns_names', ttl: 'x509_svid_ttl', federatesWith: 'federates_with' })[f]);
      log.push(`update ${current.id} ${JSON.stringify(Object.fromEntries(fields.map((f) => [f, next[f]])))}`);
      try {
        await cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: current.id, ...wire(next) }, mask });
      } catch (err) {
        assert.ok(model.duplicates(next, current.id), `update refused: ${(err as Error).message}`);
        log.push('  -> refused as a duplicate');
        return;
      }
      assert.ok(!model.duplicates(next, current.id), 'an update making a duplicate entry was accepted');
      model.entries.set(current.id, next);
    };
    const remove = async (): Promise<void> => {
      const current = pick([...model.entries.values()]);
      log.push(`delete ${current.id}`);
      await cluster.deleteEntry(current.id);
      model.entries.delete(current.id);
    };
    let rootGeneration = 0;
    const replacePartnerBundle = async (): Promise<void> => {
      const td = pick(PARTNERS);
      const root = opensslCa(cluster.dir, `${td}-${++rootGeneration}`);
      log.push(`bundle set ${td} (root ${rootGeneration})`);
      await cluster.admin.call('Bundles', 'SetFederatedBundle', { trust_domain: td, bundle: fs.readFileSync(root.cert, 'utf8') });
      model.partnerRoots.set(td, pemToDerList(fs.readFileSync(root.cert, 'utf8')).map(digest));
    };
    let taints = 0;
    const taintIntermediate = async (): Promise<void> => {
      const list = await cluster.admin.call('Authorities', 'ListAuthorities', {});
      const active = (list.authorities ?? []).find((a: { kind?: string; state?: string }) => a.kind === 'intermediate' && a.state === 'active');
      if (active === undefined) return;
      taints++;
      log.push(`taint intermediate ${active.id}`);
      await cluster.admin.call('Authorities', 'TaintAuthority', { id: active.id! });
    };

    const allowedNow = (): Map<string, { ids: Set<string>; tds: Set<string> }> =>
      new Map(WORKLOADS.map((w) => {
        const ex = model.expected(w);
        return [w.name, { ids: new Set(ex.entries.map((e) => e.spiffeId)), tds: new Set(ex.federated) }];
      }));
    const widen = (into: Map<string, { ids: Set<string>; tds: Set<string> }>): void => {
      for (const [name, a] of allowedNow()) {
        for (const id of a.ids) into.get(name)!.ids.add(id);
        for (const td of a.tds) into.get(name)!.tds.add(td);
      }
    };

    const checkConverged = async (step: number, from: number, allowed: Map<string, { ids: Set<string>; tds: Set<string> }>): Promise<void> => {
      const failure = (what: string): Error =>
        new Error(`seed ${seed}, step ${step}: ${what}\nreplay: MESHID_MODEL_SEED=${seed} MESHID_MODEL_STEPS=${steps}\noperations:\n${log.join('\n')}`);
      const mismatches = async (): Promise<string[]> => {
        const out: string[] = [];
        for (const p of workloads) {
          const ex = model.expected(p.workload);
          const x = x509Mismatch(model, ex, p.last('x509') as Event & X509Summary);
          if (x !== undefined) out.push(`${p.workload.name} FetchX509SVID stream: ${x}`);
          const wc = sdsMismatch(model, ex, [], p.last('wildcard'));
          if (wc !== undefined) out.push(`${p.workload.name} wildcard StreamSecrets: ${wc}`);
          const exn = sdsMismatch(model, ex, explicitNames, p.last('explicit'));
          if (exn !== undefined) out.push(`${p.workload.name} StreamSecrets ${JSON.stringify(explicitNames)}: ${exn}`);
        }
        return out;
      };
      // Convergence is the agent reacting to a server push: an event, polled with a generous bound.
      let last: string[] = [];
      for (let i = 0; i < 800; i++) {
        last = await mismatches();
        if (last.length === 0) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      if (last.length > 0) throw failure(`the streams did not converge to the model within 20 s:\n${last.join('\n')}`);
      for (const p of workloads) {
        const fetched = await p.fetch();
        const x = x509Mismatch(model, model.expected(p.workload), fetched as Event & X509Summary);
        if (x !== undefined) throw failure(`${p.workload.name} fresh FetchX509SVID: ${x}`);
      }
      for (const p of workloads) {
        const a = allowed.get(p.workload.name)!;
        for (const e of p.events.filter((ev) => ev.seq >= from)) {
          const n = named(e);
          const ids = n.ids.filter((id) => !a.ids.has(id));
          const tds = n.tds.filter((td) => !a.tds.has(td));
          if (ids.length > 0 || tds.length > 0) {
            throw failure(`${p.workload.name} got a ${e.s} message naming ${[...ids, ...tds].join(', ')}, outside what it was entitled to during the step (${[...a.ids, ...a.tds].join(', ') || 'nothing'}):\n${JSON.stringify(e)}`);
          }
        }
      }
    };

    await checkConverged(0, 0, allowedNow());
    for (let step = 1; step <= steps; step++) {
      const from = counter.seq;
      const allowed = allowedNow();
      log.push(`-- step ${step}`);
      const ops = 1 + Math.floor(random() * (random() < 0.7 ? 1 : 3));
      for (let i = 0; i < ops; i++) {
        const r = random();
        if (model.entries.size === 0 || r < 0.4) await create();
        else if (r < 0.7) await update();
        else if (r < 0.88) await remove();
        else if (r < 0.96 || taints >= 2) await replacePartnerBundle();
        else await taintIntermediate();
        widen(allowed);
      }
      await checkConverged(step, from, allowed);
    }
  } catch (err) {
    for (const p of workloads) if (p.stderr !== '') (err as Error).message += `\n${p.workload.name} stderr: ${p.stderr}`;
    throw err;
  } finally {
    for (const p of workloads) await p.stop();
    await cluster.cleanup();
  }
}

const replay = process.env['MESHID_MODEL_SEED'];
const seedCount = Number(process.env['MESHID_MODEL_SEEDS'] ?? 0);
const seeds = replay !== undefined ? [Number(replay)] : seedCount > 0 ? Array.from({ length: seedCount }, (_, i) => 1000 + i) : FIXED_SEEDS;
const stepCount = Number(process.env['MESHID_MODEL_STEPS'] ?? SUITE_STEPS);

for (const seed of seeds) {
  test(`workloads of three uids see exactly what their entries entitle them to, on every stream, through a random admin sequence (seed ${seed}, ${stepCount} steps)`, async () => {
    await runModel({ seed, steps: stepCount });
  });
}
