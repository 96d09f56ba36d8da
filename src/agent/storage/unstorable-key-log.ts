import type { Logger } from '../../common/log.js';
import type { UnstorableKey } from './state-documents.js';

/** Distinct unstorable keys remembered as logged; past this the rest get one line together, and the memory never grows. */
const MAX_UNSTORABLE_LOGGED = 64;

/**
 * Logs the bundle keys a save leaves out of the agent state (writableBundle): each once, by trust domain and key, not
 * at every save, and a bounded number of them.
 */
export class UnstorableKeyLog {
  /** Bundle keys already logged, by trust domain and key. */
  private readonly logged = new Set<string>();
  private overflowLogged = false;

  constructor(private readonly log: Logger) {}

  readonly report = (key: UnstorableKey): void => {
    const id = `${key.trustDomain}\0${key.id}`;
    if (this.logged.has(id)) return;
    if (this.logged.size >= MAX_UNSTORABLE_LOGGED) {
      // Starting over would log every one of them again at each save; past the cap the rest are named once, together.
      if (this.overflowLogged) return;
      this.overflowLogged = true;
      this.log.error(
        { logged: MAX_UNSTORABLE_LOGGED },
        'more bundle keys without a SPIFFE bundle JWK of meshid\'s are left out of the saved agent state than are logged one by one; the others are not logged',
      );
      return;
    }
    this.logged.add(id);
    this.log.error(
      { trustDomain: key.trustDomain, problem: key.problem },
      'a bundle key has no SPIFFE bundle JWK of meshid\'s and is left out of the saved agent state (the rest is saved): ' +
        'after a restart the agent trusts it again only once the server sends it',
    );
  };
}
