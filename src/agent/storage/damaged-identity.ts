import { failedPrecondition, type MeshidError } from '../../common/errors.js';
import { NEW_JOIN_TOKEN } from '../join-token-ways.js';

/** An agent-svid.json that cannot be decoded (a disk fault or an edit: the agent writes it atomically), left in place. */
export class DamagedIdentity {
  constructor(
    /** The file's path. */
    readonly file: string,
    /** Why it cannot be used, as the decoder said. */
    readonly reason: string,
    readonly cause: unknown,
  ) {}

  /** Why the agent cannot start on it, and what to do: attest again with a new join token. */
  refusal(): MeshidError {
    return failedPrecondition(
      `${this.file} cannot be used (${this.reason}): start the agent with ${NEW_JOIN_TOKEN}, and it sets the file aside and attests again`,
      this.cause,
    );
  }
}
