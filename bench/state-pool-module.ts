// The recovery bench/state-pool.ts checks (each pool worker imports it):
// 'db' must exist and every byte hold a value the bench stored (1, synced,
// or 2, not synced: any mix is a legal crash) — it reads and scans the
// file, as a recovery reading its data would.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function recover(dir: string): true | string {
  const db = join(dir, 'db');
  if (!existsSync(db)) return 'lost';
  const bytes = readFileSync(db);
  for (const b of bytes) if (b !== 1 && b !== 2) return 'corrupt';
  return true;
}
