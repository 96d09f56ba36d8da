/**
 * `npm run bench`: every benchmark, each bounded in time, listening only on loopback or Unix sockets.
 * BENCH_SECONDS sets the time per measurement (default 4).
 */
import os from 'node:os';
import { benchIssuance } from './issuance.js';
import { benchServerMemory } from './server-memory.js';
import { benchWorkload } from './workload-latency.js';
import { benchSdsPush } from './sds-push.js';
import { report } from './report.js';

const seconds = Number(process.env['BENCH_SECONDS'] ?? 4);
process.stdout.write(`meshid bench — node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB\n`);
report(await benchIssuance(seconds));
report(await benchServerMemory());
report(await benchWorkload(seconds));
report(await benchSdsPush());
