/**
 * The agent's state saves at 10,001 cached SVIDs (the thirty-ninth session): CPU time of one save with 0, 1 and 1,000
 * changed SVIDs, and the longest event-loop stall while the snapshot is rewritten (compaction), in this process, on a
 * copy of a data dir `restart-from-cache.js prepare DIR` built.
 *
 *   node dist/bench/state-save.js DIR [ROUNDS]
 *   node dist/bench/state-save.js DIR ROUNDS --first
 *
 * Each figure is the median (and range) over ROUNDS saves (default 15), the kinds of save interleaved, so that load
 * from anything else on the machine falls on each alike. CPU time is process.cpuUsage() around the save (user +
 * system, all threads: fsync's kernel time is system time of the thread that waits in it). Two ways of saving are
 * compared, alternating: the whole-state comparison (saveState, the agent's until the thirty-ninth session) and the
 * noted changes (noteChanged + saveChanges, the agent's since). A compaction is reported apart, with the wall time of
 * the save that started it (which also saves its own change) and the longest event-loop delay
 * monitorEventLoopDelay (10 ms resolution) saw after that save returned until the compaction ended: a compaction
 * done at once inside the save shows only in the first.
 *
 * --first (the forty-first session): the agent's first save instead, with no state.json on disk (a new agent's first
 * sync, a state set aside at start): each round removes the state files, opens the store again without loading
 * them, and saves the loaded state through saveChanges as the agent does. It reports the wall and CPU time inside
 * the call (the event loop is held throughout it), the longest event-loop stall from the call until the snapshot is
 * in place (the call's wall time, or a longer delay monitorEventLoopDelay saw after it, 10 ms resolution: the
 * monitor cannot see a block that starts right after it is enabled), and the CPU time (all threads) until then.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { AgentStore } from '../src/agent/storage/agent-store.js';
import type { StoredState } from '../src/agent/storage/stored-state.js';
import type { ChangedState } from '../src/agent/storage/state-changes.js';
import type { WorkloadSvid } from '../src/agent/cache/workload-cache.js';
import { silentLogger } from '../src/common/log.js';

const [dir, roundsArg] = process.argv.slice(2);
if (dir === undefined) {
  process.stderr.write('usage: state-save.js DIR [ROUNDS]   (DIR made by restart-from-cache.js prepare)\n');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 15);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'meshid-state-save-'));
fs.chmodSync(work, 0o700);
fs.cpSync(path.join(dir, 'data'), path.join(work, 'data'), { recursive: true });
fs.rmSync(path.join(work, 'data', 'agent.lock'), { force: true });
const store = AgentStore.open(path.join(work, 'data'), silentLogger());
const loaded = store.loadState(Date.now());
if (loaded === undefined || loaded.svids.length < 1000) throw new Error(`no state with 1,000 SVIDs or more in ${dir} (prepare it again: SVIDs expire)`);

let serial = 0;
/** The SVID renewed: a new version (what the persister compares), the same certificate and key. */
const renewed = (s: WorkloadSvid): WorkloadSvid => ({ ...s, version: `${s.version.split('#')[0]}#${++serial}` });
const svids = new Map(loaded.svids.map((s) => [s.entryId, s]));
const entries = new Map(loaded.entries.map((e) => [e.id, e]));
const ids = [...svids.keys()];
let revision = loaded.revision;
/** The state as the agent captures it: new arrays each time, the same objects where nothing changed. */
const capture = (): StoredState => ({ ...loaded, revision, entries: [...entries.values()], svids: [...svids.values()] });
const read = (entryIds: readonly string[]): ChangedState => ({
  bundle: loaded.bundle,
  federatedBundles: loaded.federatedBundles,
  revision,
  entries: new Map(entryIds.map((id) => [id, { entry: entries.get(id), svid: svids.get(id) }])),
});
/** Renews `n` SVIDs and returns their entry IDs. */
function change(n: number): string[] {
  const changed: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = ids[(serial * 7919) % ids.length]!;
    svids.set(id, renewed(svids.get(id)!));
    changed.push(id);
  }
  if (n > 0) revision++;
  return changed;
}

/** The two ways the agent has saved: comparing the whole state (until the thirty-ninth session), the noted entries. */
const ways = {
  'whole-state comparison': (_changed: string[]) => store.saveState(capture()),
  'noted changes': (changed: string[]) => {
    store.noteChanged(changed);
    store.saveChanges(read, capture);
  },
};

const h = monitorEventLoopDelay({ resolution: 10 });
if (process.argv.includes('--first')) {
  await firstSaves();
  process.exit(0);
}
const snapshotIno = (): number => fs.statSync(path.join(work, 'data', 'state.json')).ino;
const figures = new Map<string, number[]>();
const compactions: Array<{ way: string; saveMs: number; stall: number; total: number }> = [];
for (let r = 0; r < rounds; r++) {
  for (const [kind, n] of [['0 changed', 0], ['1 changed', 1], ['1,000 changed', 1000]] as const) {
    for (const [way, save] of Object.entries(ways)) {
      const changed = change(n);
      const ino = snapshotIno();
      h.reset();
      h.enable();
      const started = performance.now();
      const cpu = process.cpuUsage();
      save(changed);
      const used = process.cpuUsage(cpu);
      const saveMs = performance.now() - started;
      if (store.compacting() || snapshotIno() !== ino) {
        // From here on, what the compaction itself holds the event loop for (the save above is its own change's).
        h.reset();
        await store.compactionSettled();
        // A tick for the delay monitor to see the last stretch.
        await new Promise((resolve) => setTimeout(resolve, 20));
        compactions.push({ way, saveMs, stall: store.compacting() || snapshotIno() === ino ? NaN : h.max / 1e6, total: performance.now() - started });
      } else {
        const key = `${kind}, ${way}`;
        figures.set(key, [...(figures.get(key) ?? []), (used.user + used.system) / 1000]);
      }
      h.disable();
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
}
for (const [name, xs] of figures) {
  process.stdout.write(`save, ${name}: CPU median ${median(xs).toFixed(1)} ms (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)}), ${xs.length} saves\n`);
}
for (const c of compactions) {
  process.stdout.write(
    `compaction (${c.way}): the save that started it took ${c.saveMs.toFixed(0)} ms; longest event-loop stall after that save returned until the compaction ended ${c.stall.toFixed(0)} ms; ended after ${c.total.toFixed(0)} ms\n`,
  );
}
store.close();
fs.rmSync(work, { recursive: true, force: true });

/** The --first rounds: a first save with no state.json, from the call until the snapshot is in place. */
async function firstSaves(): Promise<void> {
  store.close();
  const data = path.join(work, 'data');
  const lines: Array<{ callMs: number; callCpuMs: number; stallMs: number; cpuMs: number; endMs: number }> = [];
  for (let r = 0; r < rounds; r++) {
    for (const name of fs.readdirSync(data)) if (name === 'state.json' || /^state\.\d+\.journal$/.test(name)) fs.rmSync(path.join(data, name));
    const first = AgentStore.open(data, silentLogger());
    const state = capture();
    h.reset();
    h.enable();
    const started = performance.now();
    const cpu = process.cpuUsage();
    first.saveChanges(read, () => state);
    const callMs = performance.now() - started;
    const callCpu = process.cpuUsage(cpu);
    await first.compactionSettled();
    const used = process.cpuUsage(cpu);
    const endMs = performance.now() - started;
    // A tick for the delay monitor to see the last stretch.
    await new Promise((resolve) => setTimeout(resolve, 20));
    h.disable();
    if (!fs.existsSync(path.join(data, 'state.json'))) throw new Error('the first save left no state.json');
    first.close();
    const line = { callMs, callCpuMs: (callCpu.user + callCpu.system) / 1000, stallMs: Math.max(callMs, h.max / 1e6), cpuMs: (used.user + used.system) / 1000, endMs };
    lines.push(line);
    process.stdout.write(
      `first save ${r + 1}: call ${callMs.toFixed(0)} ms (CPU ${line.callCpuMs.toFixed(0)} ms), longest event-loop stall ${line.stallMs.toFixed(0)} ms, ` +
        `CPU until in place ${line.cpuMs.toFixed(0)} ms, in place after ${endMs.toFixed(0)} ms\n`,
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const range = (xs: number[]): string => `median ${median(xs).toFixed(0)} ms (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
  process.stdout.write(
    `first save, ${lines.length} rounds: call ${range(lines.map((l) => l.callMs))}, its CPU ${range(lines.map((l) => l.callCpuMs))}; ` +
      `longest stall ${range(lines.map((l) => l.stallMs))}; CPU until in place ${range(lines.map((l) => l.cpuMs))}\n`,
  );
  fs.rmSync(work, { recursive: true, force: true });
}
