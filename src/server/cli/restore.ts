import path from 'node:path';
import { runCommand, type Command } from '../../common/cli/command.js';
import { OUTPUT_FLAG, outputFormat, renderFields, renderJson, type CliIo } from '../../common/cli/output.js';
import { failedPrecondition, invalidArgument } from '../../common/errors.js';
import { configuredTrustDomain } from '../../common/spiffe/spiffe-id.js';
import { readConfigFile } from '../config.js';
import { systemClock } from '../../common/clock.js';
import { restoreDataDir, type RestoreResult } from '../backup/data-dir-restore.js';
import { checkRestoreSource, type RestoreSource } from '../backup/restore-source.js';
import { checkRestoreTarget, type RestoreTarget } from '../backup/restore-target.js';

const restore: Command = {
  name: 'restore',
  summary:
    'Restores a backup into a new data dir, with the server stopped: checks it is complete, copies it beside the data dir, ' +
    'voids every join token it brings back, then moves it into place at once.',
  flags: [
    {
      name: 'from',
      type: 'string',
      valueName: 'DIR',
      description: 'The backup directory (`meshid-server backup --out DIR`, or a copy of a stopped server\'s data dir); required',
    },
    { name: 'config', type: 'string', valueName: 'FILE', description: 'The JSON config file the server runs with: its data_dir and trust_domain (flags override it)' },
    {
      name: 'data-dir',
      aliases: ['dataDir'],
      type: 'string',
      valueName: 'DIR',
      description: 'The data dir to create, which must not exist yet (its parent must) or be empty; required unless the config sets data_dir',
    },
    { name: 'trust-domain', aliases: ['trustDomain'], type: 'string', valueName: 'TD', description: "The server's trust domain: a backup of another is refused" },
    OUTPUT_FLAG,
  ],
  async run(args, io) {
    const from = args.requiredString('from', '(the backup directory to restore, e.g. /var/backups/meshid-2026-05-01)');
    // Read as `run` reads them, so the data dir restored is the one the server starts on: relative to here.
    const configFile = args.string('config');
    const setByFlags = new Set([...(args.string('data-dir') === undefined ? [] : ['data_dir']), ...(args.string('trust-domain') === undefined ? [] : ['trust_domain'])]);
    const raw = configFile !== undefined ? readConfigFile(configFile, setByFlags) : {};
    const dataDir = args.string('data-dir') ?? raw.data_dir;
    if (dataDir === undefined) {
      throw invalidArgument(`flag --data-dir is required${configFile !== undefined ? ` (${configFile} sets no data_dir)` : ''}: give the data dir the server runs with, or --config`);
    }
    const trustDomainValue = args.string('trust-domain') ?? raw.trust_domain;
    const trustDomainSetting = args.string('trust-domain') !== undefined ? '--trust-domain' : `trust_domain in ${configFile}`;
    const expectedTrustDomain = trustDomainValue === undefined ? undefined : configuredTrustDomain(trustDomainValue, trustDomainSetting);
    const source = checkRestoreSource(from);
    if (expectedTrustDomain !== undefined && source.trustDomain !== expectedTrustDomain) {
      throw failedPrecondition(
        `the backup ${from} is of trust domain "${source.trustDomain}", not "${expectedTrustDomain}"${configFile !== undefined && args.string('trust-domain') === undefined ? ` (${configFile})` : ''}: ` +
          'a server refuses to start on another trust domain\'s data dir; restore a backup of this one',
      );
    }
    const target = checkRestoreTarget(path.resolve(dataDir));
    const result = await restoreUnlessInterrupted(source, target);
    // On stderr, so that --output json's stdout stays one document.
    for (const leftover of result.removedLeftovers) io.stderr.write(`Removed ${leftover}, which an interrupted restore left.\n`);
    for (const { dir, uid } of result.othersLeftovers) {
      io.stderr.write(
        `Left ${dir} alone: it is named like what an interrupted restore leaves, but owned by uid ${uid}, not this user. ` +
          `If a restore run as that user left it, it holds a copy of the CA keys: have that user remove it.\n`,
      );
    }
    if (outputFormat(args) === 'json') {
      io.stdout.write(
        renderJson({
          dir: result.dir,
          from: result.from,
          trust_domain: result.trustDomain,
          files: result.files,
          datastore_size: result.datastoreSize,
          ca_keys: result.caKeys,
          voided_join_tokens: result.voidedJoinTokens,
        }),
      );
      return 0;
    }
    io.stdout.write(
      `Restored ${result.from} into ${result.dir}\n` +
        renderFields([
          ['Trust domain', result.trustDomain],
          ['Datastore', `${result.datastoreSize} bytes`],
          ['CA keys', `${result.caKeys}`],
          ['File', result.files.map((f) => `${f.path} (${f.size} bytes)`)],
        ]) +
        `Voided ${result.voidedJoinTokens} unused join token${result.voidedJoinTokens === 1 ? '' : 's'}: generate new ones with \`meshid-server token generate\` for hosts still waiting.\n` +
        'Agents that attested or renewed since the backup must re-attest with a new join token; a root revoked since the backup is ' +
        'trusted again: taint it at once (README, "Backup and restore").\n',
    );
    return 0;
  },
};

/**
 * restoreDataDir, stopped by SIGINT or SIGTERM before the data dir is made: Node's default would end the process on
 * the spot and leave the staging directory, a copy of the CA keys, until the next restore into that path.
 */
async function restoreUnlessInterrupted(source: RestoreSource, target: RestoreTarget): Promise<RestoreResult> {
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => interrupt.abort(signal);
  for (const signal of INTERRUPT_SIGNALS) process.on(signal, onSignal);
  try {
    return await restoreDataDir(source, target, systemClock, interrupt.signal);
  } finally {
    for (const signal of INTERRUPT_SIGNALS) process.off(signal, onSignal);
  }
}

const INTERRUPT_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/** `meshid-server restore --from DIR --data-dir D`: restores a backup into a new data dir, offline, its join tokens voided. */
export async function restoreCommand(argv: string[], io: CliIo): Promise<number> {
  return runCommand('meshid-server restore', restore, argv, io);
}
