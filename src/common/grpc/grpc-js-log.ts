import { format } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';

/**
 * What grpc-js logs and then also throws, which meshid reports in its own words: a bind that failed ("No address
 * added out of total 1 resolved") becomes the FailedPrecondition of listen-failure.ts naming the setting. Kept at
 * debug level, so an operator reads that one message rather than grpc-js's sentence first.
 */
const REPORTED_BY_MESHID: readonly RegExp[] = [/^No address added out of total \d+ resolved\b/];

/**
 * Sends grpc-js's own log lines, which it otherwise writes to stderr as bare "E …" lines, into the daemon's log as
 * subsystem grpc-js, with its format and level. grpc-js's own gate (GRPC_VERBOSITY, default ERROR) still decides what
 * it emits. grpc-js has one logger per process, so only the binaries' `run` commands call this, never code the tests
 * load in-process.
 */
export function routeGrpcJsLog(log: Logger): void {
  const grpcLog = log.child({ subsystem: 'grpc-js' });
  grpc.setLogger({
    error: (message?: unknown, ...params: unknown[]) => {
      const text = format(message, ...params);
      if (REPORTED_BY_MESHID.some((p) => p.test(text))) grpcLog.debug(text);
      else grpcLog.error(text);
    },
    info: (message?: unknown, ...params: unknown[]) => grpcLog.info(format(message, ...params)),
    debug: (message?: unknown, ...params: unknown[]) => grpcLog.debug(format(message, ...params)),
  });
}

/**
 * The admin and Workload API client commands (everything but `run`) have no log: grpc-js would write its own "E …"
 * lines (a response header it refuses, say) onto their stderr beside the one `Error: …` line meshid prints for the
 * same failure, which is what an operator or a script reads. Those lines are dropped, unless the operator asked
 * grpc-js for its diagnostics (GRPC_VERBOSITY or GRPC_NODE_VERBOSITY set): then grpc-js writes them as it would.
 * Called once by each binary's entry point; `run` replaces it with routeGrpcJsLog.
 */
export function quietGrpcJsLogForCli(env: NodeJS.ProcessEnv): void {
  if (env['GRPC_NODE_VERBOSITY'] || env['GRPC_VERBOSITY']) return;
  const drop = (): void => undefined;
  grpc.setLogger({ error: drop, info: drop, debug: drop });
}
