import { performance } from 'node:perf_hooks';
import { systemClock } from '../../common/clock.js';
import { formatDuration } from '../../common/duration.js';
import { invalidArgument, unavailable } from '../../common/errors.js';
import { runCommand, type Command } from '../../common/cli/command.js';
import { MAX_TIMEOUT_FLAG_MS } from '../../common/cli/args.js';
import { OUTPUT_FLAG, outputFormat, toJsonValue, type CliIo } from '../../common/cli/output.js';
import { SOCKET_PATH_FLAG, withWorkloadClient } from './flags.js';
import { describeX509SvidResponse, x509SvidResponseJson } from './svid-output.js';

function parseCount(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(value)) throw invalidArgument(`flag --count must be a positive whole number, got "${value}"`);
  return Number(value);
}

const watch: Command = {
  name: 'watch',
  summary: 'Prints every X509SVIDResponse the agent sends (FetchX509SVID stream) until interrupted or --count is reached.',
  flags: [
    { name: 'count', type: 'string', valueName: 'N', description: 'Stop after N messages (default: run until interrupted)' },
    SOCKET_PATH_FLAG,
    {
      name: 'timeout',
      type: 'duration',
      maxMs: MAX_TIMEOUT_FLAG_MS,
      description: 'Give up if the first message has not arrived after this long (default: wait; updates are never timed out)',
    },
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const count = parseCount(args.string('count'));
    const json = outputFormat(args) === 'json';
    await withWorkloadClient(args, io.env, async (client) => {
      // No deadline: a watch is meant to stay open; the stream ending with an error is reported and ends the command.
      const stream = client.watchX509Svids();
      // Without a deadline, another program's socket that greets and stays open would hold the watch forever.
      const stalled = client.stalledConnectionWatch();
      let foreign: unknown;
      stalled.foreign.catch((err: unknown) => {
        foreign = err;
        stream.cancel();
      });
      const firstTimeoutMs = args.durationMs('timeout');
      let timedOut = false;
      const firstTimer =
        firstTimeoutMs === undefined
          ? undefined
          : (io.clock ?? systemClock).setTimer(() => {
              timedOut = true;
              stream.cancel();
            }, firstTimeoutMs);
      let received = 0;
      let since = performance.now();
      try {
        for await (const res of stream) {
          firstTimer?.cancel();
          stalled.stop();
          received++;
          if (json) {
            // One compact document per line, so a reader can parse the stream line by line; each in fetch x509's
            // shape, so that `.svids[0].hint` or `.crl` read the same from either command.
            io.stdout.write(JSON.stringify(toJsonValue(x509SvidResponseJson(res))) + '\n');
          } else {
            const n = res.svids.length;
            io.stdout.write(`Received ${n} svid${n === 1 ? '' : 's'} after ${(performance.now() - since).toFixed(3)}ms\n\n`);
            io.stdout.write(describeX509SvidResponse(res) + '\n');
          }
          since = performance.now();
          if (count !== undefined && received >= count) break;
        }
      } finally {
        firstTimer?.cancel();
        stalled.stop();
        stream.cancel();
      }
      if (foreign !== undefined) throw foreign;
      if (timedOut && received === 0) throw unavailable(`no X509-SVID message from ${client.socketPath} within ${formatDuration(firstTimeoutMs ?? 0)}`);
    });
    return 0;
  },
};

/** `meshid-agent api watch [--count N]`. */
export async function apiWatchCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runCommand('meshid-agent api watch', watch, argv, io);
}
