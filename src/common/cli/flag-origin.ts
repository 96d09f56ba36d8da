import { MeshidError } from '../errors.js';

/**
 * Runs a config compiler whose errors name config keys (`join_token_ttl (8d) is longer …`), and adds to such an error
 * the flag each named key was given as, so an operator who never wrote a config file can find what to change.
 * `fromFlags` maps the keys whose values came from the command line to their flags; a message that names the flag
 * already is left as it is.
 */
export function namingFlags<T>(fromFlags: ReadonlyMap<string, string>, compile: () => T): T {
  try {
    return compile();
  } catch (err) {
    if (!(err instanceof MeshidError)) throw err;
    const named = [...fromFlags]
      .filter(([, flag]) => !err.message.includes(`--${flag}`))
      .map(([key, flag]) => ({ key, flag, at: err.message.search(new RegExp(`\\b${key}\\b`)) }))
      .filter(({ at }) => at >= 0)
      .sort((a, b) => a.at - b.at);
    if (named.length === 0) throw err;
    const origins = named.map(({ key, flag }) => `${key} was given as --${flag}`).join(', ');
    throw new MeshidError(err.code, `${err.message} (${origins})`, { cause: err, data: err.data });
  }
}
