// The recoveries bench/state-pool.ts checks (each pool worker imports them).
// recover, the cheap one: 'db' must exist and every byte hold a value the
// bench stored (1, synced, or 2, not synced: any mix is a legal crash) — it
// reads and scans the file, tens of µs a state. hashRecover, one of a real
// engine's cost: it reads every file of the state and hashes it (SHA-256),
// as a recovery that verifies checksums over its data would, then checks
// 'db' as recover does — a millisecond or two a state with the bench's 1 MiB
// data file. It reads into one buffer it keeps, as an engine reads into its
// page cache; hashAllocRecover is the same with readFileSync, a fresh buffer
// per file: in a worker thread glibc's per-thread malloc arena gives those
// megabytes back to the kernel and faults them in again each state, which
// the main thread's arena does not (docs/volumes.md, the state pool).
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

export function recover(dir: string): true | string {
  const db = join(dir, 'db');
  if (!existsSync(db)) return 'lost';
  const bytes = readFileSync(db);
  for (const b of bytes) if (b !== 1 && b !== 2) return 'corrupt';
  return true;
}

let buffer = new Uint8Array(0);

/** A file's bytes in the kept buffer (valid until the next call). */
function readInto(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (buffer.length < size) buffer = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, buffer, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    return buffer.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

function hashFiles(dir: string, read: (path: string) => Uint8Array): void {
  const hash = createHash('sha256');
  for (const name of readdirSync(dir, { recursive: true }).map(String).sort()) {
    const p = join(dir, name);
    if (statSync(p).isFile()) hash.update(name).update(read(p));
  }
  hash.digest();
}

export function hashRecover(dir: string): true | string {
  hashFiles(dir, readInto);
  return recover(dir);
}

export function hashAllocRecover(dir: string): true | string {
  hashFiles(dir, (p) => readFileSync(p));
  return recover(dir);
}
