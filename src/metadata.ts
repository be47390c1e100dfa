// Metadata durability: what a crash may keep of the namespace operations
// (create, unlink, rename, mkdir, rmdir) that no fsync has made durable yet.
// docs/volumes.md gives the sources. Two models:
//
// 'ext4/xfs' (default): operations go to one journal in the order they were
//   issued, and a crash keeps a prefix of them (a later operation durable
//   implies every earlier one is). fsync of any file or directory commits the
//   journal: every operation issued before it is durable (so a new file's
//   fsync also makes its name durable).
// 'strict-posix': nothing but an fsync of a directory makes entries in it
//   durable, and operations may reach the disk in any order that respects
//   their dependencies (an operation depends on every earlier one that
//   touches the same path or a path above or below it). A crash keeps any
//   set of pending operations closed under those dependencies.
//
// Sizes are metadata too: a size change (ftruncate, a write past the end)
// is a 'size' operation. The file's own fsync makes it durable under both
// models (the DaxFile's durableSize is the authority); under 'ext4/xfs' any
// journal commit carries it and a crash keeps it as part of the prefix;
// under 'strict-posix' no directory fsync does, and it depends only on the
// file's earlier size changes.

import { combinations } from './subsets.js';

export type MetadataModelName = 'ext4/xfs' | 'strict-posix';
export const METADATA_MODELS: readonly MetadataModelName[] = ['ext4/xfs', 'strict-posix'];

/** One namespace operation, as the volume issued it. `file` is the
 * incarnation (one created file, until it is unlinked or replaced). */
export type MetaOp =
  | { seq: number; kind: 'create'; path: string; file: number }
  | { seq: number; kind: 'unlink'; path: string; file: number }
  | { seq: number; kind: 'rename'; path: string; to: string; file: number }
  | { seq: number; kind: 'mkdir'; path: string }
  | { seq: number; kind: 'rmdir'; path: string }
  | { seq: number; kind: 'size'; path: string; file: number; size: number; cut?: SizeCut };

/** What a shrink cut, [from, to), and — kept once the file grows back into
 * that range, before anything is written there — the media's bytes of it as
 * the shrink left them. ext4 and xfs do not reuse a freed block before the
 * transaction that freed it commits, so a crash state that does not keep
 * the shrink shows these bytes there (src/volume-crash.ts). */
export interface SizeCut {
  readonly from: number;
  readonly to: number;
  bytes?: Uint8Array;
}

export type NamespaceNode = { kind: 'file'; file: number } | { kind: 'directory' };
/** Paths (relative, '/'-separated; '' is the root, never stored) to nodes. */
export type Namespace = Map<string, NamespaceNode>;

export function parentOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/** What applyOp needs of a namespace (a Map, or an overlay on one). */
export interface NamespaceLike {
  get(path: string): NamespaceNode | undefined;
  set(path: string, node: NamespaceNode): unknown;
  delete(path: string): boolean;
}

/** Apply op to ns (op was valid when issued, and every op it depends on
 * has been applied). Returns the file a rename replaced, if any. */
export function applyOp(ns: NamespaceLike, op: MetaOp): number | undefined {
  switch (op.kind) {
    case 'create': ns.set(op.path, { kind: 'file', file: op.file }); return undefined;
    case 'unlink': ns.delete(op.path); return undefined;
    case 'mkdir': ns.set(op.path, { kind: 'directory' }); return undefined;
    case 'rmdir': ns.delete(op.path); return undefined;
    case 'size': return undefined;  // the inode's, not the namespace's
    case 'rename': {
      const replaced = ns.get(op.to);
      ns.set(op.to, { kind: 'file', file: op.file });
      ns.delete(op.path);
      return replaced?.kind === 'file' ? replaced.file : undefined;
    }
  }
}

/** A namespace as a base plus changes, so a crash state costs the
 * operations it replays, not a copy of a namespace of 1,000 files. */
export class NamespaceOverlay implements NamespaceLike {
  readonly #base: Namespace;
  /** Changed paths: their node, or null where removed. */
  readonly #changed = new Map<string, NamespaceNode | null>();

  constructor(base: Namespace) {
    this.#base = base;
  }

  get(path: string): NamespaceNode | undefined {
    const c = this.#changed.get(path);
    return c === null ? undefined : c ?? this.#base.get(path);
  }

  set(path: string, node: NamespaceNode): void {
    this.#changed.set(path, node);
  }

  delete(path: string): boolean {
    const had = this.get(path) !== undefined;
    this.#changed.set(path, null);
    return had;
  }

  /** Whether the file is at some path: baseFiles are the base's files. */
  hasFile(file: number, baseFiles: ReadonlySet<number>): boolean {
    let displaced = false;
    for (const [path, node] of this.#changed) {
      if (node?.kind === 'file' && node.file === file) return true;
      const was = this.#base.get(path);
      if (was?.kind === 'file' && was.file === file) displaced = true;
    }
    return !displaced && baseFiles.has(file);
  }
}

export function describeOp(op: MetaOp): string {
  if (op.kind === 'rename') return `rename '${op.path}' -> '${op.to}'`;
  if (op.kind === 'size') return `size '${op.path}' -> ${op.size}`;
  return `${op.kind} '${op.path}'`;
}

function pathsOf(op: MetaOp): string[] {
  return op.kind === 'rename' ? [op.path, op.to] : [op.path];
}

const related = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);

/** True when later must not persist without earlier (issued before it). A
 * size change depends only on the same file's earlier size changes. */
export function dependsOn(later: MetaOp, earlier: MetaOp): boolean {
  if (later.kind === 'size' || earlier.kind === 'size') return later.kind === 'size' && earlier.kind === 'size' && later.file === earlier.file;
  return pathsOf(later).some((a) => pathsOf(earlier).some((b) => related(a, b)));
}

/** A metadata model: which pending operations an fsync makes durable, and
 * which sets of pending operations a crash may keep. Indices are into the
 * pending list, in issue order; every returned set is ascending. */
export interface MetadataModel {
  readonly name: MetadataModelName;
  /** fsync of file (the whole file, as fsync(2)). */
  durableOnFileSync(pending: readonly MetaOp[], file: number): number[];
  /** fsync of a directory. */
  durableOnDirectorySync(pending: readonly MetaOp[], dir: string): number[];
  /** The set a crash keeps when at least the chosen operations persisted. */
  kept(pending: readonly MetaOp[], chosen: readonly number[]): number[];
  /** Every set a crash may keep, each once, with its cost in units (the
   * operations that had to persist on their own), cheapest first, up to
   * maxCost. */
  choices(pending: readonly MetaOp[], maxCost: number): { kept: number[]; cost: number }[];
  /** One set a crash may keep, drawn with random() (probability: the chance
   * each operation persisted), of cost at most maxCost. */
  sample(pending: readonly MetaOp[], random: () => number, probability: number, maxCost: number): number[];
}

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The journal: a crash keeps a prefix; any fsync commits everything. */
const journaled: MetadataModel = {
  name: 'ext4/xfs',
  durableOnFileSync: (pending) => upTo(pending.length),
  durableOnDirectorySync: (pending) => upTo(pending.length),
  kept: (_pending, chosen) => (chosen.length === 0 ? [] : upTo(Math.max(...chosen) + 1)),
  // The prefix through op j is one unit: "the journal committed through j".
  choices: (pending, maxCost) => [{ kept: [], cost: 0 }, ...(maxCost < 1 ? [] : pending.map((_, j) => ({ kept: upTo(j + 1), cost: 1 })))],
  sample: (pending, random, probability, maxCost) => {
    if (maxCost < 1 || pending.length === 0 || random() >= probability) return [];
    return upTo(1 + Math.floor(random() * pending.length));
  },
};

/** Pending operations ordered only by their dependencies. */
const strict: MetadataModel = {
  name: 'strict-posix',
  durableOnFileSync: (pending, file) => pending.flatMap((op, i) => (op.kind === 'size' && op.file === file ? [i] : [])),
  durableOnDirectorySync: (pending, dir) =>
    closure(pending, pending.flatMap((op, i) => (op.kind !== 'size' && pathsOf(op).some((p) => parentOf(p) === dir) ? [i] : []))),
  kept: (pending, chosen) => closure(pending, chosen),
  choices: (pending, maxCost) => {
    const out: { kept: number[]; cost: number }[] = [];
    const n = pending.length;
    for (let size = 0; size <= Math.min(maxCost, n); size++) {
      for (const c of combinations(n, size)) if (isClosed(pending, c)) out.push({ kept: [...c], cost: size });
    }
    return out;
  },
  sample: (pending, random, probability, maxCost) => {
    // In issue order: an operation may persist only if what it depends on did.
    const kept: number[] = [];
    for (let i = 0; i < pending.length && kept.length < maxCost; i++) {
      const draw = random();
      if (draw < probability && pending.slice(0, i).every((e, j) => !dependsOn(pending[i], e) || kept.includes(j))) kept.push(i);
    }
    return kept;
  },
};

/** chosen plus everything it depends on, transitively. */
function closure(pending: readonly MetaOp[], chosen: readonly number[]): number[] {
  const inSet = new Uint8Array(pending.length);
  for (const i of chosen) inSet[i] = 1;
  for (let i = pending.length - 1; i >= 0; i--) {
    if (!inSet[i]) continue;
    for (let j = 0; j < i; j++) if (!inSet[j] && dependsOn(pending[i], pending[j])) inSet[j] = 1;
  }
  return upTo(pending.length).filter((i) => inSet[i]);
}

function isClosed(pending: readonly MetaOp[], set: readonly number[]): boolean {
  return closure(pending, set).length === set.length;
}

export function metadataModel(name: MetadataModelName): MetadataModel {
  return name === 'ext4/xfs' ? journaled : strict;
}
