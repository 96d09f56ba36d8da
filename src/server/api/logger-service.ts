import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { invalidArgument } from '../../common/errors.js';
import { levelWrites, LOG_LEVEL_NAMES, parseLogLevel, type Logger } from '../../common/log.js';
import { unary } from './handler.js';

/** Whether a logger at `level` writes info lines. */
const writesInfo = (level: string): boolean => levelWrites(level, 'info');

/**
 * Admin API: the server's log level at run time (meshid.admin.v1.Logger, SPIRE's Logger API). `root` is the process's
 * logger: pino hands a level set on it down to every child that has not set its own, so each subsystem follows. The
 * change is logged at info, on whichever side of it info lines are written.
 */
export function loggerService(root: Logger, launchLevel: string, log: Logger): UntypedServiceImplementation {
  const levels = () => ({ current_level: root.level, launch_level: launchLevel });
  const change = (level: string, msg: string) => {
    const from = root.level;
    if (!writesInfo(level)) log.info({ from, to: level }, msg);
    root.level = level;
    if (writesInfo(level)) log.info({ from, to: level }, msg);
    return levels();
  };
  return {
    GetLogger: unary(log, 'GetLogger', levels),
    SetLogLevel: unary(log, 'SetLogLevel', (req: { level?: string }) => {
      if (!req.level) throw invalidArgument(`level is required: one of ${LOG_LEVEL_NAMES.join(', ')}`);
      return change(parseLogLevel(req.level, 'log level'), 'log level set');
    }),
    ResetLogLevel: unary(log, 'ResetLogLevel', () => change(launchLevel, 'log level reset to the level the server started with')),
  };
}
