import { formatHelp } from '../../common/cli/args.js';
import { reportError, type CliIo } from '../../common/cli/output.js';
import { formatDuration } from '../../common/duration.js';
import { checkUpstreamCa, checkUpstreamLifetime, loadUpstreamCa } from '../ca/upstream-ca.js';
import { loadServingCert } from '../federation/serving-cert-file.js';
import { RUN_FLAGS, serverConfigFrom } from './run-config.js';
import { tcpListeners } from '../config.js';
import { checkListenersResolved } from '../listener-clash.js';

/**
 * `meshid-server validate`: checks what `run` would start with, without starting (spire-server's `validate`): the
 * config file and flags, the TTL rules, an upstream CA's files (key match, chain, pathLen room; a lifetime too short
 * for a new root is a warning) and the bundle endpoint's https_web certificate files (key match; expired: a warning). What
 * only a start can tell (the data dir's state) is not checked. Exit 0 with a summary, or 1 with what to change.
 */
export async function validateServerCommand(argv: readonly string[], io: CliIo): Promise<number> {
  try {
    const config = serverConfigFrom(argv, io.env);
    if (config === undefined) {
      io.stdout.write(formatHelp('meshid-server validate [flags]', 'Checks the configuration `meshid-server run` would start with, without starting.', RUN_FLAGS));
      return 0;
    }
    await checkListenersResolved(tcpListeners({ bind_address: config.bindAddress, bundle_endpoint_address: config.bundleEndpointAddress }, config.healthChecks));
    if (config.upstreamCa !== undefined) {
      const upstream = loadUpstreamCa(config.upstreamCa);
      const now = Date.now();
      checkUpstreamCa(upstream, now, config.trustDomain);
      // run applies this only when it makes a new root from the files: a running server may restart on a CA with
      // less left, so it is a warning here, not a refusal.
      try {
        checkUpstreamLifetime(upstream, now, config.intermediateTtlMs);
      } catch (err) {
        io.stderr.write(`Warning: ${(err as Error).message}\n`);
      }
    }
    if (config.bundleEndpointWebCert !== undefined) {
      const served = loadServingCert(config.bundleEndpointWebCert);
      if (served.notAfter <= Date.now()) io.stderr.write(`Warning: the bundle endpoint certificate ${config.bundleEndpointWebCert.certFile} expired at ${new Date(served.notAfter).toISOString()}\n`);
    }
    io.stdout.write(
      `Configuration is valid: trust domain ${config.trustDomain}, datacenters ${config.datacenters.join(', ')}; ` +
        `X.509-SVIDs ${formatDuration(config.x509SvidTtlMs)} (max ${formatDuration(config.maxX509SvidTtlMs)}), ` +
        `JWT-SVIDs ${formatDuration(config.jwtSvidTtlMs)} (max ${formatDuration(config.maxJwtSvidTtlMs)}), ` +
        `intermediates ${formatDuration(config.intermediateTtlMs)}, ` +
        (config.upstreamCa !== undefined ? `upstream CA ${config.upstreamCa.certFile}` : `root ${formatDuration(config.rootTtlMs)}`) +
        (config.bundleEndpointAddress !== undefined ? `; bundle endpoint on ${config.bundleEndpointAddress} (${config.bundleEndpointWebCert ? 'https_web' : 'https_spiffe'})` : '') +
        (config.federatesWith.length > 0 ? `; federates with ${config.federatesWith.map((r) => `${r.trustDomain} (${r.profile})`).join(', ')}` : '') +
        '.\n',
    );
    return 0;
  } catch (err) {
    return reportError(io, err);
  }
}
