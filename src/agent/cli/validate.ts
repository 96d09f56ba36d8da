import { formatHelp } from '../../common/cli/args.js';
import { reportError, type CliIo } from '../../common/cli/output.js';
import { readTrustBundleFile } from '../client/trust-bundle-file.js';
import { resolveTrustDomain } from '../resolve-trust-domain.js';
import { agentConfigFrom, RUN_FLAGS } from './run-config.js';

/**
 * `meshid-agent validate`: checks what `run` would start with, without starting (spire-agent's `validate`): the
 * config file and flags, and the trust bundle file (CA certificates, one trust domain, agreeing with
 * --trust-domain). The data dir and the server are not looked at. Exit 0 with a summary, or 1 with what to change.
 */
export async function validateAgentCommand(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const config = agentConfigFrom(argv, io.env);
    if (config === undefined) {
      io.stdout.write(formatHelp('meshid-agent validate [flags]', 'Checks the configuration `meshid-agent run` would start with, without starting.', RUN_FLAGS));
      return 0;
    }
    // The check run makes (resolveTrustDomain), without the data dir, which is not looked at: the same line as run's.
    const fileRoots = config.trustBundlePath === undefined ? undefined : readTrustBundleFile(config.trustBundlePath);
    const trustDomain = resolveTrustDomain(config, undefined, undefined, fileRoots);
    io.stdout.write(
      `Configuration is valid: server ${config.serverAddress}, ` +
        // Not looked at, so not promised: only an agent that attested before has the trust domain there.
        `trust domain ${trustDomain ?? '(from the data dir, if the agent attested before; a first start needs --trust-bundle)'}, ` +
        `socket ${config.socketPath}, data dir ${config.dataDir}.\n`,
    );
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
