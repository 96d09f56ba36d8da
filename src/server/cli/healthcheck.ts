import { isMeshidError, unavailable } from '../../common/errors.js';
import { servedBySomethingElse } from '../../common/cli/wrong-daemon.js';
import { runCommand, SHALLOW_FLAG, VERBOSE_FLAG, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { MAX_TIMEOUT_FLAG_MS, type FlagSpec } from '../../common/cli/args.js';
import { ADMIN_HEALTH_SERVICE, ADMIN_SOCKET_DAEMON, ADMIN_SOCKET_FLAG, adminSocketPath, DEFAULT_DEADLINE_MS, withAdminClient } from './admin-client.js';

/** `--timeout 5s`, as meshid-agent healthcheck's: a probe sets its own budget instead of the fixed 30 s of other admin commands. */
const TIMEOUT_FLAG: FlagSpec = Object.freeze({
  name: 'timeout',
  type: 'duration',
  maxMs: MAX_TIMEOUT_FLAG_MS,
  description: `How long to wait for the server (default ${DEFAULT_DEADLINE_MS / 1000}s)`,
});

const healthcheck: Command = {
  name: 'healthcheck',
  summary: 'Asks the server whether it is serving (gRPC health check of its admin API on the admin socket); exit 0 when healthy.',
  flags: [ADMIN_SOCKET_FLAG, TIMEOUT_FLAG, OUTPUT_FLAG, SHALLOW_FLAG, VERBOSE_FLAG],
  async run(args, io) {
    const socketPath = adminSocketPath(args, io.env);
    if (args.bool('verbose') === true) io.stderr.write(`Checking meshid-server on ${socketPath}...\n`);
    // The admin API's own health status, not the whole server's (""): any gRPC server answers "" SERVING, an agent's
    // socket included, and only meshid-server's admin socket knows this name.
    const res = await withAdminClient(args, io.env, (client) => client.call('Health', 'Check', { service: ADMIN_HEALTH_SERVICE }), {
      ms: args.durationMs(TIMEOUT_FLAG.name),
      flag: '--timeout',
    }).catch((err: unknown) => {
      throw isMeshidError(err, 'not_found') ? servedBySomethingElse(socketPath, ADMIN_SOCKET_DAEMON, err) : err;
    });
    // proto3 leaves the zero enum value (UNKNOWN) out of the decoded message.
    const status = res.status ?? 'UNKNOWN';
    if (status !== 'SERVING') throw unavailable(`server is not healthy: status ${status} (it is stopping, or its datastore cannot be read: the server log says which)`);
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ status }) : 'Server is healthy.\n');
    return 0;
  },
};

/** `meshid-server healthcheck`: grpc.health.v1.Health/Check of meshid.admin.v1.Entries on the admin socket. */
export async function healthcheckCommand(argv: string[], io: CliIo): Promise<number> {
  return runCommand('meshid-server healthcheck', healthcheck, argv, io);
}
