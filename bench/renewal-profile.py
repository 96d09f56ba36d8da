#!/usr/bin/env python3
"""Where the agent's main thread spends a renewal, from a V8 CPU profile of the agent (the forty-sixth session).

    MESHID_BENCH_AGENT_NODE_ARGS='--cpu-prof --cpu-prof-dir=DIR' PROBE_BARE=1 node dist/bench/sds-push-probe.js 12
    python3 bench/renewal-profile.py DIR/CPU.*.cpuprofile [--renewals 12] [--bundle dist/bin/meshid-agent.cjs]

The profile is cut into bursts of activity separated by more than --gap-ms (default 450) of idle samples: with the
probe, the start, then one burst per renewal (the push, the ACKs, the coalesced state save 200 ms after the change),
then the shutdown. A burst also holds whatever the agent's timers ran inside it or right after (the trim 1 s after
a major GC, the quiet GC), which the probe's window may not: check the burst count and sizes it prints first, and
compare with the probe's rows. The last --renewals bursts before the shutdown are reported: per burst, per owner (the first of
the categories below found on the sample's stack, walking from the root of the list), the top frames by self time
and by inclusive time, each as ms per renewal. Frames in the agent's bundle are named by the source module the
bundle's `// dist/src/...` and `// node_modules/...` markers place them in.

Read it as wall-clock, not CPU: V8's profiler samples the thread at fixed wall-clock intervals, so a thread blocked
in a system call is counted in that call's frame. fsync waiting for the disk, writeSync to a log pipe the reader has
not emptied, and time the process was preempted in any frame all show up as if they were work. The blocking native
calls are listed apart for that reason; compare with the probe's schedstat figure (agent main, CPU only).
"""
import argparse
import bisect
import collections
import json
import os

CATEGORIES = [
    ('state save', lambda s: 'agent/storage/' in s),
    ('log lines (pino)', lambda s: '/pino/' in s or 'sonic-boom' in s or 'log-sink' in s),
    ('memory (native heap, GC helpers)', lambda s: 'common/memory/' in s),
    ('caller re-check', lambda s: 'caller-recheck' in s or 'agent/attestor/' in s),
    ('fair queue / decoding (ACKs)', lambda s: 'uid-fair-queue' in s or 'fair-decoding' in s),
    ('signing (keys, CSR, chain check)', lambda s: 'svid-issuer' in s or 'x509-svid-request' in s or 'common/x509/' in s or 'unsigned-keys' in s),
    ('sync, cache', lambda s: 'agent/client/' in s or 'agent/cache/' in s),
    ('SDS (meshid)', lambda s: 'agent/sds/' in s),
    ('grpc-js, rest', lambda s: '@grpc/' in s),
    ('(garbage collector)', lambda s: s.startswith('(garbage collector)')),
    ('(program)', lambda s: s.startswith('(program)')),
]
BLOCKING = {'fsync', 'fdatasync', 'writeBuffer', 'writeString', 'writeBuffers', 'read', 'open', 'close', 'readlink', 'lstat', 'stat', 'fstat', 'readdir', 'rename'}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('profile')
    ap.add_argument('--renewals', type=int, default=12)
    ap.add_argument('--bundle', default='dist/bin/meshid-agent.cjs')
    ap.add_argument('--gap-ms', type=float, default=450)
    ap.add_argument('--top', type=int, default=25)
    a = ap.parse_args()

    marks = []
    if os.path.exists(a.bundle):
        with open(a.bundle, encoding='utf8') as f:
            for i, line in enumerate(f, 1):
                if line.startswith('// dist/src/') or line.startswith('// node_modules/'):
                    marks.append((i, line[3:].strip().replace('dist/src/', 'src/').replace('node_modules/', '')))
    mark_lines = [m[0] for m in marks]

    p = json.load(open(a.profile))
    nodes = {n['id']: n for n in p['nodes']}
    parent = {c: n['id'] for n in p['nodes'] for c in n.get('children', [])}

    def module(cf: dict) -> str:
        if not cf['url'].endswith('.cjs') or not marks:
            return cf['url'].split('/')[-1]
        k = bisect.bisect_right(mark_lines, cf['lineNumber'] + 1) - 1
        return marks[k][1] if k >= 0 else 'bundle'

    def name(nid: int) -> str:
        cf = nodes[nid]['callFrame']
        return f"{cf['functionName'] or '(anonymous)'} {module(cf)}:{cf['lineNumber'] + 1}"

    names = {nid: name(nid) for nid in nodes}
    # Each sample stands for the time until the next one.
    times, t = [], p['startTime']
    for d in p['timeDeltas']:
        t += d
        times.append(t)
    samples = p['samples']
    busy = [(times[i], samples[i], times[i + 1] - times[i]) for i in range(len(samples) - 1) if nodes[samples[i]]['callFrame']['functionName'] != '(idle)']
    bursts, cur = [], []
    for s in busy:
        if cur and s[0] - cur[-1][0] > a.gap_ms * 1000:
            bursts.append(cur)
            cur = []
        cur.append(s)
    if cur:
        bursts.append(cur)
    print(f'{len(bursts)} bursts (ms): {[round(sum(x[2] for x in b) / 1000, 1) for b in bursts]}')
    # The last burst is the shutdown (the probe stops the agent after its last renewal).
    chosen = bursts[-a.renewals - 1:-1]
    n = len(chosen)
    if n == 0:
        return
    print(f'reported: the {n} bursts before the last, {[round(sum(x[2] for x in b) / 1000, 1) for b in chosen]}, mean {sum(x[2] for b in chosen for x in b) / 1000 / n:.1f} ms')

    by_cat, self_t, incl, blocking = collections.Counter(), collections.Counter(), collections.Counter(), collections.Counter()
    for b in chosen:
        for _, nid, dt in b:
            stack, x = [], nid
            while x is not None:
                stack.append(names[x])
                x = parent.get(x)
            cat = next((c for c, match in CATEGORIES if any(match(s) for s in stack)), 'other (node internals, timers, streams)')
            by_cat[cat] += dt
            self_t[names[nid]] += dt
            if nodes[nid]['callFrame']['functionName'] in BLOCKING and nodes[nid]['callFrame']['url'] == '':
                blocking[f"{names[nid]} < {names[parent[nid]] if nid in parent else ''}"] += dt
            for s in set(stack):
                if 'src/' in s:
                    incl[s] += dt
    ms = lambda v: f'{v / 1000 / n:7.2f}'
    print('\nby owner, ms per renewal (first category on the stack, in this order)')
    for c, _ in CATEGORIES + [('other (node internals, timers, streams)', None)]:
        if by_cat[c]:
            print(f'  {ms(by_cat[c])}  {c}')
    print('\nblocking native calls (wall-clock: may be waiting, not CPU), ms per renewal')
    for k, v in blocking.most_common(10):
        print(f'  {ms(v)}  {k}')
    print('\ntop self, ms per renewal')
    for k, v in self_t.most_common(a.top):
        print(f'  {ms(v)}  {k}')
    print('\ntop inclusive (meshid and bundled modules), ms per renewal')
    for k, v in incl.most_common(a.top):
        print(f'  {ms(v)}  {k}')


if __name__ == '__main__':
    main()
