import { invalidArgument } from '../../common/errors.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import { checkSpiffeId, spiffeIdFlag, ttlFlag } from './flags.js';
import { int64, spireSpiffeId } from './spire-output.js';
import { parseJwtSvid } from '../../common/jwt/jwt-svid.js';

/** The iat claim of a JWT-SVID the server just signed; 0 without one. */
function issuedAt(token: string): number {
  try {
    const iat = parseJwtSvid(token).claims['iat'];
    return typeof iat === 'number' ? iat : 0;
  } catch {
    return 0;
  }
}

const mint: Command = {
  name: 'mint',
  summary: 'Mints a JWT-SVID for tooling and prints the token.',
  flags: [
    spiffeIdFlag('SPIFFE ID of the token (its sub claim); required'),
    { name: 'audience', aliases: ['aud'], type: 'strings', valueName: 'AUD', description: 'Audience (aud claim); at least one' },
    ttlFlag('Lifetime of the token, in seconds or like 5m, 1h; 0 or absent: the server default (default_jwt_svid_ttl)'),
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  // The README promises spire-server's -write an answer saying what to do, not "unknown flag".
  notSupported: {
    write: 'the token goes to standard output: redirect it (`meshid-server jwt mint ... > token.jwt`) into a directory only its user can read',
  },
  async run(args, io) {
    const spiffeId = checkSpiffeId(args.requiredString('spiffe-id'), 'SPIFFE ID');
    const audience = args.strings('audience');
    if (audience.length === 0) throw invalidArgument('flag --audience is required (at least one)');
    const ttl = args.seconds('ttl');
    const res = await withAdminClient(args, io.env, (client) =>
      client.call('Svids', 'MintJwtSvid', { spiffe_id: spiffeId, audience, ...(ttl !== undefined ? { ttl } : {}) }),
    );
    // spire-server's MintJWTSVIDResponse.
    if (outputFormat(args) === 'json') {
      const token = res.token ?? '';
      const svid = { token, id: spireSpiffeId(spiffeId), expires_at: int64(res.expires_at), issued_at: int64(issuedAt(token)), hint: '' };
      io.stdout.write(renderJson({ svid }));
    }
    else io.stdout.write(`${res.token ?? ''}\n`);
    return 0;
  },
};

/** `meshid-server jwt mint`: JWT-SVIDs for tooling (admin API meshid.admin.v1.Svids). */
export async function jwtCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server jwt', 'Mint JWT-SVIDs.', [mint], argv, io);
}
