// The workload module bench/crash-points.ts explores (each pool worker
// imports it): COMMITS commits of write-temp, fsync, rename, fsync-dir of a
// PAGES-page file; recover reads 'db' and checks it is whole and not older
// than the last commit that returned.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Volume } from '../src/index.js';

const COMMITS = 4;
const PAGES = 2;
let committed = 0;

export function workload(volume: Volume): void {
  committed = 0;
  for (let value = 1; value <= COMMITS; value++) {
    const tmp = volume.create('db.tmp', PAGES * 4096);
    tmp.map().bytes.fill(value);
    tmp.sync();
    volume.rename('db.tmp', 'db');
    volume.syncDirectory();
    committed = value;
  }
}

export function recover(dir: string): true | string {
  const db = join(dir, 'db');
  if (!existsSync(db)) return committed === 0 || 'lost-commit';
  const bytes = readFileSync(db);
  if (bytes[0] === 0 || bytes.some((b) => b !== bytes[0])) return 'corrupt';
  return bytes[0] >= committed || 'lost-commit';
}
