// SQLite compiled to WebAssembly (@journeyapps/wa-sqlite, its synchronous
// build), loaded in Node from node_modules, with a small synchronous API over
// the C one: a VFS call can run a whole restart of another instance inside
// it, which wa-sqlite's promise-returning API cannot.
import SQLiteFactory from '@journeyapps/wa-sqlite/dist/wa-sqlite.mjs';
import * as VFS from '@journeyapps/wa-sqlite/src/VFS.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const wasm = fileURLToPath(import.meta.resolve('@journeyapps/wa-sqlite/dist/wa-sqlite.wasm'));

export class SQLiteError extends Error {
  constructor(message, code) {
    super(message);
    this.name = 'SQLiteError';
    this.code = code;
  }
}

/** One instance of SQLite (its own WebAssembly memory). */
export async function loadSQLite() {
  // The build fetches its .wasm the browser's way; in Node we hand it over.
  const module = await SQLiteFactory({ wasmBinary: readFileSync(wasm) });
  return new SQLite(module);
}

export class SQLite {
  constructor(module) {
    this.module = module;
  }

  get version() {
    return this.module.ccall('sqlite3_libversion', 'string', [], []);
  }

  /** Register (or replace) a VFS by its name; not the default one. */
  registerVFS(vfs) {
    const rc = this.module.vfs_register(vfs, false);
    if (rc !== VFS.SQLITE_OK) throw new SQLiteError(`sqlite3_vfs_register(${vfs.name}) failed`, rc);
    return vfs;
  }

  /** sqlite3_open_v2 of name through the VFS vfsName. */
  open(name, vfsName, { create = false } = {}) {
    const m = this.module;
    const flags = VFS.SQLITE_OPEN_READWRITE | (create ? VFS.SQLITE_OPEN_CREATE : 0);
    const pp = m._malloc(4);
    try {
      const rc = m.ccall('sqlite3_open_v2', 'number', ['string', 'number', 'number', 'string'], [name, pp, flags, vfsName]);
      const db = m.HEAP32[pp >> 2];
      if (rc !== VFS.SQLITE_OK) {
        const message = db ? m.ccall('sqlite3_errmsg', 'string', ['number'], [db]) : `sqlite3_open_v2 returned ${rc}`;
        if (db) m._sqlite3_close_v2(db);
        throw new SQLiteError(message, rc);
      }
      m._sqlite3_extended_result_codes(db, 1);
      return new Database(m, db);
    } finally {
      m._free(pp);
    }
  }
}

export class Database {
  #m;
  #db;

  constructor(module, db) {
    this.#m = module;
    this.#db = db;
  }

  #check(rc, what) {
    if (rc !== VFS.SQLITE_OK && rc !== VFS.SQLITE_ROW && rc !== VFS.SQLITE_DONE) {
      throw new SQLiteError(`${what}: ${this.#m.ccall('sqlite3_errmsg', 'string', ['number'], [this.#db])}`, rc);
    }
    return rc;
  }

  /** Run one or more statements, no results. */
  exec(sql) {
    this.#check(this.#m.ccall('sqlite3_exec', 'number', ['number', 'string', 'number', 'number', 'number'], [this.#db, sql, 0, 0, 0]), sql.slice(0, 60));
  }

  /** Run one statement; its rows as arrays of strings (NULL: null). */
  all(sql) {
    const m = this.#m;
    const pp = m._malloc(4);
    let stmt = 0;
    try {
      this.#check(m.ccall('sqlite3_prepare_v2', 'number', ['number', 'string', 'number', 'number', 'number'], [this.#db, sql, -1, pp, 0]), sql.slice(0, 60));
      stmt = m.HEAP32[pp >> 2];
      const rows = [];
      while (this.#check(m._sqlite3_step(stmt), sql.slice(0, 60)) === VFS.SQLITE_ROW) {
        const row = [];
        for (let i = 0, n = m._sqlite3_column_count(stmt); i < n; i++) {
          row.push(m._sqlite3_column_type(stmt, i) === VFS.SQLITE_NULL ? null : m.UTF8ToString(m._sqlite3_column_text(stmt, i)));
        }
        rows.push(row);
      }
      return rows;
    } finally {
      if (stmt) m._sqlite3_finalize(stmt);
      m._free(pp);
    }
  }

  close() {
    this.#check(this.#m._sqlite3_close_v2(this.#db), 'sqlite3_close_v2');
  }
}
