import { failedPrecondition } from '../common/errors.js';
import { trustDomainOfRoots } from './client/trust-bundle-file.js';
import type { AgentConfig } from './config.js';
import type { StoredIdentity, StoredState } from './storage/stored-state.js';

/**
 * The trust domain from everything that names one: the setting (flag or config file), the stored identity and state,
 * the trust bundle's root URI SAN. They must agree (a data dir never changes trust domain). Undefined only before an insecure bootstrap.
 * `meshid-agent validate` asks it too, without the data dir's sources, so that it prints the line run would.
 */
export function resolveTrustDomain(
  config: Pick<AgentConfig, 'trustDomain' | 'trustDomainSetting' | 'dataDir'>,
  stored: StoredIdentity | undefined,
  state: StoredState | undefined,
  fileRoots: readonly Buffer[] | undefined,
): string | undefined {
  const sources: Array<[string, string | undefined]> = [
    [config.trustDomainSetting, config.trustDomain],
    [`the agent SVID in ${config.dataDir}`, stored?.trustDomain],
    [`the state in ${config.dataDir}`, state?.trustDomain],
    ['the trust bundle', fileRoots === undefined ? undefined : trustDomainOfRoots(fileRoots)],
  ];
  const named = sources.filter((s): s is [string, string] => s[1] !== undefined);
  const first = named[0];
  for (const [source, td] of named) {
    if (td !== first![1]) {
      throw failedPrecondition(`${first![0]} names trust domain "${first![1]}" but ${source} names "${td}": use a data dir and trust bundle of one trust domain`);
    }
  }
  if (first === undefined && fileRoots !== undefined) {
    // An operator with a config file keeps the agent's settings there: sent to a flag only, the file would not say it.
    const fix = config.trustDomainSetting === '--trust-domain' ? 'pass --trust-domain' : `set ${config.trustDomainSetting} (or pass --trust-domain)`;
    throw failedPrecondition(`the trust bundle roots carry no spiffe:// URI SAN: ${fix}`);
  }
  return first?.[1];
}
