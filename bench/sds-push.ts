/**
 * P3 — rotation push: time from an SVID renewal to the new secret arriving on each of 1,000 open SDS streams (SotW,
 * `default`, ACKed like Envoy). The renewal is forced the way an operator would: `ca taint` of the datacenter
 * intermediate makes the agent re-sign; the clock starts when the admin call returns, so server push and agent
 * signing are included. P5 (agent half) — agent RSS with those 1,000 streams and 10,000 entries vs its idle RSS.
 */
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadProto } from '../src/common/grpc/proto.js';
import { serviceClient } from '../src/common/grpc/service.js';
import { startCluster } from '../test/support/cluster.js';
import { SotwClient, type DiscoveryResponse } from '../test/support/sds-client.js';
import { percentile } from './stats.js';
import type { BenchResult } from './report.js';

const STREAMS = 1000;
const CONNECTIONS = 10;

function rssMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

export async function benchSdsPush(entries = 10_000): Promise<BenchResult[]> {
  const cluster = await startCluster('meshid-bench-sds-');
  try {
    await cluster.createEntry({ spiffeId: 'spiffe://example.org/bench/envoy', selectors: [`unix:uid:${process.getuid!()}`] });
    const agent = await cluster.startAgent({ joinToken: await cluster.token() });
    await new Promise((r) => setTimeout(r, 500));
    const idle = rssMb(agent.child.pid!);

    // Entries for other workloads on this host (uids nobody uses): the agent holds and signs them all.
    for (let i = 0; i < entries; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, entries - i) }, (_, j) => ({
        spiffe_id: `spiffe://example.org/bench/w${i + j}`,
        parent_id: 'spiffe://example.org/node/east',
        selectors: [{ type: 'unix', value: `uid:${200_000 + i + j}` }],
      }));
      await cluster.admin.call('Entries', 'CreateEntries', { entries: batch });
    }

    const Sds = serviceClient(loadProto('envoy/service/secret/v3/sds.proto'), 'envoy.service.secret.v3.SecretDiscoveryService');
    const clients = Array.from({ length: CONNECTIONS }, () => new Sds(`unix://${agent.socketPath}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
    const streams: SotwClient[] = [];
    const firsts: Array<Promise<DiscoveryResponse>> = [];
    for (let i = 0; i < STREAMS; i++) {
      const s = new SotwClient(clients[i % CONNECTIONS]!);
      s.subscribe(['default'], { id: `sidecar-${i}`, cluster: 'bench' });
      streams.push(s);
      firsts.push(s.next(120_000));
    }
    const first = await Promise.all(firsts);
    first.forEach((r, i) => streams[i]!.ack(r, ['default']));
    const versions = first.map((r) => r.version_info);
    // Wait until the agent has signed the other entries too (no new issuance logged for 3 s, at most 5 min), so the
    // push measured is the rotation alone.
    const issued = (): number => (agent.output().match(/X509-SVIDs issued/g) ?? []).length;
    for (let last = -1, quietSince = performance.now(), until = performance.now() + 300_000; performance.now() < until; ) {
      await new Promise((r) => setTimeout(r, 500));
      if (issued() !== last) {
        last = issued();
        quietSince = performance.now();
      } else if (performance.now() - quietSince > 3000) break;
    }
    // P5 is a steady-state figure: V8's memory reducer collects the signing burst's garbage some 10-30 s after the
    // agent goes quiet, and the agent then returns the freed native pages. Sample for 45 s; report the peak and the
    // RSS at the end.
    let peak = rssMb(agent.child.pid!);
    for (let i = 0; i < 45; i++) {
      await new Promise((r) => setTimeout(r, 1000));
      peak = Math.max(peak, rssMb(agent.child.pid!));
    }
    const loaded = rssMb(agent.child.pid!);

    /** Starts `trigger` and returns, per stream, how long until a new version of `default` arrived. */
    const pushLatencies = async (trigger: () => Promise<unknown>): Promise<number[]> => {
      const arrivals = streams.map((s, i) =>
        (async () => {
          for (;;) {
            const r = await s.next(300_000);
            s.ack(r, ['default']);
            if (r.version_info !== versions[i]) {
              versions[i] = r.version_info;
              return performance.now();
            }
          }
        })(),
      );
      await trigger();
      const started = performance.now();
      return (await Promise.all(arrivals)).map((t) => t - started);
    };
    // One SVID renewed: an entry change makes the agent re-sign exactly that SVID.
    const envoy = (await cluster.admin.call('Entries', 'ListEntries', { spiffe_id: 'spiffe://example.org/bench/envoy' })).entries![0]!;
    const single = await pushLatencies(() =>
      cluster.admin.call('Entries', 'UpdateEntry', { entry: { id: envoy.id, dns_names: ['envoy.bench'] }, mask: ['dns_names'] }),
    );
    // Every SVID renewed at once: tainting the intermediate makes the agent re-sign all of them.
    const authorities = await cluster.admin.call('Authorities', 'ListAuthorities', {});
    const intermediate = (authorities.authorities ?? []).find((a) => a.kind === 'intermediate' && a.state === 'active')!;
    const mass = await pushLatencies(() => cluster.admin.call('Authorities', 'TaintAuthority', { id: intermediate.id! }));
    for (const s of streams) s.cancel();
    for (const c of clients) c.close();
    return [
      { name: `P3 one SVID renewed → new secret on ${STREAMS} SDS streams p50`, value: percentile(single, 50), unit: 'ms' },
      { name: `P3 one SVID renewed → new secret on ${STREAMS} SDS streams p99 (arrived: ${single.length})`, value: percentile(single, 99), unit: 'ms', target: '< 100 ms' },
      { name: `P3 intermediate tainted → ${entries + 1} SVIDs re-signed, watched one on ${STREAMS} streams p99`, value: percentile(mass, 99), unit: 'ms' },
      { name: 'P5 agent idle RSS (baseline)', value: idle, unit: 'MB' },
      { name: `P5 agent RSS peak while signing ${entries} SVIDs and opening ${STREAMS} streams`, value: peak, unit: 'MB', ratio: peak / idle },
      { name: `P5 agent RSS with ${STREAMS} open streams and ${entries} entries, 45 s after the last SVID`, value: loaded, unit: 'MB', ratio: loaded / idle, target: '< 150 MB' },
    ];
  } finally {
    await cluster.cleanup().catch(() => undefined);
  }
}
