import { invalidArgument } from '../../common/errors.js';
import { runGroup, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderJson, type CliIo } from '../../common/cli/output.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import { checkSpiffeId, spiffeIdFlag, ttlFlag } from './flags.js';

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
  async run(args, io) {
    const spiffeId = checkSpiffeId(args.requiredString('spiffe-id'), 'SPIFFE ID');
    const audience = args.strings('audience');
    if (audience.length === 0) throw invalidArgument('flag --audience is required (at least one)');
    const ttl = args.seconds('ttl');
    const res = await withAdminClient(args, io.env, (client) =>
      client.call('Svids', 'MintJwtSvid', { spiffe_id: spiffeId, audience, ...(ttl !== undefined ? { ttl } : {}) }),
    );
    if (outputFormat(args) === 'json') io.stdout.write(renderJson({ token: res.token ?? '', expires_at: res.expires_at ?? 0 }));
    else io.stdout.write(`${res.token ?? ''}\n`);
    return 0;
  },
};

/** `meshid-server jwt mint`: JWT-SVIDs for tooling (admin API meshid.admin.v1.Svids). */
export async function jwtCommand(argv: string[], io: CliIo): Promise<number> {
  return runGroup('meshid-server jwt', 'Mint JWT-SVIDs.', [mint], argv, io);
}
