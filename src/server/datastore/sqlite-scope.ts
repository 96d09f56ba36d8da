import type Database from 'better-sqlite3';
import type { Clock } from '../../common/clock.js';
import type { Change } from './datastore.js';
import type { Statements } from './sqlite-statements.js';

/**
 * What the operations on one table family (sqlite-entries, sqlite-bundles, …) use of the SQLite datastore. They run
 * inside its read or write: one synchronous step, a write being one IMMEDIATE transaction whose revision and changed
 * kinds the datastore tracks, so that its change listeners hear of them only after the commit.
 */
export interface SqliteScope {
  readonly db: Database.Database;
  readonly s: Statements;
  readonly clock: Clock;
  /** Takes the next revision for the transaction in progress (once per transaction) and notes what kind changed. */
  bump(kind: Change['kind']): number;
  /** An 'agent' change naming the agents it concerns (Change.agentIds). */
  bumpAgents(spiffeIds: readonly string[]): void;
}
