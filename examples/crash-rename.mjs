// udax crash examples/crash-rename.mjs: replace 'db' the classic way (write
// a temp file, fsync it, rename it over, fsync the directory) and check that
// no crash loses a commit or leaves 'db' torn. SKIP_FSYNC=1 drops the temp's
// fsync: udax then finds the violations.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

let committed = 0;  // the last commit that returned: recover runs with the workload stopped at the crash point

export function workload(volume) {
  committed = 0;  // the workload runs once per crash point: start from scratch
  for (let value = 1; value <= 3; value++) {
    const tmp = volume.create('db.tmp', 4096);
    tmp.map().bytes.fill(value);
    if (process.env.SKIP_FSYNC !== '1') tmp.sync();
    volume.rename('db.tmp', 'db');
    volume.syncDirectory();
    committed = value;
  }
}

export function recover(dir) {
  const db = join(dir, 'db');
  if (!existsSync(db)) return committed === 0 || 'lost-commit';
  const bytes = readFileSync(db);
  if (bytes[0] === 0 || bytes.some((b) => b !== bytes[0])) return 'corrupt';
  return bytes[0] >= committed || 'lost-commit';
}

export const options = { k: 2 };
