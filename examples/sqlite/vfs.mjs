// A synchronous SQLite VFS (wa-sqlite's FacadeVFS) over a file store: a udax
// volume (the run under test) or a plain directory through node:fs (the
// restart that opens a crash state). One VFS class; two stores with the same
// calls, so SQLite does exactly the same thing over both.
//
// Choices, stated once:
// - Locking is trivial (xLock/xUnlock succeed, xCheckReservedLock says no):
//   one connection per database, in one thread.
// - No xShm*: a WAL database must be opened with PRAGMA locking_mode=EXCLUSIVE
//   first, and SQLite then keeps the WAL index in heap memory
//   (https://www.sqlite.org/wal.html#noshm).
// - Directory syncs as SQLite's unix VFS does them (os_unix.c): a rollback
//   journal, super-journal or WAL that xOpen created syncs its directory at
//   its first xSync (UNIXFILE_DIRSYNC); xDelete with syncDir set syncs the
//   directory after the unlink (synchronous=EXTRA in DELETE mode).
// - Every xSync is an fsync, whatever its flags: SQLITE_SYNC_DATAONLY
//   (fdatasync) must persist a size change too, and names are the metadata
//   model's business (volume.syncDirectory where SQLite asks for it).
// - Sector size 4096 and SQLITE_IOCAP_POWERSAFE_OVERWRITE, as the unix VFS
//   reports on Linux by default.
// - Files SQLite opens without a name (temp files) live in memory.
import { FacadeVFS } from '@journeyapps/wa-sqlite/src/FacadeVFS.js';
import * as VFS from '@journeyapps/wa-sqlite/src/VFS.js';
import { closeSync, existsSync, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

const PAGE = 4096;
const DIRSYNC_TYPES = VFS.SQLITE_OPEN_MAIN_JOURNAL | VFS.SQLITE_OPEN_SUPER_JOURNAL | VFS.SQLITE_OPEN_WAL;

/** A 64-bit file offset from its two 32-bit halves. */
const offsetOf = (lo, hi) => hi * 0x100000000 + (lo >>> 0);

/** The file kind SQLite opened, from xOpen's flags. */
function kindOf(flags) {
  if (flags & VFS.SQLITE_OPEN_MAIN_DB) return 'db';
  if (flags & VFS.SQLITE_OPEN_MAIN_JOURNAL) return 'journal';
  if (flags & VFS.SQLITE_OPEN_WAL) return 'wal';
  if (flags & VFS.SQLITE_OPEN_SUPER_JOURNAL) return 'super-journal';
  return 'temp';
}

/** A udax volume as a file store. Two ways to write, as on a DAX file
 * system (docs/volumes.md):
 * - io 'write' (default): the DAX read/write path, file.write — data durable
 *   on return, a size change durable at the file's fsync;
 * - io 'mmap': stores into a shared mapping of the file, dirty until xSync
 *   (fsync), so crash states take any subset of the units written since (with
 *   the volume's granularity: cache lines, or pages for a page-cache model).
 * udax files are whole pages (4096 bytes), so the store keeps each file's
 * exact size (what xFileSize says) in memory: a write past the end grows the
 * udax file to the next page, truncate resizes to a page, and a crash state
 * shows the file at its durable (page-rounded) size with zeros after SQLite's
 * last byte. SQLite's journal and WAL formats end at a record count or a
 * checksum, so trailing zeros read as "no more records". */
export class VolumeStore {
  #sizes = new Map();  // name -> exact size of its live file

  constructor(volume, { io = 'write' } = {}) {
    if (io !== 'write' && io !== 'mmap') throw new TypeError(`io must be 'write' or 'mmap', got ${io}`);
    this.volume = volume;
    this.io = io;
  }

  exists(name) {
    try {
      return this.volume.stat(name).type === 'file';
    } catch (e) {
      if (e.code === 'ENOENT') return false;
      throw e;
    }
  }

  open(name, create) {
    let vf;
    if (this.exists(name)) {
      vf = this.volume.open(name);
      if (!this.#sizes.has(name)) this.#sizes.set(name, vf.size);
    } else {
      if (!create) return undefined;
      vf = this.volume.create(name, PAGE);
      this.#sizes.set(name, 0);
    }
    const f = { name, vf, mapping: undefined };
    this.#remap(f);
    return f;
  }

  /** io 'mmap': map the whole file again after its size changed (a mapping
   * keeps its length; its dirty entries stay with the file). */
  #remap(f) {
    if (this.io !== 'mmap') return;
    f.mapping?.unmap();
    f.mapping = f.vf.size > 0 ? f.vf.map() : undefined;
  }

  #resize(f, bytes) {
    if (bytes === f.vf.size) return;
    f.mapping?.unmap();
    f.mapping = undefined;
    f.vf.resize(bytes);
    this.#remap(f);
  }

  size(f) {
    return this.#sizes.get(f.name);
  }

  /** The exact size SQLite gave the live file of this name (undefined if none). */
  sizeOf(name) {
    return this.#sizes.get(name);
  }

  read(f, bytes, offset) {
    const n = Math.max(0, Math.min(bytes.length, this.size(f) - offset));
    return n === 0 ? 0 : f.vf.read(bytes.subarray(0, n), offset);  // the live bytes, either way
  }

  write(f, bytes, offset) {
    const end = offset + bytes.length;
    if (this.io === 'mmap') {
      if (end > f.vf.size) this.#resize(f, Math.ceil(end / PAGE) * PAGE);
      f.mapping.bytes.set(bytes, offset);  // stores: dirty until fsync
    } else {
      f.vf.write(bytes, offset);  // data durable on return, growth at fsync
    }
    this.#sizes.set(f.name, Math.max(this.size(f), end));
  }

  truncate(f, size) {
    const old = this.size(f);
    const pages = Math.ceil(size / PAGE) * PAGE;
    // Bytes past the new end within its last page must read as zeros if the
    // file grows again, as after ftruncate.
    if (size < old && size < pages) {
      const zeros = new Uint8Array(Math.min(pages, old) - size);
      if (this.io === 'mmap') f.mapping.bytes.set(zeros, size);
      else f.vf.write(zeros, size);
    }
    this.#resize(f, pages);
    this.#sizes.set(f.name, size);
  }

  sync(f) {
    f.vf.sync();
  }

  syncDirectory(name) {
    const d = dirname(name);
    this.volume.syncDirectory(d === '.' ? undefined : d);
  }

  remove(name) {
    this.volume.unlink(name);
    this.#sizes.delete(name);
  }

  close(f) {
    f.mapping?.unmap();
    f.vf.close();
  }
}

/** A plain directory as a file store, through node:fs. */
export class DirectoryStore {
  constructor(dir) {
    this.dir = dir;
  }

  exists(name) {
    return existsSync(join(this.dir, name));
  }

  open(name, create) {
    const path = join(this.dir, name);
    if (!existsSync(path) && !create) return undefined;
    return { name, fd: openSync(path, existsSync(path) ? 'r+' : 'w+') };
  }

  size(f) {
    return fstatSync(f.fd).size;
  }

  read(f, bytes, offset) {
    return readSync(f.fd, bytes, 0, bytes.length, offset);
  }

  write(f, bytes, offset) {
    writeSync(f.fd, bytes, 0, bytes.length, offset);
  }

  truncate(f, size) {
    ftruncateSync(f.fd, size);
  }

  sync(f) {
    fsyncSync(f.fd);
  }

  syncDirectory(name) {
    const fd = openSync(dirname(join(this.dir, name)), 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  remove(name) {
    unlinkSync(join(this.dir, name));
  }

  close(f) {
    closeSync(f.fd);
  }
}

/** A file SQLite opened without a name: memory only. */
class MemoryFile {
  bytes = new Uint8Array(0);
  length = 0;
  read(bytes, offset) {
    const n = Math.max(0, Math.min(bytes.length, this.length - offset));
    bytes.set(this.bytes.subarray(offset, offset + n));
    return n;
  }
  write(bytes, offset) {
    const end = offset + bytes.length;
    if (end > this.bytes.length) {
      const grown = new Uint8Array(Math.max(end, 2 * this.bytes.length));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    this.bytes.set(bytes, offset);
    this.length = Math.max(this.length, end);
  }
  truncate(size) {
    if (size < this.length) this.bytes.fill(0, size, this.length);
    this.length = size;
  }
}

/** The VFS. options.onSync(phase, event), if given, runs before ('before')
 * and after ('after') every xSync with { name, kind, flags, dirSync }: the
 * crash test stops the workload there. options.dirSync: false leaves out
 * every directory sync (the classic bug, to see what a crash test catches).
 * An error a store throws becomes the SQLite I/O error of the call (and
 * vfs.lastError); an error a hook throws is kept in vfs.hookError and stops
 * nothing (SQLite's state must stay its own). */
export class StoreVFS extends FacadeVFS {
  #files = new Map();  // pFile -> { name, kind, flags, file | memory, dirSync }
  lastError = undefined;
  hookError = undefined;

  constructor(name, module, store, options = {}) {
    super(name, module);
    this.store = store;
    this.onSync = options.onSync;
    this.dirSync = options.dirSync ?? true;
  }

  #fail(e, code) {
    this.lastError = e;
    return code;
  }

  jOpen(filename, pFile, flags, pOutFlags) {
    try {
      const kind = kindOf(flags);
      if (!filename) {
        this.#files.set(pFile, { name: undefined, kind, flags, memory: new MemoryFile(), dirSync: false });
      } else {
        const existed = this.store.exists(filename);
        const file = this.store.open(filename, (flags & VFS.SQLITE_OPEN_CREATE) !== 0);
        if (!file) return VFS.SQLITE_CANTOPEN;
        const dirSync = this.dirSync && !existed && (flags & DIRSYNC_TYPES) !== 0;
        this.#files.set(pFile, { name: filename, kind, flags, file, dirSync });
      }
      pOutFlags.setInt32(0, flags, true);
      return VFS.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_CANTOPEN);
    }
  }

  jClose(pFile) {
    const f = this.#files.get(pFile);
    this.#files.delete(pFile);
    if (!f?.file) return VFS.SQLITE_OK;
    try {
      this.store.close(f.file);
      if (f.flags & VFS.SQLITE_OPEN_DELETEONCLOSE) this.store.remove(f.name);
      return VFS.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_CLOSE);
    }
  }

  // SQLite's buffer as a plain Uint8Array over the WebAssembly memory
  // (FacadeVFS passes a proxy that udax's write and node:fs refuse). Safe:
  // nothing here calls back into this instance, so its memory cannot grow.
  xRead(pFile, pData, iAmt, iOffsetLo, iOffsetHi) {
    return this.jRead(pFile, this._module.HEAPU8.subarray(pData, pData + iAmt), offsetOf(iOffsetLo, iOffsetHi));
  }

  xWrite(pFile, pData, iAmt, iOffsetLo, iOffsetHi) {
    return this.jWrite(pFile, this._module.HEAPU8.subarray(pData, pData + iAmt), offsetOf(iOffsetLo, iOffsetHi));
  }

  jRead(pFile, pData, iOffset) {
    const f = this.#files.get(pFile);
    try {
      const n = f.memory ? f.memory.read(pData, iOffset) : this.store.read(f.file, pData, iOffset);
      if (n < pData.length) {
        pData.fill(0, n);
        return VFS.SQLITE_IOERR_SHORT_READ;
      }
      return VFS.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_READ);
    }
  }

  jWrite(pFile, pData, iOffset) {
    const f = this.#files.get(pFile);
    try {
      if (f.memory) f.memory.write(pData, iOffset);
      else this.store.write(f.file, pData, iOffset);
      return VFS.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_WRITE);
    }
  }

  jTruncate(pFile, iSize) {
    const f = this.#files.get(pFile);
    try {
      if (f.memory) f.memory.truncate(iSize);
      else this.store.truncate(f.file, iSize);
      return VFS.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_TRUNCATE);
    }
  }

  jSync(pFile, flags) {
    const f = this.#files.get(pFile);
    if (f.memory) return VFS.SQLITE_OK;
    const event = { name: f.name, kind: f.kind, flags, dirSync: f.dirSync };
    this.#hook('before', event);
    try {
      this.store.sync(f.file);
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_FSYNC);
    }
    if (f.dirSync) {
      try {
        this.store.syncDirectory(f.name);
        f.dirSync = false;
      } catch (e) {
        return this.#fail(e, VFS.SQLITE_IOERR_DIR_FSYNC);
      }
    }
    this.#hook('after', event);
    return VFS.SQLITE_OK;
  }

  #hook(phase, event) {
    if (!this.onSync || this.hookError) return;
    try {
      this.onSync(phase, event);
    } catch (e) {
      this.hookError = e;
    }
  }

  jFileSize(pFile, pSize64) {
    const f = this.#files.get(pFile);
    try {
      pSize64.setBigInt64(0, BigInt(f.memory ? f.memory.length : this.store.size(f.file)), true);
      return VFS.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_FSTAT);
    }
  }

  jDelete(name, syncDir) {
    try {
      if (!this.store.exists(name)) return VFS.SQLITE_IOERR_DELETE_NOENT;
      this.store.remove(name);
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_DELETE);
    }
    if (syncDir && this.dirSync) {
      try {
        this.store.syncDirectory(name);
      } catch (e) {
        return this.#fail(e, VFS.SQLITE_IOERR_DIR_FSYNC);
      }
    }
    return VFS.SQLITE_OK;
  }

  jAccess(name, flags, pResOut) {
    try {
      pResOut.setInt32(0, this.store.exists(name) ? 1 : 0, true);
      return VFS.SQLITE_OK;
    } catch (e) {
      return this.#fail(e, VFS.SQLITE_IOERR_ACCESS);
    }
  }

  jSectorSize() {
    return PAGE;
  }

  jDeviceCharacteristics() {
    return VFS.SQLITE_IOCAP_POWERSAFE_OVERWRITE;
  }

  /** Sync every open file and its directory (the harness makes the schema
   * durable before a workload with this; SQLite never calls it). */
  syncAll() {
    for (const f of this.#files.values()) {
      if (!f.file) continue;
      this.store.sync(f.file);
      this.store.syncDirectory(f.name);
    }
  }
}
