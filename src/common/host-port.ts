import { invalidArgument } from './errors.js';

/** "host:port" or "[v6]:port" into its parts (an empty host is 0.0.0.0); `setting` names the input in the error. */
export function parseHostPort(address: string, setting: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(address);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65_535) throw invalidArgument(`${setting} "${address}" is not HOST:PORT (e.g. 0.0.0.0:8443)`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
