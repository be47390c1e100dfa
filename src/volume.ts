// A volume: a directory whose files are DAX files, with a namespace whose
// durability follows a metadata model (src/metadata.ts). docs/volumes.md.
//
// Layout: the live files are plain files at their names under the volume's
// directory, so the live volume is what any reader sees. `.udax/` (a name
// the namespace refuses) holds each file's media (`<n>.media`) and the data
// of files that are unlinked or replaced but whose removal is not durable
// yet (`<n>.data`). Every created file is one *incarnation* (numbered n):
// re-creating a name makes a new one with its own data and media, so a
// crash shows one incarnation or the other, never a mix.
//
// Files found in the directory when the volume opens are durable as they
// are; each is opened as a DAX file only when first opened through the
// volume (1,000 untouched files cost nothing). An incarnation's DaxFile stays
// open while any crash may still show it (its media would be re-initialised
// by a reopen); it is closed once it is gone from both the live and the
// durable namespace and no pending operation names it.
import { mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { PAGE_SIZE, PMD_SIZE } from './constants.js';
import { errnoError, rangeError, typeError, udaxError } from './errors.js';
import { checkPath, open, type DaxFile } from './file.js';
import type { Mapping, MapOptions } from './mapping.js';
import { applyOp, describeOp, metadataModel, METADATA_MODELS, parentOf, type MetadataModel, type MetadataModelName, type MetaOp, type Namespace } from './metadata.js';
import { parsePersistOptions, type PersistOptions } from './persist.js';
import type { TrackerOption } from './tracker.js';
import type { SyncResult } from './writeback.js';
import * as check from './validate.js';
import { VolumeCrashStates, type VolumeCrashStatesOptions } from './volume-crash.js';
import { lockVolume, VOLUME_LOCK_FILE, type VolumeLock } from './volume-lock.js';

/** The volume's own directory inside it (refused as a name). */
export const VOLUME_PRIVATE_DIR = '.udax';
const NAME_MAX = 255;
const DEFAULT_FILE_SIZE = PAGE_SIZE;

export interface VolumeOptions extends Omit<PersistOptions, 'mediaPath' | 'media'> {
  /** 'shadow' (the default: crash states need it) or 'none'. */
  media?: 'none' | 'shadow';
  /** What a crash may keep of namespace operations not yet durable:
   * 'ext4/xfs' (the default) or 'strict-posix' (docs/volumes.md). */
  metadata?: MetadataModelName;
  /** Create the directory if it does not exist (default false). */
  create?: boolean;
  /** Entry size of every file: 4096 (default) or 2 MiB. */
  entrySize?: number;
  tracker?: TrackerOption;
}

/** @internal One created file (one inode), from create to the moment no
 * crash can show it any more. */
export interface Incarnation {
  readonly id: number;
  /** Its name now, or the last name it had (reports). */
  name: string;
  /** True while the live namespace names it. */
  live: boolean;
  /** Opened lazily; undefined: its bytes on disk are all durable. */
  dax: DaxFile | undefined;
  readonly mediaPath: string;
  /** Where its bytes are while it is not live and was never opened. */
  readonly keptDataPath: string;
}

export interface VolumeEntry {
  /** The name in its directory. */
  name: string;
  /** The path in the volume ('d/name'). */
  path: string;
  type: 'file' | 'directory';
}

/** @internal What crash states read of a volume (src/volume-crash.ts). */
export interface VolumeView {
  readonly dir: string;
  readonly model: MetadataModel;
  readonly durable: Namespace;
  readonly pending: readonly MetaOp[];
  readonly incarnations: ReadonlyMap<number, Incarnation>;
}

/** A call on a volume or one of its files, as observers see it. Stores
 * through a mapping are not calls (no hook sees them: the tracker does). */
export type VolumeCall =
  | 'create' | 'unlink' | 'rename' | 'mkdir' | 'rmdir'
  | 'write' | 'resize' | 'fsync' | 'msync' | 'fsync-dir';

/** The calls that make something durable: fsync of a file, msync of a
 * range of it, fsync of a directory. */
export const SYNC_CALLS: readonly VolumeCall[] = ['fsync', 'msync', 'fsync-dir'];

export interface VolumeEvent {
  /** 'before': the call is about to start (nothing done yet); 'after': it
   * returned (a call that throws has no 'after'). */
  phase: 'before' | 'after';
  call: VolumeCall;
  /** The name it acts on (a file, or for fsync-dir the directory: '' is the root). */
  name: string;
  /** rename's target. */
  to?: string;
}

/** Called synchronously inside each call of the volume and its files. A
 * throw from it propagates out of that call (from 'before': the call does
 * nothing). */
export type VolumeObserver = (event: VolumeEvent) => void;

/** A MetaOp before the volume numbers it. */
type MetaOpWithoutSeq = MetaOp extends infer T ? (T extends MetaOp ? Omit<T, 'seq'> : never) : never;

export class Volume {
  /** The volume's directory. */
  readonly dir: string;
  readonly metadata: MetadataModelName;
  readonly #model: MetadataModel;
  readonly #openOptions: Record<string, unknown>;
  readonly #private: string;
  /** The namespace a reader sees now. */
  readonly #live: Namespace = new Map();
  /** The namespace every crash keeps. */
  readonly #durable: Namespace;
  /** Operations issued and not yet durable, in issue order. */
  #pending: MetaOp[] = [];
  readonly #incarnations = new Map<number, Incarnation>();
  #nextId = 0;
  #seq = 0;
  #closed = false;
  readonly #observers = new Set<VolumeObserver>();
  readonly #lock: VolumeLock;

  /** @internal Use openVolume(). */
  constructor(dir: string, model: MetadataModel, openOptions: Record<string, unknown>) {
    this.dir = dir;
    this.#model = model;
    this.metadata = model.name;
    this.#openOptions = openOptions;
    this.#private = join(dir, VOLUME_PRIVATE_DIR);
    this.#lock = lockVolume(dir, this.#private);  // refused (ERR_UDAX_VOLUME_LOCKED) before anything changes
    try {
      // A previous run's media: its files now count as durable.
      for (const name of readdirSync(this.#private)) if (name !== VOLUME_LOCK_FILE) rmSync(join(this.#private, name), { recursive: true, force: true });
      this.#scan('');
    } catch (e) {
      this.#lock.release();
      throw e;
    }
    this.#durable = new Map(this.#live);
  }

  /** Existing files and directories: durable as found. */
  #scan(at: string): void {
    for (const d of readdirSync(join(this.dir, at), { withFileTypes: true })) {
      const path = at === '' ? d.name : `${at}/${d.name}`;
      if (path === VOLUME_PRIVATE_DIR) continue;
      if (d.isDirectory()) {
        this.#live.set(path, { kind: 'directory' });
        this.#scan(path);
      } else if (d.isFile()) {
        this.#live.set(path, { kind: 'file', file: this.#newIncarnation(path).id });
      }
    }
  }

  #newIncarnation(name: string): Incarnation {
    const id = this.#nextId++;
    const inc: Incarnation = {
      id, name, live: true, dax: undefined,
      mediaPath: join(this.#private, `${id}.media`), keptDataPath: join(this.#private, `${id}.data`),
    };
    this.#incarnations.set(id, inc);
    return inc;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Call observer before and after every call of the volume and its files
   * (creates, unlinks, renames, mkdir/rmdir, writes, resizes, syncs); the
   * crash-point explorer (exploreCrashPoints) is built on it. Returns a
   * function that removes it. */
  observe(observer: VolumeObserver): () => void {
    if (typeof observer !== 'function') throw typeError('observe: observer must be a function');
    const mine = (e: VolumeEvent) => observer(e);  // each observe() is its own registration
    this.#observers.add(mine);
    return () => {
      this.#observers.delete(mine);
    };
  }

  /** @internal Run fn as call `call` on name: observers before and after. */
  observed<T>(call: VolumeCall, name: unknown, fn: () => T, to?: unknown): T {
    if (this.#observers.size === 0) return fn();
    const event = { call, name: typeof name === 'string' ? name : String(name ?? ''), ...(to === undefined ? {} : { to: String(to) }) };
    for (const o of [...this.#observers]) o({ phase: 'before', ...event });
    const result = fn();
    for (const o of [...this.#observers]) o({ phase: 'after', ...event });
    return result;
  }

  #assertOpen(syscall: string, name?: string): void {
    if (this.#closed) throw errnoError('EBADF', syscall, name === undefined ? this.dir : this.#real(name), 'volume is closed');
  }

  #real(name: string): string {
    return name === '' ? this.dir : join(this.dir, name);
  }

  /** A name inside the volume, checked (ERR_UDAX_BAD_NAME when it would
   * escape it or names the volume's own directory). */
  #name(what: string, name: unknown, syscall: string, allowRoot = false): string {
    if (allowRoot && (name === undefined || name === '')) return '';
    checkPath(what, name);
    const n = name as string;
    const parts = n.split('/');
    if (n.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..') || parts[0] === VOLUME_PRIVATE_DIR) {
      throw udaxError('ERR_UDAX_BAD_NAME',
        `a volume name is a relative path of non-empty components, none '.' or '..', not under '${VOLUME_PRIVATE_DIR}':`, { syscall, path: n });
    }
    if (parts.some((p) => Buffer.byteLength(p) > NAME_MAX)) throw errnoError('ENAMETOOLONG', syscall, n, `a name component is at most ${NAME_MAX} bytes`);
    return n;
  }

  /** The parent of name must be a directory of the live namespace. */
  #assertParent(name: string, syscall: string): void {
    const parent = parentOf(name);
    if (parent === '') return;
    const node = this.#live.get(parent);
    if (!node) throw errnoError('ENOENT', syscall, name, `no directory '${parent}' in the volume`);
    if (node.kind !== 'directory') throw errnoError('ENOTDIR', syscall, name, `'${parent}' is a file`);
  }

  #fileAt(name: string, syscall: string): Incarnation {
    const node = this.#live.get(name);
    if (!node) throw errnoError('ENOENT', syscall, name, 'no such file in the volume');
    if (node.kind !== 'file') throw errnoError('EISDIR', syscall, name, 'is a directory');
    return this.#incarnations.get(node.file)!;
  }

  #issue(op: MetaOpWithoutSeq): void {
    const full = { ...op, seq: this.#seq++ } as MetaOp;
    applyOp(this.#live, full);
    this.#pending.push(full);
  }

  #persistOptions(inc: Incarnation): Record<string, unknown> {
    return this.#openOptions.media === 'none' ? { ...this.#openOptions } : { ...this.#openOptions, mediaPath: inc.mediaPath };
  }

  /** Create a file of size bytes (a multiple of 4096; default 4096), zeroed,
   * and open it. Its name is durable when the metadata model says. */
  create(name: string, size?: number): VolumeFile {
    return this.observed('create', name, () => {
      this.#assertOpen('open', typeof name === 'string' ? name : undefined);
      const n = this.#name('create: name', name, 'open');
      const bytes = check.pageAligned('size', check.integer('size', size ?? DEFAULT_FILE_SIZE, 0));
      this.#assertParent(n, 'open');
      if (this.#live.has(n)) throw errnoError('EEXIST', 'open', n, 'the volume has this name already');
      const inc = this.#newIncarnation(n);
      try {
        inc.dax = open(this.#real(n), { ...this.#persistOptions(inc), create: true, size: bytes });
        inc.dax.persistence.sizeOwned = true;
      } catch (e) {
        this.#incarnations.delete(inc.id);
        this.#nextId--;
        rmSync(inc.mediaPath, { force: true });
        throw e;
      }
      this.#issue({ kind: 'create', path: n, file: inc.id });
      return new VolumeFile(this, inc);
    });
  }

  /** Open an existing file of the volume (every open shares one DaxFile). */
  open(name: string): VolumeFile {
    this.#assertOpen('open', typeof name === 'string' ? name : undefined);
    const inc = this.#fileAt(this.#name('open: name', name, 'open'), 'open');
    this.#daxOf(inc);
    return new VolumeFile(this, inc);
  }

  /** @internal The incarnation's DaxFile, opened on first use. */
  #daxOf(inc: Incarnation): DaxFile {
    if (!inc.dax) {
      const dax = open(this.#real(inc.name), this.#persistOptions(inc));
      dax.persistence.sizeOwned = true;  // its size changes go through the volume (ERR_UDAX_VOLUME_FILE)
      inc.dax = dax;
    }
    return inc.dax;
  }

  /** Close an incarnation's DaxFile, giving its size back to any other open. */
  #closeDax(inc: Incarnation): void {
    if (inc.dax && !inc.dax.closed) {
      inc.dax.persistence.sizeOwned = false;
      inc.dax.close();
    }
  }

  /** Remove a file's name. Its handles then throw ERR_UDAX_UNLINKED; until
   * the unlink is durable a crash may still show the file. */
  unlink(name: string): void {
    return this.observed('unlink', name, () => {
      this.#assertOpen('unlink', typeof name === 'string' ? name : undefined);
      const n = this.#name('unlink: name', name, 'unlink');
      const inc = this.#fileAt(n, 'unlink');
      this.#removeLive(inc, n);
      this.#issue({ kind: 'unlink', path: n, file: inc.id });
      this.#collect();
    });
  }

  /** Take a live file out of the directory (its bytes stay: an open DaxFile
   * keeps its inode, a never-opened file is moved into .udax). */
  #removeLive(inc: Incarnation, name: string): void {
    if (inc.dax) unlinkSync(this.#real(name));
    else renameSync(this.#real(name), inc.keptDataPath);
    inc.live = false;
  }

  /** rename(2): atomic, replacing a file at `to`. Directories are not
   * renamed (EISDIR). */
  rename(from: string, to: string): void {
    return this.observed('rename', from, () => {
      this.#assertOpen('rename', typeof from === 'string' ? from : undefined);
      const a = this.#name('rename: from', from, 'rename');
      const b = this.#name('rename: to', to, 'rename');
      const inc = this.#fileAt(a, 'rename');
      this.#assertParent(b, 'rename');
      const target = this.#live.get(b);
      if (target?.kind === 'directory') throw errnoError('EISDIR', 'rename', b, 'the target is a directory');
      if (a === b) return;  // rename(2): same file, nothing to do
      const replaced = target ? this.#incarnations.get(target.file)! : undefined;
      if (replaced && !replaced.dax) renameSync(this.#real(b), replaced.keptDataPath);
      try {
        renameSync(this.#real(a), this.#real(b));
      } catch (e) {
        if (replaced && !replaced.dax) renameSync(replaced.keptDataPath, this.#real(b));
        throw e;
      }
      if (replaced) replaced.live = false;
      inc.name = b;
      this.#issue({ kind: 'rename', path: a, to: b, file: inc.id });
      this.#collect();
    }, to);
  }

  mkdir(name: string): void {
    return this.observed('mkdir', name, () => {
      this.#assertOpen('mkdir', typeof name === 'string' ? name : undefined);
      const n = this.#name('mkdir: name', name, 'mkdir');
      this.#assertParent(n, 'mkdir');
      if (this.#live.has(n)) throw errnoError('EEXIST', 'mkdir', n, 'the volume has this name already');
      mkdirSync(this.#real(n));
      this.#issue({ kind: 'mkdir', path: n });
    });
  }

  rmdir(name: string): void {
    return this.observed('rmdir', name, () => {
      this.#assertOpen('rmdir', typeof name === 'string' ? name : undefined);
      const n = this.#name('rmdir: name', name, 'rmdir');
      const node = this.#live.get(n);
      if (!node) throw errnoError('ENOENT', 'rmdir', n, 'no such directory in the volume');
      if (node.kind !== 'directory') throw errnoError('ENOTDIR', 'rmdir', n, 'is a file');
      if (this.#children(n).length > 0) throw errnoError('ENOTEMPTY', 'rmdir', n, 'the directory is not empty');
      rmdirSync(this.#real(n));
      this.#issue({ kind: 'rmdir', path: n });
    });
  }

  #children(dir: string): string[] {
    return [...this.#live.keys()].filter((p) => parentOf(p) === dir);
  }

  /** The entries of a directory of the volume (default: its root), sorted. */
  list(dir?: string): VolumeEntry[] {
    this.#assertOpen('scandir', typeof dir === 'string' ? dir : undefined);
    const d = this.#name('list: dir', dir, 'scandir', true);
    if (d !== '') {
      const node = this.#live.get(d);
      if (!node) throw errnoError('ENOENT', 'scandir', d, 'no such directory in the volume');
      if (node.kind !== 'directory') throw errnoError('ENOTDIR', 'scandir', d, 'is a file');
    }
    return this.#children(d).sort().map((path) => ({
      name: path.slice(d === '' ? 0 : d.length + 1), path, type: this.#live.get(path)!.kind,
    }));
  }

  /** stat(2) of a name: its type and, for a file, its size. */
  stat(name: string): { type: 'file' | 'directory'; size?: number } {
    this.#assertOpen('stat', typeof name === 'string' ? name : undefined);
    const n = this.#name('stat: name', name, 'stat');
    const node = this.#live.get(n);
    if (!node) throw errnoError('ENOENT', 'stat', n, 'no such file or directory in the volume');
    if (node.kind === 'directory') return { type: 'directory' };
    const inc = this.#incarnations.get(node.file)!;
    return { type: 'file', size: inc.dax ? inc.dax.size : statSync(this.#real(n)).size };
  }

  /** fsync(2) of a directory of the volume (default: its root): makes the
   * operations the metadata model says durable. */
  syncDirectory(dir?: string): void {
    return this.observed('fsync-dir', dir ?? '', () => {
      this.#assertOpen('fsync', typeof dir === 'string' ? dir : undefined);
      const d = this.#name('syncDirectory: dir', dir, 'fsync', true);
      if (d !== '' && this.#live.get(d)?.kind !== 'directory') {
        throw errnoError(this.#live.has(d) ? 'ENOTDIR' : 'ENOENT', 'fsync', d, 'no such directory in the volume');
      }
      this.#makeDurable(this.#model.durableOnDirectorySync(this.#pending, d));
    });
  }

  /** @internal A file's fsync: after its data, the operations the model
   * says (its own size changes under both). */
  fileSynced(inc: Incarnation): void {
    this.#makeDurable(this.#model.durableOnFileSync(this.#pending, inc.id));
  }

  /** @internal Run fn, a call that may change the file's size to target
   * (resize, a write past the end), and issue the change as a pending 'size'
   * operation; a shrink's carries what it cut. */
  sizeChanging<T>(inc: Incarnation, dax: DaxFile, target: number, fn: () => T): T {
    const before = dax.size;
    if (target > before) this.#keepCutBytes(inc, dax, before, target);
    const result = fn();
    const after = dax.size;
    if (after !== before) this.#issue({ kind: 'size', path: inc.name, file: inc.id, size: after, ...(after < before ? { cut: { from: after, to: before } } : {}) });
    return result;
  }

  /** A grow of [from, to) into a range a pending shrink cut: keep the media's
   * bytes of that cut first, since what the grow's call writes there
   * overwrites them (until then they are as the shrink left them: nothing
   * writes a media past the file's end, and only the fsync that makes the
   * shrink durable cuts the media). */
  #keepCutBytes(inc: Incarnation, dax: DaxFile, from: number, to: number): void {
    const media = dax.persistence.media;
    if (!media) return;
    for (const op of this.#pending) {
      const cut = op.kind === 'size' && op.file === inc.id ? op.cut : undefined;
      if (!cut || cut.bytes || cut.to <= from || cut.from >= to) continue;
      const bytes = new Uint8Array(cut.to - cut.from);
      const readable = Math.max(0, Math.min(bytes.length, media.size - cut.from));
      if (readable > 0) media.read(cut.from, bytes.subarray(0, readable));
      cut.bytes = bytes;
    }
  }

  #makeDurable(indices: number[]): void {
    if (indices.length === 0) return;
    const durable = new Set(indices);
    for (const i of indices) {
      const op = this.#pending[i];
      applyOp(this.#durable, op);
      // A size change made durable by the commit: the file's own size step
      // (its durableSize stays the one authority). The model commits every
      // pending size change of a file at once, so that is its live size.
      if (op.kind === 'size') {
        const dax = this.#incarnations.get(op.file)?.dax;
        if (dax && !dax.closed) dax.syncSize();
      }
    }
    this.#pending = this.#pending.filter((_, i) => !durable.has(i));
    this.#collect();
  }

  /** Close the DaxFile and drop the bytes of every incarnation no crash can
   * show any more: not live, not durable, named by no pending namespace
   * operation (its pending size changes are dropped with it). */
  #collect(): void {
    const named = new Set<number>();
    for (const node of this.#durable.values()) if (node.kind === 'file') named.add(node.file);
    for (const op of this.#pending) if ('file' in op && op.kind !== 'size') named.add(op.file);
    const before = this.#incarnations.size;
    for (const inc of [...this.#incarnations.values()]) {
      if (inc.live || named.has(inc.id)) continue;
      this.#closeDax(inc);
      rmSync(inc.mediaPath, { force: true });
      rmSync(inc.keptDataPath, { force: true });
      this.#incarnations.delete(inc.id);
    }
    if (this.#incarnations.size !== before) this.#pending = this.#pending.filter((op) => op.kind !== 'size' || this.#incarnations.has(op.file));
  }

  /** The namespace operations not yet durable, described ("rename 'a' -> 'b'"). */
  pendingOperations(): string[] {
    return this.#pending.map(describeOp);
  }

  /** The crash states of the whole volume now (docs/volumes.md): a snapshot
   * taken under every file's entry locks, a base image built once at
   * opts.dir, and each state patched in and out of it. close() them. */
  crashStates(opts: VolumeCrashStatesOptions): VolumeCrashStates {
    return new VolumeCrashStates(this, opts);
  }

  /** @internal */
  view(): VolumeView {
    this.#assertOpen('read');
    return { dir: this.dir, model: this.#model, durable: this.#durable, pending: this.#pending, incarnations: this.#incarnations };
  }

  /** @internal A handle's incarnation, checked live. */
  daxFor(inc: Incarnation, syscall: string): DaxFile {
    this.#assertOpen(syscall, inc.name);
    if (!inc.live) throw udaxError('ERR_UDAX_UNLINKED', 'the file was unlinked or replaced by a rename since this handle was opened:', { syscall, path: inc.name });
    return this.#daxOf(inc);
  }

  /** Close every file (mappings are unmapped; nothing is written back) and
   * drop the media: a later openVolume counts the files as durable. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const inc of this.#incarnations.values()) this.#closeDax(inc);
    this.#incarnations.clear();
    rmSync(this.#private, { recursive: true, force: true });  // the lock file too, before the lock goes (src/volume-lock.ts)
    this.#lock.release();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** One open of a volume file (an fd). Its operations check that the file
 * still has its name: after unlink, or a rename over it, ERR_UDAX_UNLINKED. */
export class VolumeFile {
  readonly #volume: Volume;
  readonly #inc: Incarnation;
  #closed = false;

  /** @internal Use volume.create() or volume.open(). */
  constructor(volume: Volume, inc: Incarnation) {
    this.#volume = volume;
    this.#inc = inc;
  }

  /** Its name in the volume now (or the last it had). */
  get name(): string {
    return this.#inc.name;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The underlying DaxFile (stats, dirtyRanges, withEntriesLocked, ...). */
  get file(): DaxFile {
    return this.#dax('open');
  }

  get size(): number {
    return this.#dax('fstat').size;
  }

  #dax(syscall: string): DaxFile {
    if (this.#closed) throw errnoError('EBADF', syscall, this.#inc.name, 'file is closed');
    return this.#volume.daxFor(this.#inc, syscall);
  }

  map(opts?: MapOptions): Mapping {
    return this.#dax('mmap').map(opts);
  }

  /** With no range: fsync(2) — the file's data, then the names the metadata
   * model makes durable with it. With a range: msync of it, data only. */
  sync(offset?: number, length?: number): SyncResult {
    const ranged = offset !== undefined || length !== undefined;
    return this.#volume.observed(ranged ? 'msync' : 'fsync', this.#inc.name, () => {
      const dax = this.#dax('fsync');
      if (ranged) return dax.sync(offset, length);
      try {
        return dax.sync();
      } finally {
        this.#volume.fileSynced(this.#inc);  // a failed fsync still commits the journal
      }
    });
  }

  write(data: ArrayBufferView, position: number): number {
    return this.#volume.observed('write', this.#inc.name, () => {
      const dax = this.#dax('pwrite');
      const end = ArrayBuffer.isView(data) && typeof position === 'number' ? Math.ceil((position + data.byteLength) / PAGE_SIZE) * PAGE_SIZE : 0;
      return this.#volume.sizeChanging(this.#inc, dax, end, () => dax.ownerWrite(data, position));
    });
  }

  read(data: ArrayBufferView, position: number): number {
    return this.#dax('pread').read(data, position);
  }

  /** ftruncate(2): grow or shrink (file.resize). The size change is a
   * pending operation, as a write past the end's is: durable at the file's
   * fsync, and under 'ext4/xfs' at any fsync (docs/volumes.md, Sizes). */
  resize(newSize: number): void {
    this.#volume.observed('resize', this.#inc.name, () => {
      const dax = this.#dax('ftruncate');
      this.#volume.sizeChanging(this.#inc, dax, typeof newSize === 'number' ? newSize : 0, () => dax.ownerResize(newSize));
    });
  }

  /** Close this handle. The file stays open in the volume (its mappings
   * too) until the volume closes or the file is gone. */
  close(): void {
    this.#closed = true;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Open (or with create: true, make) a directory as a volume. */
export function openVolume(dir: string, opts?: VolumeOptions): Volume {
  checkPath('dir', dir);
  const o = check.options<VolumeOptions>('openVolume options', opts);
  const metadata = o.metadata ?? 'ext4/xfs';
  if (!METADATA_MODELS.includes(metadata)) throw rangeError(`metadata must be ${METADATA_MODELS.map((m) => `'${m}'`).join(' or ')}, got ${String(metadata)}`);
  if ((o as PersistOptions).mediaPath !== undefined) throw typeError('mediaPath is chosen by the volume (one media file per file, in .udax/)');
  const create = check.boolean('create', o.create, false);
  const entrySize = o.entrySize ?? PAGE_SIZE;
  if (entrySize !== PAGE_SIZE && entrySize !== PMD_SIZE) throw rangeError(`entrySize must be ${PAGE_SIZE} or ${PMD_SIZE}, got ${String(entrySize)}`);
  const persist: PersistOptions = { media: o.media ?? 'shadow', granularity: o.granularity, sectorSize: o.sectorSize, timing: o.timing };
  parsePersistOptions(persist);  // bad options fail here, before anything is made
  let st;
  try {
    st = statSync(dir);
  } catch (e) {
    if ((e as { code?: string }).code !== 'ENOENT' || !create) throw errnoError('ENOENT', 'open', dir, 'no such directory (pass create: true)');
    mkdirSync(dir, { recursive: true });
    st = statSync(dir);
  }
  if (!st.isDirectory()) throw errnoError('ENOTDIR', 'open', dir, 'a volume is a directory');
  const openOptions = { ...persist, entrySize, ...(o.tracker === undefined ? {} : { tracker: o.tracker }) };
  return new Volume(dir, metadataModel(metadata), openOptions);
}
