#!/usr/bin/env python3
"""Sorts the agent's page faults of an `sds-push-probe` run with PROBE_TRACE_DIR by where they land and why.

    python3 bench/fault-sources.py <trace-dir> [--syms]

For every fault inside a renewal's window (windows.json), the mapping it hits (maps-<round>.txt: [heap] is glibc's
main arena; 256 KB-aligned anonymous mappings of a multiple of 256 KB are V8's pages; other anonymous ones glibc's
thread arenas and mmapped chunks, or V8's large objects) and the last thing that happened to its page before it in
the trace: released by madvise (malloc_trim: MADV_DONTNEED on [heap]), a fresh mmap, an mprotect that made it
writable (V8 committing a page), the brk growing, or nothing seen (first touch of a page mapped before the trace).
"""
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict

PAGE = 4096
trace = sys.argv[1]
show_syms = '--syms' in sys.argv
windows = json.load(open(f'{trace}/windows.json'))


def perf_lines(fields):
    out = subprocess.run(['perf', 'script', '-i', f'{trace}/perf.data', '--ns', *fields], capture_output=True, text=True).stdout
    return out.splitlines()


faults = []  # (time_ns, tid, addr, sym)
events = []  # (time_ns, kind, start, length, detail)
addr_lines = perf_lines(['-F', 'sw:tid,time,addr', '-F', 'trace:tid,time,event,trace'])
sym_lines = perf_lines(['-F', 'sw:ip,sym', '-F', 'trace:tid'])
for line, sym in zip(addr_lines, sym_lines):
    m = re.match(r'\s*(\d+)\s+(\d+)\.(\d+):\s+(.*)$', line)
    if m is None:
        continue
    tid, t = int(m.group(1)), int(m.group(2)) * 10**9 + int(m.group(3).ljust(9, '0')[:9])
    rest = m.group(4)
    if not rest.startswith('syscalls:'):
        faults.append((t, tid, int(rest.split()[0], 16), ' '.join(sym.split()[1:])))
        continue
    args = dict((k, int(v, 16)) for k, v in re.findall(r'(\w+): 0x([0-9a-f]+)', rest))
    if 'sys_enter_madvise' in rest:
        events.append((t, f"madvise({args['behavior']})", args['start'], args['len_in'], ''))
    elif 'sys_enter_munmap' in rest:
        events.append((t, 'munmap', args['addr'], args['len'], ''))
    elif 'sys_enter_mmap' in rest:
        events.append((t, f"mmap(prot {args['prot']}, len {args['len'] // 1024} KB)", args['addr'], args['len'], 'fixed' if args['flags'] & 0x10 else ''))
    elif 'sys_enter_mprotect' in rest:
        events.append((t, f"mprotect({args['prot']})", args['start'], args['len'], ''))
    elif 'sys_enter_brk' in rest:
        events.append((t, 'brk', args['brk'], 0, ''))


def load_maps(round_):
    regions = []
    for line in open(f'{trace}/maps-{round_}.txt'):
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split('-'))
        name = parts[5] if len(parts) > 5 else ''
        size = hi - lo
        if name == '[heap]':
            kind = 'glibc [heap]'
        elif name.startswith('['):
            kind = name
        elif name:
            kind = 'file'
        elif lo % (256 * 1024) == 0 and size % (256 * 1024) == 0 and size <= 64 * 1024 * 1024 and size != 64 * 1024 * 1024:
            kind = 'anon, 256 KB-aligned (V8 pages)'
        elif lo % (64 * 1024 * 1024) == 0:
            kind = 'anon, 64 MB-aligned (glibc thread arena)'
        else:
            kind = 'anon, other'
        regions.append((lo, hi, kind, parts[1]))
    return regions


def region_of(regions, addr):
    for lo, hi, kind, perms in regions:
        if lo <= addr < hi:
            return kind
    return 'unmapped at window end'


# Replay: the last event that touched each page before each fault. Huge ranges (reservations) stay in a short list.
page_state = {}
big = []
brk_top = None
items = sorted([(ev[0], 1, ev) for ev in events] + [(f[0], 0, f) for f in faults], key=lambda x: (x[0], x[1]))
by_round = defaultdict(Counter)
syms = defaultdict(Counter)
tids = defaultdict(Counter)
window_of = [(int(w['from']), int(w['to']), w['round']) for w in windows]
maps = {w['round']: load_maps(w['round']) for w in windows}
between = Counter()
released_in_window = defaultdict(Counter)


def window_at(t):
    for lo, hi, r in window_of:
        if lo <= t <= hi:
            return r
    return None


for t, is_event, it in items:
    if is_event:
        _, kind, start, length, detail = it
        r = window_at(t)
        if kind == 'brk':
            if brk_top is not None and start > brk_top:
                for p in range(brk_top // PAGE, (start + PAGE - 1) // PAGE):
                    page_state[p] = 'brk growth'
            if start != 0:
                brk_top = start
            continue
        label = kind + (' fixed' if detail else '')
        if kind.startswith('mprotect(0)') or kind.startswith('mmap(prot 0'):
            continue  # made inaccessible: cannot fault until made accessible again
        if kind.startswith('madvise(') and kind not in ('madvise(4)', 'madvise(8)'):
            continue  # not a release (e.g. MADV_DONTFORK)
        if r is not None and kind in ('madvise(4)', 'madvise(8)', 'munmap'):
            released_in_window[r][kind] += length // PAGE
        if length // PAGE > 65536:
            big.append((start, start + length, label))
            continue
        for p in range(start // PAGE, (start + length + PAGE - 1) // PAGE):
            page_state[p] = label
        continue
    _, tid, addr, sym = it
    p = addr // PAGE
    cause = page_state.get(p)
    if cause is None:
        for lo, hi, label in reversed(big):
            if lo <= addr < hi:
                cause = label
                break
    cause = cause or 'nothing seen (first touch)'
    page_state[p] = 'resident'
    r = window_at(t)
    if r is None:
        between[cause] += 1
        continue
    where = region_of(maps[r], addr)
    by_round[r][(where, cause)] += 1
    tids[tid][(where, cause)] += 1
    syms[(where, cause)][sym] += 1

total = Counter()
for r in sorted(by_round):
    c = by_round[r]
    n = sum(c.values())
    total.update(c)
    top = ', '.join(f'{k[0]} / {k[1]}: {v}' for k, v in c.most_common(4))
    rel = ', '.join(f'{k} {v} pages' for k, v in released_in_window[r].items())
    print(f'r{r}\t{n} faults\t{top}' + (f'\t[released in window: {rel}]' if rel else ''))
print('\nall windows:')
for k, v in total.most_common():
    print(f'{v:8d}  {k[0]}  /  {k[1]}')
    if show_syms:
        for s, n in syms[k].most_common(6):
            print(f'            {n:7d} {s}')
print('\nfaults in windows by thread (the lowest tid is the main thread):', {t: sum(c.values()) for t, c in tids.items()})
print('\nbetween windows:', sum(between.values()), dict(between.most_common(5)))
