import { formatHelp } from '../../common/cli/args.js';
import { reportError, type CliIo } from '../../common/cli/output.js';
import { createLogger } from '../../common/log.js';
import { routeGrpcJsLog } from '../../common/grpc/grpc-js-log.js';
import { startNativeHeapTrimming } from '../../common/memory/native-heap.js';
import { setOldGenerationGrowth } from '../../common/memory/heap-growth.js';
import { MeshidError } from '../../common/errors.js';
import { MeshidAgent } from '../agent.js';
import { agentConfigFrom, RUN_FLAGS } from './run-config.js';
import { waitForStopSignal } from '../../common/cli/stop-signal.js';

/**
 * `meshid-agent run`: starts the agent and runs until SIGINT/SIGTERM (exit 0; SIGHUP is logged and ignored), or until it cannot work at all — the
 * first attestation was refused, or the server's certificate does not chain to --trust-bundle — (exit 1, with the
 * reason on stderr).
 */
export async function runAgentCommand(argv: readonly string[], io: CliIo): Promise<number> {
  let agent: MeshidAgent | undefined;
  let stopTrimming = (): void => undefined;
  try {
    const config = agentConfigFrom(argv, io.env);
    if (config === undefined) {
      io.stdout.write(formatHelp('meshid-agent run [flags]', 'Runs meshid-agent: attests to meshid-server and serves the Workload API and SDS on a Unix socket.', RUN_FLAGS));
      return 0;
    }
    if (config.insecureBootstrap) {
      io.stderr.write('WARNING: --insecure-bootstrap: the first attestation does not authenticate meshid-server. Use only for development.\n');
    }
    const log = createLogger({ name: 'meshid-agent', level: config.logLevel });
    // Process-wide, so here and not in MeshidAgent (tests run several agents in one process).
    routeGrpcJsLog(log);
    stopTrimming = startNativeHeapTrimming(log);
    setOldGenerationGrowth();
    agent = await MeshidAgent.start({ config, log });
    const running = agent;
    const stopSignal = waitForStopSignal(log, 'meshid-agent', io.env);
    const outcome = await new Promise<number>((resolve) => {
      void stopSignal.signal.then(() => resolve(0));
      running.done.catch((err: unknown) => {
        reportError(io, err);
        resolve(1);
      });
    });
    await running.stop();
    stopSignal.dispose();
    stopTrimming();
    return outcome;
  } catch (err) {
    reportError(io, err);
    if (!(err instanceof MeshidError) && io.env['MESHID_DEBUG']) io.stderr.write(`${(err as Error).stack}\n`);
    await agent?.stop().catch(() => undefined);
    stopTrimming();
    return 1;
  }
}
