// SQLite's restart as a recovery module, for checkVolumeRecovery with
// workers (each worker imports this file once: its own SQLite instance,
// loaded at import). recover(dir, state) copies the state (SQLite writes on
// restart: a hot journal rolls back), opens test.db through node:fs, and
// accepts the state when PRAGMA integrity_check says ok and table t is there.
//   await checkVolumeRecovery(volume, recover, { dir, workers: 2, module: { path: 'examples/sqlite/pool-recover.mjs' } })
// bench/state-pool.ts uses it (buildDatabase makes its database).
import { rmSync } from 'node:fs';
import { loadSQLite } from './sqlite.mjs';
import { DirectoryStore, StoreVFS } from './vfs.mjs';
import { payloadOf } from './crash-test.mjs';

const sqlite = await loadSQLite();
const store = new DirectoryStore('');
sqlite.registerVFS(new StoreVFS('restart', sqlite.module, store));

export function recover(dir, state) {
  const restart = `${dir}.restart`;
  rmSync(restart, { recursive: true, force: true });
  state.copyTo(restart);
  store.dir = restart;
  const db = sqlite.open('test.db', 'restart');
  try {
    const result = db.all('PRAGMA integrity_check').map((r) => r[0]).join('; ');
    if (result !== 'ok') return 'integrity failure';
    return Number(db.all('SELECT count(*) FROM t')[0][0]) > 0 || 'empty';
  } finally {
    db.close();
    rmSync(restart, { recursive: true, force: true });
  }
}

/** A database of `rows` rows (the crash test's payloads) in dir/test.db. */
export function buildDatabase(dir, rows) {
  store.dir = dir;
  const db = sqlite.open('test.db', 'restart', { create: true });
  try {
    db.exec('CREATE TABLE t(seq INTEGER PRIMARY KEY, payload TEXT NOT NULL)');
    db.exec('BEGIN');
    for (let seq = 1; seq <= rows; seq++) db.exec(`INSERT INTO t VALUES (${seq}, '${payloadOf(seq)}')`);
    db.exec('COMMIT');
  } finally {
    db.close();
  }
}
