import net from 'node:net';
import { invalidArgument } from '../errors.js';
import type { ConfigKeyType } from '../config-file.js';
import { isHostNameOrIpv4 } from '../host-port.js';

/**
 * The `health_checks` block of meshid-agent's and meshid-server's config files, with SPIRE's names and defaults
 * (spire-agent and spire-server share it): an HTTP listener of its own answering liveness and readiness probes, off
 * unless `listener_enabled` is true.
 */
export interface RawHealthChecksConfig {
  listener_enabled?: boolean;
  bind_address?: string;
  /** A string in SPIRE's HCL ("80"); a number is taken too. */
  bind_port?: string | number;
  live_path?: string;
  ready_path?: string;
}

export const HEALTH_CHECKS_KEYS: Readonly<Record<keyof RawHealthChecksConfig, ConfigKeyType>> = {
  listener_enabled: 'boolean',
  bind_address: 'string',
  bind_port: 'string|number',
  live_path: 'string',
  ready_path: 'string',
};

/** The listener as it is started: present only when enabled. */
export interface HealthChecksConfig {
  /** An IP address or a host name, as node:net listens on it (a name: its first address). */
  readonly bindAddress: string;
  /** 0 takes a free port, logged at start. */
  readonly bindPort: number;
  readonly livePath: string;
  readonly readyPath: string;
}

const DEFAULTS = { bindAddress: 'localhost', bindPort: 80, livePath: '/live', readyPath: '/ready' } as const;
/** A path a probe can name: no query, fragment or spaces, which an HTTP client would cut off or encode. */
const PATH = /^\/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,255}$/;

/**
 * Validates the block (also when the listener is off: a mistake shows before the day it is switched on) and compiles
 * it; undefined when the listener is off. Errors name the key, the value and what to write instead.
 */
export function compileHealthChecks(raw: RawHealthChecksConfig | undefined): HealthChecksConfig | undefined {
  if (raw === undefined) return undefined;
  const bindAddress = checkBindAddress(raw.bind_address ?? DEFAULTS.bindAddress);
  const bindPort = checkBindPort(raw.bind_port ?? DEFAULTS.bindPort);
  const livePath = checkPath(raw.live_path ?? DEFAULTS.livePath, 'live_path', DEFAULTS.livePath);
  const readyPath = checkPath(raw.ready_path ?? DEFAULTS.readyPath, 'ready_path', DEFAULTS.readyPath);
  if (livePath === readyPath) {
    throw invalidArgument(`health_checks.live_path and health_checks.ready_path are both "${livePath}": give each a path of its own (defaults /live and /ready)`);
  }
  if (raw.listener_enabled !== true) return undefined;
  return Object.freeze({ bindAddress, bindPort, livePath, readyPath });
}

/** host:port of the listener as logged and in errors, IPv6 in brackets. */
export function healthListenerAddress(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function checkBindAddress(value: string): string {
  // "[::1]" as an operator writes it in a URL: the listener takes the address alone.
  const host = /^\[(.*)\]$/.exec(value)?.[1] ?? value;
  if (net.isIP(host) !== 0) return host;
  if (/^[^:]+:\d+$/.test(host)) {
    throw invalidArgument(`health_checks.bind_address "${value}" holds a port: give the address alone and the port in health_checks.bind_port`);
  }
  // The rule of the listener's HOST:PORT (host-port.ts): what it would refuse is refused here, under this setting's name.
  if (!isHostNameOrIpv4(host)) {
    throw invalidArgument(`health_checks.bind_address "${value}" is not an IP address or host name: use e.g. "127.0.0.1", "0.0.0.0" (every IPv4 address) or "localhost"`);
  }
  return host;
}

function checkBindPort(value: string | number): number {
  const port = typeof value === 'number' ? value : /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw invalidArgument(`health_checks.bind_port ${JSON.stringify(value)} is not a port number: use 1 to 65535 (e.g. "8080"), or 0 for a free port named in the log`);
  }
  return port;
}

function checkPath(value: string, key: 'live_path' | 'ready_path', example: string): string {
  if (!value.startsWith('/')) throw invalidArgument(`health_checks.${key} "${value}" must start with "/" (e.g. "${example}")`);
  if (!PATH.test(value)) {
    throw invalidArgument(`health_checks.${key} "${value}" is not a plain URL path: use at most 256 characters without spaces, "?" or "#" (e.g. "${example}")`);
  }
  return value;
}
