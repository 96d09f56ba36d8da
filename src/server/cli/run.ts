import { formatHelp } from '../../common/cli/args.js';
import { createLogger } from '../../common/log.js';
import { routeGrpcJsLog } from '../../common/grpc/grpc-js-log.js';
import { MeshidError } from '../../common/errors.js';
import { errorLine } from '../../common/cli/output.js';
import { RUN_FLAGS, serverConfigFrom } from './run-config.js';
import { MeshidServer } from '../server.js';
import { waitForStopSignal } from '../../common/cli/stop-signal.js';

/** `meshid-server run`: starts the server and runs until SIGINT/SIGTERM (SIGHUP is logged and ignored). */
export async function runServerCommand(argv: string[]): Promise<number> {
  let server: MeshidServer | undefined;
  try {
    const config = serverConfigFrom(argv, process.env);
    if (config === undefined) {
      process.stdout.write(formatHelp('meshid-server run [flags]', 'Runs meshid-server for one trust domain.', RUN_FLAGS));
      return 0;
    }
    const log = createLogger({ name: 'meshid-server', level: config.logLevel });
    routeGrpcJsLog(log);
    server = await MeshidServer.start({ config, log });
    const running = server;
    const stopSignal = waitForStopSignal(log, 'meshid-server');
    await stopSignal.signal;
    await running.stop();
    stopSignal.dispose();
    return 0;
  } catch (err) {
    process.stderr.write(`${errorLine(err)}\n`);
    if (!(err instanceof MeshidError) && process.env['MESHID_DEBUG']) process.stderr.write(`${(err as Error).stack}\n`);
    await server?.stop().catch(() => undefined);
    return 1;
  }
}
