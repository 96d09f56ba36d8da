/**
 * Bit rot in a SQLite file where opening it, the CA journal and the join tokens never read: the root page of the
 * entries table, overwritten with 0xff. Only a whole read (integrity_check) or an entry load finds it.
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';

/**
 * Overwrites the root page of `table` in `file`. With `checkpoint`, the -wal is folded into the file first, so the
 * page damaged is the one read (a live data dir); without, the file is only read (a backup, which holds no -wal).
 */
export function damageRootPage(file: string, table: string, { checkpoint = false } = {}): void {
  const db = new Database(file, { readonly: !checkpoint });
  if (checkpoint) db.pragma('wal_checkpoint(TRUNCATE)');
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const { rootpage } = db.prepare('SELECT rootpage FROM sqlite_master WHERE name = ?').get(table) as { rootpage: number };
  db.close();
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(pageSize, 0xff), 0, pageSize, (rootpage - 1) * pageSize);
  fs.closeSync(fd);
}
