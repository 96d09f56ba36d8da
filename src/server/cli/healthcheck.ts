import { unavailable } from '../../common/errors.js';
import { runCommand, SHALLOW_FLAG, VERBOSE_FLAG, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, adminSocketPath, withAdminClient } from './admin-client.js';

const healthcheck: Command = {
  name: 'healthcheck',
  summary: 'Asks the server whether it is serving (gRPC health check on the admin socket); exit 0 when healthy.',
  flags: [ADMIN_SOCKET_FLAG, OUTPUT_FLAG, SHALLOW_FLAG, VERBOSE_FLAG],
  async run(args, io) {
    if (args.bool('verbose') === true) io.stderr.write(`Checking meshid-server on ${adminSocketPath(args, io.env)}...\n`);
    const res = await withAdminClient(args, io.env, (client) => client.call('Health', 'Check', { service: '' }));
    // proto3 leaves the zero enum value (UNKNOWN) out of the decoded message.
    const status = res.status ?? 'UNKNOWN';
    if (status !== 'SERVING') throw unavailable(`server is not healthy: status ${status}`);
    io.stdout.write(outputFormat(args) === 'json' ? renderJson({ status }) : 'Server is healthy.\n');
    return 0;
  },
};

/** `meshid-server healthcheck`: grpc.health.v1.Health/Check on the admin socket. */
export async function healthcheckCommand(argv: string[], io: CliIo): Promise<number> {
  return runCommand('meshid-server healthcheck', healthcheck, argv, io);
}
