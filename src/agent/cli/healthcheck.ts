import { isMeshidError, unavailable } from '../../common/errors.js';
import { runCommand, SHALLOW_FLAG, VERBOSE_FLAG, type Command } from '../../common/cli/command.js';
import { resolveSocketPath } from './endpoint-socket.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { SOCKET_PATH_FLAG, TIMEOUT_FLAG, withWorkloadClient } from './flags.js';
import { WORKLOAD_SERVICE_NAME } from '../workload/handler.js';
import { SDS_SERVICE_NAME } from '../sds/handler.js';

const healthcheck: Command = {
  name: 'healthcheck',
  summary: "Asks the agent whether it is serving (grpc.health.v1 Check of SpiffeWorkloadAPI, or of SDS where only SDS is served, on its socket); exit 0 when healthy.",
  flags: [SOCKET_PATH_FLAG, TIMEOUT_FLAG, OUTPUT_FLAG, SHALLOW_FLAG, VERBOSE_FLAG],
  async run(args, io) {
    if (args.bool('verbose') === true) io.stderr.write(`Checking meshid-agent on ${resolveSocketPath(args.string(SOCKET_PATH_FLAG.name), io.env)}...\n`);
    // The Workload API's own status, not the whole server's (""): any gRPC server answers "", meshid-server's
    // admin socket included; only an agent's socket knows this name, or SDS's alone with disable_workload_api.
    const status = await withWorkloadClient(args, io.env, (client) => client.health(WORKLOAD_SERVICE_NAME, SDS_SERVICE_NAME)).catch((err: unknown) => {
      // This probe is a connection of its uid like any workload's: pointed at the listener that is not.
      if (isMeshidError(err, 'unavailable') && err.message.includes('max_connections_per_uid')) {
        throw unavailable(`${err.message}; a probe that must not share the workload socket's per-uid limits can ask the agent's health_checks listener instead (README)`, err);
      }
      throw err;
    });
    if (status !== 'SERVING') {
      throw unavailable(`agent is not healthy: status ${status} (it has nothing to serve yet, was banned, or is stopping: its log, or the health_checks listener's ready path, says which)`);
    }
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ status }) : 'Agent is healthy.\n');
    return 0;
  },
};

/** `meshid-agent healthcheck`. */
export async function healthcheckCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runCommand('meshid-agent healthcheck', healthcheck, argv, io);
}
