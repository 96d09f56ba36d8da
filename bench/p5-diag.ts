/**
 * Diagnostic for P5's two modes (bench/HISTORY.md, the forty-fourth session): the P3/P5 set-up up to the P5 sample,
 * then 60 s more, with the agent's /proc status, its smaps by kind of mapping (glibc's [heap], 256 KB anonymous
 * mappings — V8's pages —, other anonymous ones, files) and its V8 heap (v8-heap-log.mjs, preloaded) at each step.
 * `node dist/bench/p5-diag.js`; JSON lines on stdout; the agent's log to P5_DIAG_LOG if set. More agent flags in
 * MESHID_BENCH_AGENT_NODE_ARGS (e.g. --trace-gc; V8 flags make the agent refuse its code cache).
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../src/common/paths.js';
import { startClusterWithAgent } from '../test/support/cluster.js';
import { connectSidecars, SidecarStream } from './sidecar-stream.js';
import { createIdleEntries, signingSettled } from './full-agent.js';

const agentNodeArgs = [
  `--import=${pathToFileURL(path.join(packageRoot, 'bench', 'v8-heap-log.mjs')).href}`,
  ...(process.env['MESHID_BENCH_AGENT_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== ''),
];

/** The agent's last V8HEAP line of kind 'mem', in MB: heapTotal and the young and old generations' physical size. */
function v8Heap(output: string): Record<string, number> | undefined {
  const lines = output.split('\n').filter((l) => l.startsWith('V8HEAP ') && l.includes('"kind":"mem"'));
  if (lines.length === 0) return undefined;
  const m = JSON.parse(lines[lines.length - 1]!.slice(7)) as { heapTotal: number; heapUsed: number; spaces: Record<string, [number, number, number]> };
  const mb = (kb: number): number => Math.round(kb / 102.4) / 10;
  return { heapTotal: mb(m.heapTotal), heapUsed: mb(m.heapUsed), young: mb(m.spaces['new_space']![2]), old: mb(m.spaces['old_space']![2]) };
}

function status(pid: number): Record<string, number> {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(text)?.[1] ?? NaN) >> 10;
  return { rss: get('VmRSS'), anon: get('RssAnon'), file: get('RssFile') };
}

/** RSS (MB) by kind: [heap], anonymous 256 KB mappings (V8's pages), other anonymous < 64 MB and ≥ 64 MB, files. */
function smaps(pid: number): Record<string, number> {
  const out: Record<string, number> = { heap: 0, v8pages: 0, v8n: 0, anonSmall: 0, anonBig: 0, file: 0, stack: 0 };
  let kind = '';
  for (const l of fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(l);
    if (m) {
      const size = parseInt(m[2]!, 16) - parseInt(m[1]!, 16);
      const name = m[3]!;
      kind = name === '[heap]' ? 'heap' : name.startsWith('[stack') ? 'stack' : name.startsWith('/') ? 'file' : name !== '' ? 'stack' : size === 256 * 1024 ? 'v8pages' : size < 64 * 1024 * 1024 ? 'anonSmall' : 'anonBig';
      if (kind === 'v8pages') out['v8n']! += 1;
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(l);
    if (r) out[kind]! += Number(r[1]) / 1024;
  }
  for (const k of Object.keys(out)) out[k] = Math.round(out[k]! * 10) / 10;
  return out;
}

async function main(): Promise<void> {
  const { cluster, agent } = await startClusterWithAgent('meshid-p5diag-', ['spiffe://example.org/bench/envoy'], { nodeArgs: agentNodeArgs });
  const pid = agent.child.pid!;
  const t0 = Date.now();
  const mark = (stage: string): void => console.log(JSON.stringify({ stage, t: Date.now(), s: Math.round((Date.now() - t0) / 100) / 10, ...status(pid), smaps: smaps(pid), v8: v8Heap(agent.output()) }));
  try {
    await new Promise((r) => setTimeout(r, 500));
    mark('start');
    await createIdleEntries(cluster, 10_000);
    mark('entries created');
    const clients = Array.from({ length: 10 }, () => connectSidecars(agent.socketPath));
    const firsts: Array<Promise<number>> = [];
    for (let i = 0; i < 1000; i++) firsts.push(new SidecarStream(clients[i % 10]!, `sidecar-${i}`, ['default']).nextVersion());
    await Promise.all(firsts);
    mark('streams open');
    await signingSettled(() => agent.output());
    mark('signing settled');
    for (let i = 1; i <= 105; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      if (i % 5 === 0 || i === 45) mark(i === 45 ? 'P5' : `+${i}s`);
    }
  } finally {
    if (process.env['P5_DIAG_LOG']) fs.writeFileSync(process.env['P5_DIAG_LOG'], agent.output());
    await cluster.cleanup().catch(() => undefined);
  }
}

await main();
process.exit(0);
