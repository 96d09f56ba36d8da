import net from 'node:net';
import { invalidArgument } from './errors.js';
import { looksLikeCredential, quotedUnlessCredential } from './cli/credential-like.js';

/**
 * What an address is for: a listener (port 0 is a free port the kernel picks, an empty host every IPv4 address, an
 * IPv6 zone names the interface to bind) or a server to dial (a host and a real port are needed).
 */
export type HostPortUse = 'listen' | 'dial';

/** One DNS label: letters, digits, "-" and "_" (SRV-style names), neither starting nor ending with "-". */
const LABEL = '[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?';
const HOST_NAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);

/**
 * "host:port" or "[v6]:port" into its parts, the one parser of every HOST:PORT setting (the server's listeners, the
 * agent's server address), so that both binaries accept the same spellings. The host is checked here, not left to
 * the resolver: "a b:1" or "[zz]:1" would pass `validate` (which resolves nothing) and fail at start. `setting`
 * names the input in the error.
 */
export function parseHostPort(address: string, setting: string, use: HostPortUse = 'listen'): { host: string; port: number } {
  const example = use === 'listen' ? '0.0.0.0:8081 or [::]:8081' : 'meshid-server.internal:8081 or [::1]:8081';
  const colon = address.lastIndexOf(':');
  const hostPart = colon === -1 ? address : address.slice(0, colon);
  // A join token or JWT-SVID passed to the wrong flag, with a port after it or not, is not echoed into scrollback and
  // CI logs.
  const shown = quotedUnlessCredential(looksLikeCredential(hostPart) ? hostPart : address);
  const refuse = (why: string): Error => invalidArgument(`${setting} ${shown} is not HOST:PORT: ${why} (e.g. ${example})`);
  if (colon === -1) throw refuse('there is no port');
  if (looksLikeCredential(hostPart)) throw refuse('the host must be a host name or an IP address');
  const portText = address.slice(colon + 1);
  const lowest = use === 'listen' ? 0 : 1;
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < lowest || Number(portText) > 65_535) {
    throw refuse(`the port must be a number from ${lowest} to 65535${use === 'listen' ? ' (0: a free port)' : ''}`);
  }
  const port = Number(portText);
  if (hostPart.startsWith('[') || hostPart.endsWith(']')) {
    const inner = hostPart.slice(1, -1);
    // A zone (fe80::1%eth0) binds a link-local listener; dialed, grpc-js would need it percent-encoded in a URI.
    if (!hostPart.startsWith('[') || !hostPart.endsWith(']') || !net.isIPv6(inner) || (use === 'dial' && inner.includes('%'))) {
      throw refuse(`"${hostPart}" is not an IPv6 address in brackets`);
    }
    return { host: inner, port };
  }
  if (hostPart.includes(':')) throw refuse('an IPv6 address goes in brackets, as in [::1]:8081');
  if (hostPart === '') {
    if (use === 'dial') throw refuse('the host is missing');
    return { host: '0.0.0.0', port };
  }
  if (!isHostNameOrIpv4(hostPart)) throw refuse(`"${hostPart}" is neither a host name nor an IP address`);
  return { host: hostPart, port };
}

/**
 * Whether a host outside brackets is one every HOST:PORT setting takes: a host name or an IPv4 address. Shared with
 * settings that take the host alone (health_checks.bind_address), so that they accept what their listener's address
 * does and refuse it under their own name.
 */
export function isHostNameOrIpv4(host: string): boolean {
  // All digits and dots, yet no IPv4 address ("10.1.2", "300.1.1.1"): the resolver would read it as some other address.
  if (/^[\d.]+$/.test(host)) return net.isIPv4(host);
  return HOST_NAME.test(host) && host.length <= 253;
}
