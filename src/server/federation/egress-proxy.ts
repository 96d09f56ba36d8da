import net from 'node:net';
import url from 'node:url';

/**
 * The proxy bundle endpoints are fetched through, read from the environment as Go's net/http reads it, so a
 * spire-server's HTTPS_PROXY and NO_PROXY work unchanged for meshid-server: HTTPS_PROXY (or https_proxy) names the
 * proxy, an http:// or https:// URL (a bare host:port is http://), and NO_PROXY (or no_proxy) the hosts fetched
 * directly. localhost and loopback addresses are never proxied. Bundle endpoint URLs are https only, so HTTP_PROXY
 * plays no part.
 */
export interface EgressProxy {
  /** The proxy, or why HTTPS_PROXY names none meshid can use: every proxied fetch then fails with that reason. */
  readonly proxy: URL | Error;
  readonly bypass: NoProxy;
}

/** The environment variables read, upper case first, as Go does. */
export function egressProxyFromEnv(env: NodeJS.ProcessEnv): EgressProxy | undefined {
  const value = firstSet(env, 'HTTPS_PROXY', 'https_proxy');
  if (value === undefined) return undefined;
  return { proxy: parseProxyUrl(value), bypass: parseNoProxy(firstSet(env, 'NO_PROXY', 'no_proxy') ?? '') };
}

/** The proxy to reach host:port through, or undefined for a direct connection. */
export function proxyFor(egress: EgressProxy | undefined, host: string, port: number): URL | Error | undefined {
  if (egress === undefined) return undefined;
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (bare === 'localhost' || isLoopback(bare)) return undefined;
  return egress.bypass.matches(bare, port) ? undefined : egress.proxy;
}

/** A proxy URL for messages and logs: its user name stays, the password does not. */
export function withoutPassword(url: URL): string {
  const user = url.username === '' ? '' : `${url.username}${url.password === '' ? '' : ':***'}@`;
  return `${url.protocol}//${user}${url.host}`;
}

function firstSet(env: NodeJS.ProcessEnv, ...names: string[]): string | undefined {
  for (const name of names) {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
  }
  return undefined;
}

function parseProxyUrl(value: string): URL | Error {
  let url: URL;
  try {
    // Go reads "proxy:3128" (no scheme) as http://proxy:3128; so does meshid.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    return new Error('HTTPS_PROXY is not a URL: give it as http://host:port');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return new Error(`HTTPS_PROXY names a ${url.protocol.slice(0, -1)} proxy; meshid-server reaches bundle endpoints through http:// or https:// proxies only`);
  }
  try {
    // Decoded for Proxy-Authorization at every CONNECT; checked once here, where the message can say what is wrong.
    decodeURIComponent(url.username);
    decodeURIComponent(url.password);
  } catch {
    return new Error('HTTPS_PROXY has a user name or password with a malformed %-escape: encode "%" as %25');
  }
  return url;
}

function isLoopback(host: string): boolean {
  if (net.isIPv4(host)) return host.startsWith('127.');
  if (net.isIPv6(host)) return host === '::1' || /^::ffff:127\./i.test(host);
  return false;
}

/** NO_PROXY's rules, as Go's httpproxy reads them. */
export interface NoProxy {
  matches(host: string, port: number): boolean;
}

/**
 * Comma-separated: `*` bypasses the proxy for every host; an IP address or CIDR block matches addresses; a domain
 * matches itself and its subdomains, and with a leading "." (or "*.") its subdomains only; any of them may carry
 * a :port, which must then match too. As in Go, the port is compared as written: one that is not a port number
 * (`corp.example:https`, a typo) matches no port, so that entry never exempts a host, where reading it as "every
 * port" would send traffic around the proxy that spire-server, reading the same NO_PROXY, sends through it. An entry
 * with a port but no host (`:8443`) is ignored, as Go ignores it.
 */
function parseNoProxy(value: string): NoProxy {
  const rules: Array<(host: string, port: number) => boolean> = [];
  for (const raw of value.split(',')) {
    const entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return { matches: () => true };
    const cidr = parseCidr(entry);
    if (cidr !== undefined) {
      rules.push((host) => net.isIP(host) !== 0 && cidr.check(host, familyOf(host)));
      continue;
    }
    const split = splitPort(entry);
    if (split === undefined) continue;
    const { host, port } = split;
    const portMatches = (p: number): boolean => port === undefined || port === '' || port === String(p);
    if (net.isIP(host) !== 0) {
      // By value, as Go's net.IP.Equal: fd00:0::1 is fd00::1, and 10.0.0.1 is ::ffff:10.0.0.1.
      const address = new net.BlockList();
      address.addAddress(host, familyOf(host));
      rules.push((h, p) => net.isIP(h) !== 0 && address.check(h, familyOf(h)) && portMatches(p));
      continue;
    }
    // Bundle endpoint URLs reach here with their host in ASCII (punycode, the URL parser's); Go converts the entry too.
    const written = host.startsWith('*.') ? host.slice(1) : host;
    const domain = /^[\x00-\x7f]*$/.test(written) ? written : url.domainToASCII(written) || written;
    const subdomainsOnly = domain.startsWith('.');
    const suffix = subdomainsOnly ? domain : `.${domain}`;
    rules.push((h, p) => (h.endsWith(suffix) || (!subdomainsOnly && h === domain)) && portMatches(p));
  }
  return { matches: (host, port) => rules.some((rule) => rule(host, port)) };
}

function familyOf(address: string): 'ipv4' | 'ipv6' {
  return net.isIPv6(address) ? 'ipv6' : 'ipv4';
}

function parseCidr(entry: string): net.BlockList | undefined {
  const slash = entry.lastIndexOf('/');
  if (slash < 0) return undefined;
  const address = entry.slice(0, slash);
  const prefix = Number(entry.slice(slash + 1));
  const family = net.isIPv4(address) ? 'ipv4' : net.isIPv6(address) ? 'ipv6' : undefined;
  if (family === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 'ipv4' ? 32 : 128)) return undefined;
  const list = new net.BlockList();
  list.addSubnet(address, prefix, family);
  return list;
}

/**
 * The host and the port as written (undefined: none given; "": a colon and nothing after it, which Go also reads as
 * every port), or undefined for an entry Go ignores: a port with no host.
 */
function splitPort(entry: string): { host: string; port: string | undefined } | undefined {
  const bracketed = /^\[([^[\]]+)\](?::([^[\]:]*))?$/.exec(entry);
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] };
  // One colon: host:port. More: a bare IPv6 address.
  const colon = entry.indexOf(':');
  if (colon < 0 || entry.indexOf(':', colon + 1) >= 0) return { host: entry, port: undefined };
  if (colon === 0) return undefined;
  return { host: entry.slice(0, colon), port: entry.slice(colon + 1) };
}
