// Layer 4: one file shared by several processes (docs/processes.md). Each
// peer is a separate `node` process (test/workers/peer.mjs) driven over its
// stdin, with timeouts: stores in one are written back by a sync in another;
// a peer killed with SIGKILL (mid-store, holding entry locks, inside a
// harvest; a read-only peer holding entry locks, with every tracker) or
// stopped hangs no one and loses nothing it stored; writeback errors reach
// every process's handles once; crash states and checkRecovery in any
// process see every process's stores; what a peer cannot share is refused.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { checkRecovery, open, openVolume, type DaxFile, type Volume } from 'udax';
import { ENTRY_BITS, entryWord } from 'udax/testing';
import { removeScratch, scratchPath, TRACKER } from './helpers.js';

const PAGE = 4096;
const peerScript = new URL('./workers/peer.mjs', import.meta.url).pathname;
const peers: Peer[] = [];

afterEach(() => {
  for (const p of peers.splice(0)) p.kill();
});
afterAll(removeScratch);

class Peer {
  readonly child: ChildProcessWithoutNullStreams;
  readonly exited: Promise<NodeJS.Signals | null>;
  #buffer = '';
  #lines: string[] = [];
  #wake: (() => void) | undefined;
  stderr = '';

  constructor(opts: { uid?: number; gid?: number } = {}) {
    this.child = spawn(process.execPath, [peerScript], { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
    this.exited = new Promise((resolve) => this.child.on('exit', (_code, signal) => resolve(signal)));
    this.child.stdout.on('data', (d) => {
      this.#buffer += d;
      const parts = this.#buffer.split('\n');
      this.#buffer = parts.pop()!;
      this.#lines.push(...parts);
      this.#wake?.();
    });
    this.child.stderr.on('data', (d) => { this.stderr += d; });
    peers.push(this);
  }

  /** The next answer, or a timeout naming what the peer said on stderr. */
  async next(timeoutMs = 15_000): Promise<{ ok?: any; error?: { code?: string; message: string; syscall?: string } }> {
    const deadline = Date.now() + timeoutMs;
    while (this.#lines.length === 0) {
      if (Date.now() > deadline) throw new Error(`peer ${this.child.pid} did not answer: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 50);
      });
    }
    return JSON.parse(this.#lines.shift()!);
  }

  send(cmd: object): void {
    this.child.stdin.write(`${JSON.stringify(cmd)}\n`);
  }

  /** Run cmd; its result, or throw its error (with code). */
  async call(cmd: object, timeoutMs?: number): Promise<any> {
    this.send(cmd);
    const a = await this.next(timeoutMs);
    if (a.error) throw Object.assign(new Error(a.error.message), a.error);
    return a.ok;
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

const bytesOf = (s: string) => [...new TextEncoder().encode(s)];
const read = (path: string) => readFileSync(path);
const sidecarOf = (path: string) => {
  const st = statSync(path);
  return `/dev/shm/udax-table-v5.${st.dev.toString(16)}.${st.ino.toString(16)}`;  // docs/processes.md
};

/** Media equals live: the data file (tmpfs: the page cache, what every
 * mapping sees) and its shadow media, byte for byte. */
function expectMediaEqualsLive(path: string): void {
  const live = read(path);
  const media = read(`${path}.media`);
  expect(media.length).toBe(live.length);
  if (Buffer.compare(live, media) !== 0) {
    let first = 0;
    while (live[first] === media[first]) first++;
    expect.fail(`media differs from live first at byte ${first} (page ${Math.floor(first / PAGE)})`);
  }
}

async function twoPeers(size = 16 * PAGE, media = true) {
  const path = scratchPath('shared');
  const a = new Peer();
  const b = new Peer();
  await a.call({ op: 'open', path, opts: { create: true, size, ...(media ? { media: 'shadow' } : {}) } });
  await b.call({ op: 'open', path });
  return { path, a, b };
}

describe(`several processes, one file (${TRACKER} tracker)`, () => {
  test('two separate node processes: one stores, the other syncs, and the media holds the store', async () => {
    const { path, a, b } = await twoPeers();
    await a.call({ op: 'store', offset: 5000, bytes: bytesOf('stored in A') });
    await a.call({ op: 'store', offset: 9 * PAGE + 7, bytes: bytesOf('and here') });
    await b.call({ op: 'sync' });
    const media = read(`${path}.media`);
    expect(media.subarray(5000, 5011).toString()).toBe('stored in A');
    expect(media.subarray(9 * PAGE + 7, 9 * PAGE + 15).toString()).toBe('and here');
    const stats = await b.call({ op: 'stats' });
    expect(stats.dirtyEntries).toBe(0);
    if (TRACKER === 'async') expect(stats.pagesHarvested).toBeGreaterThanOrEqual(2);
    if (TRACKER === 'sigsegv') expect(stats.shootdowns).toBeGreaterThanOrEqual(1);  // A's helper was asked
    // B's sync write-protected A's pages again (async: B's harvest; sigbus:
    // through A's userfaultfd; sigsegv: A's helper thread, on B's request):
    // A's next store is seen.
    await a.call({ op: 'store', offset: 5000, bytes: bytesOf('STORED AGAIN') });
    expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(1);  // async: stats harvests A's page tables too
    await b.call({ op: 'sync' });
    expect(read(`${path}.media`).subarray(5000, 5012).toString()).toBe('STORED AGAIN');
    expectMediaEqualsLive(path);
    // Both see one table: A's view of the syncs B ran.
    expect((await a.call({ op: 'stats' })).syncs).toBe((await b.call({ op: 'stats' })).syncs);
  });

  test('stress: writers in two processes, syncs from both, media equals live after a final sync', async () => {
    for (let round = 0; round < 3; round++) {
      const { path, a, b } = await twoPeers(64 * PAGE);
      const c = new Peer();
      await c.call({ op: 'open', path });
      await Promise.all([
        a.call({ op: 'storeLoop', seed: 1 + round, rounds: 400, syncEvery: 7 }, 60_000),
        b.call({ op: 'storeLoop', seed: 100 + round, rounds: 400, syncEvery: 11 }, 60_000),
        (async () => { for (let k = 0; k < 20; k++) await c.call({ op: 'sync' }); })(),
      ]);
      await c.call({ op: 'sync' });
      expectMediaEqualsLive(path);
      // sigsegv: with every process stopped storing, no page of a and b is
      // writable behind a clean entry (a shootdown not acked kept it DIRTY).
      if (TRACKER === 'sigsegv') for (const p of [a, b]) expect(await p.call({ op: 'writableClean' })).toEqual([]);
      for (const p of [a, b, c]) p.kill();
    }
  });

  test('a peer with 600 mappings of the file (one page each): a sync in another process writes back the stores of every one', async () => {
    const { path, a, b } = await twoPeers(64 * PAGE);
    expect(await a.call({ op: 'mapPages', count: 600, value: 7 })).toBe(600);
    await b.call({ op: 'sync' });
    expectMediaEqualsLive(path);
    expect(read(`${path}.media`)[599 % 64 * PAGE + Math.floor(599 / 64)]).toBe((7 + 599) & 255);
    expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(0);
  });

  test('stress: a writer stopped and continued over and over while the others store and sync: media equals live', async () => {
    const { path, a, b } = await twoPeers(64 * PAGE);
    const c = new Peer();
    await c.call({ op: 'open', path });
    let running = true;
    const toggler = (async () => {
      while (running) {
        a.child.kill('SIGSTOP');
        await new Promise((r) => setTimeout(r, 15));
        a.child.kill('SIGCONT');
        await new Promise((r) => setTimeout(r, 15));
      }
    })();
    try {
      await Promise.all([
        a.call({ op: 'storeLoop', seed: 7, rounds: 300, syncEvery: 5 }, 60_000),
        b.call({ op: 'storeLoop', seed: 8, rounds: 300, syncEvery: 9 }, 60_000),
        (async () => { for (let k = 0; k < 30; k++) await c.call({ op: 'sync' }, 5_000); })(),
      ]);
    } finally {
      running = false;
      await toggler;
      a.child.kill('SIGCONT');
    }
    await c.call({ op: 'sync' });
    expectMediaEqualsLive(path);
    if (TRACKER === 'sigsegv') {
      for (const p of [a, b]) expect(await p.call({ op: 'writableClean' })).toEqual([]);
      const stats = await c.call({ op: 'stats' });
      expect(stats.shootdowns).toBeGreaterThan(0);
    }
  });

  test('a peer killed with SIGKILL mid-store hangs no sync and loses nothing it stored', async () => {
    const { path, a, b } = await twoPeers(32 * PAGE);
    a.send({ op: 'spin' });
    expect((await a.next()).ok).toBe('spinning');
    await b.call({ op: 'sync' });  // a sync while it stores
    await new Promise((r) => setTimeout(r, 100));
    a.kill();
    expect(await a.exited).toBe('SIGKILL');
    await b.call({ op: 'sync' }, 10_000);
    expectMediaEqualsLive(path);  // its last stores too
    expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(0);
  });

  test('peers killed with SIGKILL at random points of their store-and-sync loops (mid-sync too) lose nothing they stored', async () => {
    for (let round = 0; round < 4; round++) {
      const { path, a, b } = await twoPeers(64 * PAGE);
      a.send({ op: 'storeLoop', seed: 7 + round, rounds: 1_000_000, syncEvery: 1 });  // a sync after every 64 stores
      b.send({ op: 'storeLoop', seed: 70 + round, rounds: 1_000_000, syncEvery: 3 });
      await new Promise((r) => setTimeout(r, 150 + 60 * round));
      a.kill();
      expect(await a.exited).toBe('SIGKILL');
      const c = new Peer();
      await c.call({ op: 'open', path });
      await c.call({ op: 'sync' }, 10_000);  // beside b, still storing and syncing
      b.kill();
      expect(await b.exited).toBe('SIGKILL');
      await c.call({ op: 'sync' }, 10_000);
      expectMediaEqualsLive(path);
      expect((await c.call({ op: 'stats' })).dirtyEntries).toBe(0);
      c.kill();
    }
  });

  test('a stopped peer does not stall a sync; its pages are write-protected meanwhile, so its next store is caught', async () => {
    const { path, a, b } = await twoPeers();
    await a.call({ op: 'store', offset: 2 * PAGE, bytes: bytesOf('before the stop') });
    a.child.kill('SIGSTOP');
    try {
      // async: scans its page tables; sigbus: through its userfaultfd;
      // sigsegv: its helper cannot ack, so the sync flushes and keeps the
      // entry DIRTY (A may still store into it). Twice: no stall either time.
      for (let k = 0; k < 2; k++) {
        await b.call({ op: 'sync' }, 3_000);
        expect(read(`${path}.media`).subarray(2 * PAGE, 2 * PAGE + 15).toString()).toBe('before the stop');
        if (TRACKER === 'sigsegv') expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(1);
      }
      if (TRACKER === 'sigsegv') expect((await b.call({ op: 'stats' })).shootdownsUnacked).toBeGreaterThanOrEqual(2);
    } finally {
      a.child.kill('SIGCONT');
    }
    if (TRACKER === 'sigsegv') {
      // Running again, A serves the pending request; a later sync is acked and cleans.
      let dirty = -1;
      for (let k = 0; k < 40 && dirty !== 0; k++) {
        if (k) await new Promise((r) => setTimeout(r, 50));
        await b.call({ op: 'sync' });
        dirty = (await b.call({ op: 'stats' })).dirtyEntries;
      }
      expect(dirty).toBe(0);
    }
    await a.call({ op: 'store', offset: 2 * PAGE, bytes: bytesOf('after the stop!') });
    if (TRACKER !== 'async') expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(1);  // caught
    await b.call({ op: 'sync' });
    expect(read(`${path}.media`).subarray(2 * PAGE, 2 * PAGE + 15).toString()).toBe('after the stop!');
    expectMediaEqualsLive(path);
  });

  test('a peer stopped, then killed: nothing it stored is lost, and its entries end clean', async () => {
    const { path, a, b } = await twoPeers();
    await a.call({ op: 'store', offset: 5 * PAGE + 9, bytes: bytesOf('stored, stopped, killed') });
    a.child.kill('SIGSTOP');
    await b.call({ op: 'sync' }, 3_000);  // sigsegv: unacked, flushed, kept DIRTY
    a.kill();
    expect(await a.exited).toBe('SIGKILL');
    await b.call({ op: 'sync' }, 3_000);  // a dead peer needs nothing: cleaned
    expect(read(`${path}.media`).subarray(5 * PAGE + 9, 5 * PAGE + 32).toString()).toBe('stored, stopped, killed');
    expectMediaEqualsLive(path);
    expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(0);
  });

  test('a peer killed holding entry locks: a sync in another process takes them over (DIRTY) and returns', async () => {
    const { path, a, b } = await twoPeers();
    await a.call({ op: 'store', offset: 100, bytes: bytesOf('before the lock') });
    a.send({ op: 'lockAndHang', offset: 0, length: 4 * PAGE });
    expect((await a.next()).ok).toBe('locked');
    a.kill();
    expect(await a.exited).toBe('SIGKILL');
    await b.call({ op: 'store', offset: PAGE + 1, bytes: bytesOf('B') });
    await b.call({ op: 'sync' }, 10_000);
    expect(read(`${path}.media`).subarray(100, 115).toString()).toBe('before the lock');
    expectMediaEqualsLive(path);
    expect((await b.call({ op: 'stats' })).locksRecovered).toBeGreaterThanOrEqual(1);
  });

  test.runIf(TRACKER === 'async')('a peer killed inside a harvest (holding the harvest lock, its scan not yet DIRTY) loses nothing', async () => {
    const { path, a, b } = await twoPeers();
    a.send({ op: 'syncInHarvest', offset: 3 * PAGE, bytes: bytesOf('scanned, then killed'), delayNs: 60e9 });
    expect((await a.next()).ok).toBe('harvesting');
    await new Promise((r) => setTimeout(r, 300));  // inside the harvest's delay
    a.kill();
    expect(await a.exited).toBe('SIGKILL');
    await b.call({ op: 'sync' }, 10_000);
    expect(read(`${path}.media`).subarray(3 * PAGE, 3 * PAGE + 20).toString()).toBe('scanned, then killed');
    expectMediaEqualsLive(path);
  });

  test('two processes each holding an entry lock and syncing the other\'s entry: one gets ERR_UDAX_DEADLOCK, the other syncs, nothing hangs', async () => {
    const { path, a, b } = await twoPeers();
    const got = await Promise.all([a.call({ op: 'crossLock', k: 0 }, 10_000), b.call({ op: 'crossLock', k: 1 }, 10_000)]);
    expect(got.sort()).toEqual(['ERR_UDAX_DEADLOCK', 'done']);
    await a.call({ op: 'sync' });
    expectMediaEqualsLive(path);
    expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(0);
  });

  test('an injected writeback error reaches every handle in every process once', async () => {
    const { a, b } = await twoPeers();
    await a.call({ op: 'store', offset: 0, bytes: [1] });
    await b.call({ op: 'inject', opts: { offset: 0, length: PAGE, errno: 'EIO' } });
    await expect(b.call({ op: 'sync' })).rejects.toMatchObject({ code: 'EIO', syscall: 'fsync' });
    await b.call({ op: 'sync' });
    await expect(b.call({ op: 'handleSync' })).rejects.toMatchObject({ code: 'EIO' });
    await b.call({ op: 'handleSync' });
    await expect(a.call({ op: 'sync' })).rejects.toMatchObject({ code: 'EIO' });
    await a.call({ op: 'sync' });
    await expect(a.call({ op: 'handleSync' })).rejects.toMatchObject({ code: 'EIO' });
    await a.call({ op: 'handleSync' });
    expect((await a.call({ op: 'stats' })).persistence.errorsReported).toBe(4);
  });

  test('a peer joins with the file\'s tracker (here sigsegv, by shootdown); asking for another is refused', async () => {
    const path = scratchPath('mixed');
    const a = new Peer();
    const b = new Peer();
    const c = new Peer();
    await a.call({ op: 'open', path, opts: { create: true, size: 4 * PAGE, tracker: 'sigsegv', media: 'shadow' } });
    expect((await b.call({ op: 'open', path, opts: { tracker: 'auto' } })).tracker).toBe('sigsegv');
    await expect(c.call({ op: 'open', path, opts: { tracker: 'async' } })).rejects.toMatchObject({ code: 'ERR_UDAX_ALREADY_OPEN' });
    expect((await c.call({ op: 'open', path, opts: { readOnly: true, tracker: 'auto' } })).tracker).toBe('sigsegv');
    await a.call({ op: 'store', offset: PAGE + 3, bytes: bytesOf('from A') });
    await b.call({ op: 'sync' });
    expect(read(`${path}.media`).subarray(PAGE + 3, PAGE + 9).toString()).toBe('from A');
    expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(0);
    await a.call({ op: 'store', offset: PAGE + 3, bytes: bytesOf('again') });  // A's helper write-protected it: caught
    expect((await c.call({ op: 'stats' })).dirtyEntries).toBe(1);
    await b.call({ op: 'sync' });
    expectMediaEqualsLive(path);
    expect(await a.call({ op: 'writableClean' })).toEqual([]);
  });
});

// Crash images, crash states and checkRecovery read the shared table (which
// entries are DIRTY, whoever's store dirtied them), the shared media and the
// live file: they see every process's stores. Units: 64-byte cache lines.
describe(`crash images and checkRecovery across processes (${TRACKER} tracker)`, () => {
  const text = (image: Uint8Array, offset: number, length: number) => Buffer.from(image.subarray(offset, offset + length)).toString('latin1');
  const zeros = (n: number) => '\0'.repeat(n);
  const DURABLE = { offset: 64, text: 'synced by B' };
  const B_UNSYNCED = { offset: 3 * PAGE + 128, text: 'unsynced, by B' };
  const A_UNSYNCED = { offset: 5 * PAGE + 256, text: 'unsynced, by A' };
  const unitOf = (r: { offset: number }) => ({ offset: r.offset, length: 64 });

  /** Peer B creates the file with a shadow media, stores and syncs DURABLE,
   * then stores B_UNSYNCED; this process joins it and stores A_UNSYNCED. */
  async function storedByBoth() {
    const path = scratchPath('crash');
    const b = new Peer();
    await b.call({ op: 'open', path, opts: { create: true, size: 8 * PAGE, media: 'shadow' } });
    await b.call({ op: 'store', offset: DURABLE.offset, bytes: bytesOf(DURABLE.text) });
    await b.call({ op: 'sync' });
    await b.call({ op: 'store', offset: B_UNSYNCED.offset, bytes: bytesOf(B_UNSYNCED.text) });
    const a = open(path);  // passes no persistence option: takes the file's model
    const m = a.map();
    m.bytes.set(new TextEncoder().encode(A_UNSYNCED.text), A_UNSYNCED.offset);
    return { path, a, b };
  }

  test('crash states taken in one process: a peer\'s synced stores are durable, every process\'s unsynced stores are candidate units', async () => {
    const { path, a, b } = await storedByBoth();
    try {
      expect(a.media).toMatchObject({ kind: 'shadow', unitSize: 64 });
      const states = a.crashStates({ k: 1 });
      expect(states.differed).toEqual([unitOf(B_UNSYNCED), unitOf(A_UNSYNCED)]);
      const seen = [...states].map((st) => ({
        persisted: st.persisted.map((u) => u.offset),
        durable: text(st.image, DURABLE.offset, DURABLE.text.length),
        b: text(st.image, B_UNSYNCED.offset, B_UNSYNCED.text.length),
        a: text(st.image, A_UNSYNCED.offset, A_UNSYNCED.text.length),
      }));
      const none = { b: zeros(B_UNSYNCED.text.length), a: zeros(A_UNSYNCED.text.length) };
      expect(seen).toEqual([
        { persisted: [], durable: DURABLE.text, ...none },
        { persisted: [B_UNSYNCED.offset], durable: DURABLE.text, ...none, b: B_UNSYNCED.text },
        { persisted: [A_UNSYNCED.offset], durable: DURABLE.text, ...none, a: A_UNSYNCED.text },
        { persisted: [B_UNSYNCED.offset, A_UNSYNCED.offset], durable: DURABLE.text, b: B_UNSYNCED.text, a: A_UNSYNCED.text },
      ]);
      // The same from the other side: B's states and images hold A's store.
      const fromB = await b.call({ op: 'crashStates', k: 1 });
      expect(fromB.differed).toEqual(states.differed);
      expect(fromB.persisted).toEqual(seen.map((s) => s.persisted));
      const image = `${path}-image`;
      for (const units of ['none', 'all'] as const) {
        const r = await b.call({ op: 'crashImage', path: image, units });
        expect(r.differed).toEqual(states.differed);
        const bytes = read(image);
        expect(text(bytes, DURABLE.offset, DURABLE.text.length)).toBe(DURABLE.text);
        expect(text(bytes, A_UNSYNCED.offset, A_UNSYNCED.text.length)).toBe(units === 'all' ? A_UNSYNCED.text : none.a);
        expect(text(bytes, B_UNSYNCED.offset, B_UNSYNCED.text.length)).toBe(units === 'all' ? B_UNSYNCED.text : none.b);
      }
      rmSync(image);
      // A sync in A writes back both processes' stores: no candidates left, in either.
      a.sync();
      expect(a.crashStates({ k: 1 }).differed).toEqual([]);
      expect((await b.call({ op: 'crashStates', k: 1 })).differed).toEqual([]);
      expectMediaEqualsLive(path);
    } finally {
      a.close();
    }
  });

  test('checkRecovery in one process runs over states that hold another process\'s stores', async () => {
    const { a } = await storedByBoth();
    try {
      // Each record is whole or absent (one cache line each), the synced one always there.
      const records = (image: Uint8Array) => [B_UNSYNCED, A_UNSYNCED].map((r) => text(image, r.offset, r.text.length));
      const sound = checkRecovery(a, (image) => {
        if (text(image, DURABLE.offset, DURABLE.text.length) !== DURABLE.text) throw new Error('the synced record is missing');
        for (const [j, got] of records(image).entries()) {
          const r = [B_UNSYNCED, A_UNSYNCED][j];
          if (got !== r.text && got !== zeros(r.text.length)) throw new Error(`record at ${r.offset} is torn`);
        }
      }, { k: 2 });
      expect(sound.message).toBe('');
      expect(sound.checked).toBe(4);
      expect(sound.differed).toEqual([unitOf(B_UNSYNCED), unitOf(A_UNSYNCED)]);
      // A recovery that counts on B's unsynced record is rejected: the
      // first state (nothing persisted) lacks it, and the report names B's unit.
      const reliesOnB = checkRecovery(a, (image) => records(image)[0] === B_UNSYNCED.text, { k: 2 });
      expect(reliesOnB.ok).toBe(false);
      expect(reliesOnB.failure).toMatchObject({ kind: 'enumerated', index: 0, persisted: [] });
      expect(reliesOnB.message).toContain(`[${B_UNSYNCED.offset}, ${B_UNSYNCED.offset + 64})`);
      // Seeded random states draw from both processes' units too.
      const drawn = new Set<number>();
      checkRecovery(a, (_image, st) => { for (const u of st.persisted) drawn.add(u.offset); }, { k: 0, includeAll: false, random: 32, seed: 7 });
      expect([...drawn].sort((x, y) => x - y)).toEqual([B_UNSYNCED.offset, A_UNSYNCED.offset]);
    } finally {
      a.close();
    }
  });

  test('a peer killed with SIGKILL after unsynced stores: they stay candidates (neither lost nor durable); its media is the synced data', async () => {
    const { path, a, b } = await storedByBoth();
    try {
      b.kill();
      expect(await b.exited).toBe('SIGKILL');
      const media = read(`${path}.media`);  // the post-power-failure image
      expect(text(media, DURABLE.offset, DURABLE.text.length)).toBe(DURABLE.text);
      expect(text(media, B_UNSYNCED.offset, B_UNSYNCED.text.length)).toBe(zeros(B_UNSYNCED.text.length));
      expect(a.crashStates({ k: 1 }).differed).toEqual([unitOf(B_UNSYNCED), unitOf(A_UNSYNCED)]);
      a.sync();
      expect(text(read(`${path}.media`), B_UNSYNCED.offset, B_UNSYNCED.text.length)).toBe(B_UNSYNCED.text);
      expectMediaEqualsLive(path);
    } finally {
      a.close();
    }
  });
});

// errseq across processes: one word in the shared persistence area, one
// cursor per open file (a DaxFile and each handle), sampled at open.
describe(`writeback errors across processes (${TRACKER} tracker)`, () => {
  test('each error reaches every handle opened before it, in every process, once; handles and processes opened after it was seen are not told', async () => {
    const { path, a, b } = await twoPeers();
    const c = new Peer();
    await c.call({ op: 'open', path });  // a third process, opened before the error, that never stores
    const expectOnce = async (p: Peer, cmd: object, code: string) => {
      await expect(p.call(cmd)).rejects.toMatchObject({ code, syscall: 'fsync' });
      await p.call(cmd);
    };
    // Error 1: A stored, B's writeback fails (and B's sync reports it: seen).
    await a.call({ op: 'store', offset: 0, bytes: [1] });
    await b.call({ op: 'inject', opts: { offset: 0, length: PAGE, errno: 'EIO' } });
    await expectOnce(b, { op: 'sync' }, 'EIO');
    const lateHandle = await a.call({ op: 'openHandle' });  // opened after the error was seen
    const d = new Peer();
    await d.call({ op: 'open', path });  // a process that joins after it
    await a.call({ op: 'syncHandle', index: lateHandle });
    await d.call({ op: 'sync' });
    await d.call({ op: 'handleSync' });
    await expectOnce(c, { op: 'sync' }, 'EIO');
    await expectOnce(c, { op: 'handleSync' }, 'EIO');
    await expectOnce(a, { op: 'handleSync' }, 'EIO');
    await expectOnce(a, { op: 'sync' }, 'EIO');
    await expectOnce(b, { op: 'handleSync' }, 'EIO');
    // Error 2: D stores, A's writeback fails; D's handles, opened before it, are told.
    await d.call({ op: 'store', offset: 3 * PAGE, bytes: [2] });
    await a.call({ op: 'inject', opts: { offset: 3 * PAGE, length: PAGE, errno: 'ENOSPC' } });
    await expectOnce(a, { op: 'syncHandle', index: lateHandle }, 'ENOSPC');
    for (const p of [d, c, b]) await expectOnce(p, { op: 'sync' }, 'ENOSPC');
    await expectOnce(d, { op: 'handleSync' }, 'ENOSPC');
    expect((await c.call({ op: 'stats' })).persistence.errorsReported).toBe(6 + 5);
  });
});

describe(`crash images from a read-only process (${TRACKER} tracker)`, () => {
  test('a read-only open\'s crash states and dirty ranges hold a writer process\'s unsynced stores', async () => {
    const path = scratchPath('checker');
    const b = new Peer();
    await b.call({ op: 'open', path, opts: { create: true, size: 8 * PAGE, media: 'shadow' } });
    await b.call({ op: 'store', offset: 0, bytes: bytesOf('synced') });
    await b.call({ op: 'sync' });
    await b.call({ op: 'store', offset: 2 * PAGE + 64, bytes: bytesOf('not yet') });
    // async: B's store is only a written bit in B's page tables until
    // someone harvests; the checker's harvest scans them (it maps nothing).
    const checker = open(path, { readOnly: true });
    try {
      expect(checker.dirtyRanges()).toEqual([{ offset: 2 * PAGE, length: PAGE }]);
      const states = checker.crashStates({ k: 1 });
      expect(states.differed).toEqual([{ offset: 2 * PAGE + 64, length: 64 }]);
      const images = [...states].map((st) => Buffer.from(st.image.subarray(2 * PAGE + 64, 2 * PAGE + 71)).toString());
      expect(images).toEqual(['\0'.repeat(7), 'not yet']);
      expect(Buffer.from(states[Symbol.iterator]().next().value!.image.subarray(0, 6)).toString()).toBe('synced');
      await b.call({ op: 'sync' });
      expect(checker.crashStates({ k: 1 }).differed).toEqual([]);
    } finally {
      checker.close();
    }
  });
});

// Children (docs/processes.md, "fork"): Node makes them with child_process,
// which forks and execs; a child that wants the file opens it and is a peer.
// Nothing of the parent's crosses: its descriptors are close-on-exec (and
// closed at fork), its tracked mappings MADV_DONTFORK.
describe(`children of a process that has the file open (${TRACKER} tracker)`, () => {
  const fdsOf = (pid: number) => readdirSync(`/proc/${pid}/fd`).map((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      return '';  // closed meanwhile
    }
  });

  test('a child spawned while this process has the file mapped and dirty inherits none of it, opens the file as a peer, and each one\'s sync writes back the other\'s stores', async () => {
    const path = scratchPath('parent');
    const f = open(path, { create: true, size: 8 * PAGE, media: 'shadow' });
    try {
      const m = f.map();
      m.bytes.set(new TextEncoder().encode('parent, before the spawn'), PAGE);
      const child = new Peer();
      await child.call({ op: 'stats' }).catch(() => undefined);  // answers (an error: nothing open) once it runs
      const inherited = fdsOf(child.child.pid!).filter((l) => l.includes('udax-table') || l.startsWith(path) || l.includes('userfaultfd'));
      expect(inherited).toEqual([]);
      expect(await child.call({ op: 'open', path })).toMatchObject({ media: 'shadow' });  // joined the parent's table and model
      await child.call({ op: 'store', offset: 4 * PAGE, bytes: bytesOf('the child') });
      await child.call({ op: 'sync' });
      const media = read(`${path}.media`);
      expect(media.subarray(PAGE, PAGE + 24).toString()).toBe('parent, before the spawn');
      expect(media.subarray(4 * PAGE, 4 * PAGE + 9).toString()).toBe('the child');
      // Both stay tracked: the parent's next store, and the child's, reach the media at the parent's sync.
      m.bytes[6 * PAGE] = 6;
      await child.call({ op: 'store', offset: 4 * PAGE, bytes: bytesOf('THE CHILD') });
      expect(f.dirtyRanges()).toEqual([{ offset: 4 * PAGE, length: PAGE }, { offset: 6 * PAGE, length: PAGE }]);
      f.sync();
      expectMediaEqualsLive(path);
      expect(read(`${path}.media`).subarray(4 * PAGE, 4 * PAGE + 9).toString()).toBe('THE CHILD');
    } finally {
      f.close();
    }
  });

  test('a child spawned by a peer does not keep the peer alive: the peer killed, its child running, the last close removes the sidecar', async () => {
    const { path, a, b } = await twoPeers();
    const sleeper: number = await a.call({ op: 'spawnSleeper' });
    try {
      expect(fdsOf(sleeper).some((l) => l.includes('udax-table'))).toBe(false);  // not its parent's liveness lock
      await a.call({ op: 'store', offset: 0, bytes: bytesOf('stored by the parent') });
      a.kill();
      expect(await a.exited).toBe('SIGKILL');
      expect(() => process.kill(sleeper, 0)).not.toThrow();  // its child lives on
      await b.call({ op: 'sync' }, 10_000);
      expect(read(`${path}.media`).subarray(0, 20).toString()).toBe('stored by the parent');
      await b.call({ op: 'close' });
      expect(existsSync(sidecarOf(path))).toBe(false);  // no live process holds it: a is dead
    } finally {
      process.kill(sleeper, 'SIGKILL');
    }
  });

  test('fork() from native code: the child finds no tracked mapping, and the parent stays a live, tracked peer', async () => {
    const { path, a, b } = await twoPeers();
    await a.call({ op: 'store', offset: PAGE, bytes: bytesOf('before the fork') });
    expect(await a.call({ op: 'forkProbe' })).toBe('unmapped');  // a store there would be SIGSEGV (SEGV_MAPERR), never untracked
    await a.call({ op: 'store', offset: 2 * PAGE, bytes: bytesOf('after the fork') });
    await b.call({ op: 'sync' });
    const media = read(`${path}.media`);
    expect(media.subarray(PAGE, PAGE + 15).toString()).toBe('before the fork');
    expect(media.subarray(2 * PAGE, 2 * PAGE + 14).toString()).toBe('after the fork');
    // The child closed its copies of the sidecar descriptors, and a's
    // liveness lock stayed a's: b's close leaves the sidecar to a.
    await b.call({ op: 'close' });
    expect(existsSync(sidecarOf(path))).toBe(true);
    await a.call({ op: 'store', offset: 2 * PAGE, bytes: bytesOf('AFTER THE FORK') });  // re-dirtied after b's sync write-protected it
    const c = new Peer();
    await c.call({ op: 'open', path });
    await c.call({ op: 'sync' });
    expect(read(`${path}.media`).subarray(2 * PAGE, 2 * PAGE + 14).toString()).toBe('AFTER THE FORK');
    expectMediaEqualsLive(path);
  });
});

describe(`peers that come and go (${TRACKER} tracker)`, () => {
  test('a peer opening, storing and closing again and again fails no sync in another process', async () => {
    const { path, a, b } = await twoPeers(16384 * PAGE);
    const busy = new Peer();  // a third process storing: the closing peer gets descheduled mid-detach
    await busy.call({ op: 'open', path });
    busy.send({ op: 'spin' });
    expect((await busy.next()).ok).toBe('spinning');
    const [syncs] = await Promise.all([
      a.call({ op: 'syncLoop', ms: 3000 }, 60_000),
      b.call({ op: 'reopenLoop', path, times: 200 }, 60_000),
    ]);
    expect(syncs).toBeGreaterThan(0);
    busy.kill();
    await busy.exited;
    await a.call({ op: 'sync' });
    expectMediaEqualsLive(path);
  });
});

// The oracle of test/60's stress, across processes. This process holds every
// entry lock (no fault and no writeback anywhere can change an entry) and
// reads each writer's /proc/PID/maps and /proc/PID/pagemap: a page that can
// be stored to without a fault (sigbus: not userfaultfd write-protected;
// async: present and not write-protected, i.e. written since its last
// harvest) must have a DIRTY entry. With async that holds only after a
// harvest, so it is checked at rest; with sigbus also while they run.
describe(`stress across processes, with the oracle (${TRACKER} tracker)`, () => {
  const PM_PRESENT = 1n << 63n;
  const PM_UFFD_WP = 1n << 57n;
  interface PeerMapping { pid: number; address: number; length: number }

  function pagemapOf(m: PeerMapping): BigUint64Array {
    const words = new BigUint64Array(m.length / PAGE);
    const fd = openSync(`/proc/${m.pid}/pagemap`, 'r');
    try {
      expect(readSync(fd, new Uint8Array(words.buffer), 0, words.byteLength, (m.address / PAGE) * 8)).toBe(words.byteLength);
    } finally {
      closeSync(fd);
    }
    return words;
  }

  function writableVmasOf(pid: number): { start: number; end: number }[] {
    return readFileSync(`/proc/${pid}/maps`, 'utf8').trim().split('\n').flatMap((line) => {
      const [range, perms] = line.split(' ');
      const [start, end] = range.split('-').map((x) => parseInt(x, 16));
      return perms[1] === 'w' ? [{ start, end }] : [];
    });
  }

  /** The pages of the peers' mappings that take a store without a fault,
   * each checked DIRTY under every entry lock; throws at the first that is not. */
  function checkNoWritableBehindClean(f: DaxFile, maps: PeerMapping[]): number {
    return f.withEntriesLocked(0, f.size, () => {
      let open = 0;
      for (const m of maps) {
        const vmas = writableVmasOf(m.pid);
        const words = pagemapOf(m);
        for (let i = 0; i < words.length; i++) {
          const addr = m.address + i * PAGE;
          const w = words[i];
          const unprotected = vmas.some((v) => addr >= v.start && addr < v.end) && (w & PM_UFFD_WP) === 0n &&
            (TRACKER === 'sigbus' || (w & PM_PRESENT) !== 0n);
          if (!unprotected) continue;
          open++;
          if ((entryWord(f, i) & ENTRY_BITS.DIRTY) === 0) throw new Error(`process ${m.pid}: page ${i} takes stores behind a clean entry`);
        }
      }
      return open;
    });
  }

  test('writers in three processes, syncs from five: no store lost, media equals live, no page writable behind a clean entry', async () => {
    const pages = 256;
    const ms = 2500;
    const path = scratchPath('stress-oracle');
    const writers = [new Peer(), new Peer(), new Peer()];
    const opened = [await writers[0].call({ op: 'open', path, opts: { create: true, size: pages * PAGE, media: 'shadow' } })];
    for (const w of writers.slice(1)) opened.push(await w.call({ op: 'open', path }));
    const syncer = new Peer();
    await syncer.call({ op: 'open', path });
    const checker = open(path);  // maps nothing: locks, reads entry words, syncs
    try {
      const maps: PeerMapping[] = opened.map((o) => ({ pid: o.pid, address: o.address, length: pages * PAGE }));
      let running = true;
      const run = Promise.all([
        ...writers.map((w, id) => w.call({ op: 'stressWriter', id, ms, syncEvery: 400 + 97 * id, seed: 11 + id }, 60_000)),
        syncer.call({ op: 'syncLoop', ms }, 60_000),
      ]).finally(() => { running = false; });
      let checks = 0, seenOpen = 0;
      while (running) {
        if (TRACKER === 'sigbus') seenOpen += checkNoWritableBehindClean(checker, maps);
        checker.sync(0, (pages / 2) * PAGE);  // overlaps the others' syncs
        checks++;
        await new Promise((r) => setTimeout(r, 5));
      }
      const results = await run;
      const last = results.slice(0, writers.length) as number[][];
      expect(results[writers.length]).toBeGreaterThan(0);
      if (TRACKER === 'sigbus') expect(seenOpen).toBeGreaterThan(0);  // the check saw pages open, each DIRTY
      // At rest, every writer still attached: one last sync from the syncer.
      await syncer.call({ op: 'sync' });
      expect(checker.dirtyRanges()).toEqual([]);
      expect(checkNoWritableBehindClean(checker, maps)).toBe(0);  // all clean, so nothing takes a store unseen
      expectMediaEqualsLive(path);
      const live = read(path);
      const media = read(`${path}.media`);
      let stored = 0;
      for (let p = 0; p < pages; p++) {
        for (let id = 0; id < writers.length; id++) {
          const at = 4 * (p * 1024 + id);
          if (last[id][p]) stored++;
          if (live.readInt32LE(at) !== last[id][p] || media.readInt32LE(at) !== last[id][p]) {
            expect.fail(`writer ${id}'s last store to page ${p} (${last[id][p]}) is lost: live ${live.readInt32LE(at)}, media ${media.readInt32LE(at)}`);
          }
        }
      }
      expect(stored).toBe(pages * writers.length);  // every page took stores from every writer
      expect(checks).toBeGreaterThan(10);
    } finally {
      checker.close();
    }
  });
});

describe(`resize across processes (${TRACKER} tracker)`, () => {
  const sizeOnDisk = (path: string) => statSync(path).size;
  const until = async (what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 10_000) => {
    for (const deadline = Date.now() + timeoutMs; !(await ok());) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  test('A grows: B sees the size, stores into the grown range through a new mapping, A syncs, the media holds it', async () => {
    const { path, a, b } = await twoPeers(8 * PAGE);
    await b.call({ op: 'store', offset: 7 * PAGE, bytes: bytesOf('below the old end') });
    expect(await a.call({ op: 'resize', size: 24 * PAGE })).toEqual({ size: 24 * PAGE });
    expect(await b.call({ op: 'size' })).toEqual({ size: 24 * PAGE, durableSize: 8 * PAGE });  // durable at fsync
    expect(sizeOnDisk(path)).toBe(24 * PAGE);
    expect(sizeOnDisk(`${path}.media`)).toBe(24 * PAGE);  // the media grows with the file
    await b.call({ op: 'map', offset: 16 * PAGE, length: 8 * PAGE });
    await b.call({ op: 'store', offset: 3 * PAGE + 9, bytes: bytesOf('grown, stored in B') });  // file page 19
    await a.call({ op: 'sync' });
    const media = read(`${path}.media`);
    expect(media.subarray(19 * PAGE + 9, 19 * PAGE + 27).toString()).toBe('grown, stored in B');
    expect(media.subarray(7 * PAGE, 7 * PAGE + 17).toString()).toBe('below the old end');
    expect(await b.call({ op: 'size' })).toEqual({ size: 24 * PAGE, durableSize: 24 * PAGE });
    expectMediaEqualsLive(path);
    // B's next store there is seen again (A's sync write-protected B's pages).
    await b.call({ op: 'store', offset: 3 * PAGE + 9, bytes: bytesOf('GROWN, STORED AGAIN') });
    expect((await a.call({ op: 'stats' })).dirtyEntries).toBe(1);
    await a.call({ op: 'sync' });
    expectMediaEqualsLive(path);
    // Past the shared table's reservation: EFBIG in any process, nothing changed.
    await expect(b.call({ op: 'resize', size: 2 ** 40 })).rejects.toMatchObject({ code: 'EFBIG', syscall: 'ftruncate' });
    expect(await a.call({ op: 'size' })).toEqual({ size: 24 * PAGE, durableSize: 24 * PAGE });
  });

  test('A shrinks while B has a mapping past the end: B syncs fine, sizes and media right; B\'s store there dies of SIGBUS', async () => {
    const { path, a, b } = await twoPeers(16 * PAGE);
    await b.call({ op: 'store', offset: 2 * PAGE, bytes: bytesOf('kept') });
    await b.call({ op: 'store', offset: 10 * PAGE, bytes: bytesOf('cut off, never written back') });
    await a.call({ op: 'resize', size: 4 * PAGE });
    expect(sizeOnDisk(path)).toBe(4 * PAGE);
    expect(await b.call({ op: 'size' })).toEqual({ size: 4 * PAGE, durableSize: 16 * PAGE });
    expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(1);  // the entry past the end was dropped
    await b.call({ op: 'sync' });  // B's whole mapping reaches past the end: its writeback skips it
    expect(await b.call({ op: 'size' })).toEqual({ size: 4 * PAGE, durableSize: 4 * PAGE });
    expect(sizeOnDisk(`${path}.media`)).toBe(4 * PAGE);  // cut at fsync, by B
    expect(read(`${path}.media`).subarray(2 * PAGE, 2 * PAGE + 4).toString()).toBe('kept');
    expectMediaEqualsLive(path);
    await b.call({ op: 'store', offset: 3 * PAGE, bytes: [1] });  // below the end: fine
    b.send({ op: 'store', offset: 10 * PAGE, bytes: [1] });
    expect(await Promise.race([b.exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))])).toBe('SIGBUS');
    await a.call({ op: 'sync' });
    expectMediaEqualsLive(path);
    expect((await a.call({ op: 'stats' })).dirtyEntries).toBe(0);
  });

  test('a grow after a shrink: a page B wrote before the shrink is tracked again in B', async () => {
    const { path, a, b } = await twoPeers(16 * PAGE);
    await b.call({ op: 'store', offset: 12 * PAGE, bytes: bytesOf('before the shrink') });  // B's page now writable
    await a.call({ op: 'resize', size: 8 * PAGE });
    await a.call({ op: 'sync' });  // the shrink durable, the media cut: the grow's new entries start clean
    await a.call({ op: 'resize', size: 16 * PAGE });
    expect(read(path).subarray(12 * PAGE, 12 * PAGE + 17)).toEqual(Buffer.alloc(17));  // zeros again
    // async: B's page lost its write-protection with the truncate, and reads
    // as written to the next scan of B's page tables: written back once, needlessly.
    expect(await a.call({ op: 'dirtyRanges' })).toEqual(TRACKER === 'async' ? [{ offset: 12 * PAGE, length: PAGE }] : []);
    await a.call({ op: 'sync' });
    expect(await a.call({ op: 'dirtyRanges' })).toEqual([]);
    await b.call({ op: 'store', offset: 12 * PAGE, bytes: bytesOf('after the grow') });  // B's old mapping, valid again
    expect((await a.call({ op: 'stats' })).dirtyEntries).toBe(1);  // async: A's stats scans B's page tables
    await a.call({ op: 'sync' });
    expect(read(`${path}.media`).subarray(12 * PAGE, 12 * PAGE + 14).toString()).toBe('after the grow');
    expectMediaEqualsLive(path);
  });

  test('stress: resizes and writes past the end from two processes serialise; the table stays consistent, media equals live', async () => {
    for (let round = 0; round < 3; round++) {
      const { path, a, b } = await twoPeers(8 * PAGE);
      const [ra, rb] = await Promise.all([
        a.call({ op: 'resizeLoop', seed: 7 + round, rounds: 150, minPages: 8, maxPages: 40 }, 60_000),
        b.call({ op: 'resizeLoop', seed: 70 + round, rounds: 150, minPages: 8, maxPages: 40 }, 60_000),
      ]);
      const size = (await a.call({ op: 'size' })).size;
      expect([ra.last, rb.last]).toContain(size);  // each loop ends with a resize: the last one to run won
      expect((await b.call({ op: 'size' })).size).toBe(size);
      expect(sizeOnDisk(path)).toBe(size);
      await b.call({ op: 'sync' });
      expect(await a.call({ op: 'size' })).toEqual({ size, durableSize: size });
      expectMediaEqualsLive(path);
      expect((await a.call({ op: 'stats' })).dirtyEntries).toBe(0);
      for (const p of [a, b]) p.kill();
    }
  });

  for (const kind of ['grow', 'shrink'] as const) {
    test(`a process killed holding the resize lock (mid-${kind}) hangs no one; the next resize reconciles sizes and files`, async () => {
      const { path, a, b } = await twoPeers(16 * PAGE);
      await a.call({ op: 'store', offset: 3 * PAGE, bytes: bytesOf('stored before') });
      const target = kind === 'grow' ? 32 * PAGE : 4 * PAGE;
      a.send({ op: 'resizeInside', size: target, delayNs: 60e9 });
      expect((await a.next()).ok).toBe('resizing');
      // Inside the delay: a grow has grown the files, not the size; a shrink
      // has published the size, not cut the file.
      if (kind === 'grow') await until('the grow to reach the file', () => sizeOnDisk(path) === target);
      else await until('the shrink to publish', async () => (await b.call({ op: 'size' })).size === target);
      a.kill();
      expect(await a.exited).toBe('SIGKILL');
      expect(sizeOnDisk(path)).toBe(kind === 'grow' ? target : 16 * PAGE);  // the dead left them disagreeing
      expect((await b.call({ op: 'size' })).size).toBe(kind === 'grow' ? 16 * PAGE : target);
      await b.call({ op: 'resize', size: 12 * PAGE }, 10_000);
      expect(sizeOnDisk(path)).toBe(12 * PAGE);
      expect(sizeOnDisk(`${path}.media`)).toBe(16 * PAGE);  // a dead grow's growth undone; a shrink cuts it at fsync only
      await b.call({ op: 'sync' }, 10_000);
      expect(await b.call({ op: 'size' })).toEqual({ size: 12 * PAGE, durableSize: 12 * PAGE });
      expect(sizeOnDisk(`${path}.media`)).toBe(12 * PAGE);
      if (kind === 'grow') expect(read(`${path}.media`).subarray(3 * PAGE, 3 * PAGE + 13).toString()).toBe('stored before');
      expectMediaEqualsLive(path);
      expect((await b.call({ op: 'stats' })).dirtyEntries).toBe(0);
    });
  }

  test('a process killed holding the resize lock does not hang another\'s sync (fsync\'s size step takes it too)', async () => {
    const { path, a, b } = await twoPeers(16 * PAGE);
    a.send({ op: 'resizeInside', size: 32 * PAGE, delayNs: 60e9 });
    expect((await a.next()).ok).toBe('resizing');
    await until('the grow to reach the file', () => sizeOnDisk(path) === 32 * PAGE);
    a.kill();
    await a.exited;
    expect((await b.call({ op: 'size' })).size).toBe(16 * PAGE);  // never published
    await b.call({ op: 'store', offset: 5, bytes: bytesOf('B') });
    await b.call({ op: 'sync' }, 10_000);
    expect(sizeOnDisk(path)).toBe(16 * PAGE);  // the dead grow, undone
    expect(sizeOnDisk(`${path}.media`)).toBe(16 * PAGE);
    expectMediaEqualsLive(path);
  });
});

describe(`a read-only peer (${TRACKER} tracker)`, () => {
  test('a peer killed with SIGKILL holding entry locks hangs no one: its locks are taken over, DIRTY', async () => {
    const path = scratchPath('killed');
    const a = new Peer();
    const b = new Peer();
    await a.call({ op: 'open', path, opts: { create: true, size: 8 * PAGE, media: 'shadow' } });
    await a.call({ op: 'store', offset: 0, bytes: [1] });
    await a.call({ op: 'sync' });
    await b.call({ op: 'open', path, opts: { readOnly: true } });
    b.send({ op: 'lockAndHang', offset: 0, length: 4 * PAGE });
    expect((await b.next()).ok).toBe('locked');
    b.kill();
    expect(await b.exited).toBe('SIGKILL');
    await a.call({ op: 'store', offset: PAGE + 5, bytes: bytesOf('after the kill') }, 10_000);  // sigsegv/sigbus: the fault waits for the lock
    await a.call({ op: 'sync' }, 10_000);
    expect(read(`${path}.media`).subarray(PAGE + 5, PAGE + 19).toString()).toBe('after the kill');
    expectMediaEqualsLive(path);
    const stats = await a.call({ op: 'stats' });
    expect(stats.locksRecovered).toBeGreaterThanOrEqual(1);
    expect(stats.dirtyEntries).toBe(0);
  });
});

describe(`a volume's files in another process (${TRACKER} tracker)`, () => {
  /** What file 'a' holds at [offset, offset + n) in each crash state of v. */
  function inEachState(v: Volume, offset: number, n: number): Set<string> {
    const states = v.crashStates({ dir: `${v.dir}.states` });
    try {
      const seen = new Set<string>();
      for (const s of states) seen.add(readFileSync(join(s.path, 'a')).subarray(offset, offset + n).toString('latin1'));
      return seen;
    } finally {
      states.close();
    }
  }

  test('a peer opens a volume file by path: its stores are in the volume\'s crash states, durable once it syncs; it may not resize it or open the volume', async () => {
    const dir = scratchPath('volume');
    const v = openVolume(dir, { create: true });
    try {
      v.create('a', 4 * PAGE).sync();
      v.syncDirectory();
      const peer = new Peer();
      await peer.call({ op: 'open', path: join(dir, 'a') });
      await peer.call({ op: 'store', offset: 100, bytes: bytesOf('from the peer') });
      expect(inEachState(v, 100, 13)).toEqual(new Set(['\0'.repeat(13), 'from the peer']));  // not synced: either
      await peer.call({ op: 'sync' });
      expect(inEachState(v, 100, 13)).toEqual(new Set(['from the peer']));
      await expect(peer.call({ op: 'resize', size: 8 * PAGE })).rejects.toMatchObject({ code: 'ERR_UDAX_VOLUME_FILE' });
      await expect(peer.call({ op: 'openVolume', dir })).rejects.toMatchObject({ code: 'ERR_UDAX_VOLUME_LOCKED' });
      peer.kill();
    } finally {
      v.close();
      for (const d of [dir, `${dir}.states`]) rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('the sidecar', () => {
  test('the last process to close removes it; a dead process\'s stale one is laid out afresh', async () => {
    const path = scratchPath('sidecar');
    const f = open(path, { create: true, size: 4 * PAGE });
    const sidecar = sidecarOf(path);
    expect(existsSync(sidecar)).toBe(true);
    const a = new Peer();
    await a.call({ op: 'open', path, opts: { readOnly: true } });
    f.close();
    expect(existsSync(sidecar)).toBe(true);  // a is still attached
    await a.call({ op: 'close' });
    expect(await a.exited).toBe(null);
    expect(existsSync(sidecar)).toBe(false);
    // A process killed with the file open leaves its sidecar; the next open
    // finds no live process and starts afresh (any tracker, fresh counters).
    const b = new Peer();
    await b.call({ op: 'open', path, opts: { tracker: 'sigsegv' } });
    await b.call({ op: 'store', offset: 0, bytes: [1] });
    await b.call({ op: 'sync' });
    b.kill();
    await b.exited;
    expect(existsSync(sidecar)).toBe(true);
    const g = open(path);
    expect(g.stats().syncs).toBe(0);
    g.close();
    expect(existsSync(sidecar)).toBe(false);
  });

  test('garbage in a sidecar no live process holds is never trusted', () => {
    const path = scratchPath('garbage');
    writeFileSync(path, Buffer.alloc(4 * PAGE));
    const sidecar = sidecarOf(path);
    writeFileSync(sidecar, Buffer.alloc(3 * PAGE, 0xff));
    const f = open(path);
    expect(f.stats().syncs).toBe(0);
    expect(f.stats().dirtyEntries).toBe(0);
    f.close();
    expect(existsSync(sidecar)).toBe(false);
  });

  test.runIf(process.getuid?.() === 0)('a process of another user is refused at open with a clear error', async () => {
    const dir = mkdtempSync('/dev/shm/udax-test-users-');
    chmodSync(dir, 0o777);
    const path = `${dir}/f`;
    try {
      const f = open(path, { create: true, size: 4 * PAGE });
      chmodSync(path, 0o666);  // the data file is theirs to open: the table is not
      const other = new Peer({ uid: 65534, gid: 65534 });
      await expect(other.call({ op: 'open', path })).rejects.toMatchObject({ code: 'EACCES', syscall: 'open',
        message: expect.stringContaining('another user') });
      await expect(other.call({ op: 'open', path, opts: { readOnly: true } })).rejects.toMatchObject({ code: 'EACCES' });
      f.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
