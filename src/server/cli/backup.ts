import path from 'node:path';
import { runCommand, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { invalidArgument } from '../../common/errors.js';
import { ADMIN_SOCKET_FLAG, withAdminClient } from './admin-client.js';
import { isoTime } from './entry-output.js';

/**
 * A backup's call outlives the other admin calls' 30 s: the datastore is copied a few hundred KiB per event-loop turn
 * of the server. Past this the server is told the caller is gone and drops what it wrote.
 */
const BACKUP_DEADLINE_MS = 15 * 60_000;

const backup: Command = {
  name: 'backup',
  summary:
    'Writes a backup of the running server into a new directory on its host: a consistent snapshot of the datastore, ' +
    'the CA keys it names, meshid-server.json and the server SVID. It holds the CA private keys: keep it as private as the data dir.',
  flags: [
    {
      name: 'out',
      type: 'string',
      valueName: 'DIR',
      description:
        "Directory to write on the server's host, as an absolute path there, which must not exist yet (its parent must) or be " +
        'empty, outside the data dir; created 0700, its files 0600; required',
    },
    ADMIN_SOCKET_FLAG,
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const out = args.requiredString('out', '(the directory to write the backup into, e.g. /var/backups/meshid-$(date +%F))');
    if (out === '') throw invalidArgument('flag --out is empty: give the directory to write the backup into');
    // The server writes the path in its own view of the files: a server in a container or under systemd's
    // PrivateTmp= sees another /tmp, say. A relative path reads as "here, where I run this", which the server may not
    // see at all, so the operator names the server's path outright rather than have this command guess it.
    if (out === '~' || out.startsWith('~/')) {
      // --out=~/x: the shell expands ~ only at the start of a word, so it arrives as it was typed.
      throw invalidArgument(
        `flag --out ${out} starts with ~, which the shell did not expand (it does not after --out=): give the absolute path, e.g. --out ${out.replace(/^~/, io.env.HOME ?? '/home/USER')}`,
      );
    }
    if (!path.isAbsolute(out)) {
      throw invalidArgument(
        `flag --out ${out} is a relative path: the server writes the backup in its own view of the files, not this command's; ` +
          `give an absolute path on the server's host (${path.resolve(out)}, if the server sees this directory as this command does)`,
      );
    }
    const res = await withAdminClient(args, io.env, (client) => client.call('Backups', 'WriteBackup', { dir: out }), BACKUP_DEADLINE_MS);
    const files = (res.files ?? []).map((f) => ({ path: f.path ?? '', size: f.size ?? 0 }));
    const result = {
      dir: res.dir ?? '',
      files,
      datastore_size: res.datastore_size ?? 0,
      ca_keys: res.ca_keys ?? 0,
      taken_at: res.taken_at ?? 0,
      took_ms: res.took_ms ?? 0,
    };
    if (outputFormat(args) === 'json') {
      io.stdout.write(renderJson(result));
      return 0;
    }
    io.stdout.write(
      `Backup written to ${result.dir}\n` +
        renderFields([
          ['Taken at', isoTime(result.taken_at)],
          ['Took', `${(result.took_ms / 1000).toFixed(2)} s`],
          ['Datastore', `${result.datastore_size} bytes`],
          ['CA keys', `${result.ca_keys}`],
          ['File', files.map((f) => `${f.path} (${f.size} bytes)`)],
        ]) +
        'It holds the trust domain\'s CA private keys: keep it as private as the data dir. To restore it, stop the server, move ' +
        `its data dir aside and run \`meshid-server restore --from ${result.dir} --config <the server's config file>\` ` +
        // A server started with flags alone has no config file to name; restore takes its data dir the same way.
        `(or \`--data-dir <its data dir>\`, for a server run without one), which voids the join tokens it brings back.\n`,
    );
    return 0;
  },
};

/** `meshid-server backup --out DIR`: the server writes a backup of its data dir (admin API meshid.admin.v1.Backups). */
export async function backupCommand(argv: string[], io: CliIo): Promise<number> {
  return runCommand('meshid-server backup', backup, argv, io);
}
