// Layer 4: one file shared by several processes (native/sidecar.cc). Each
// peer is a separate `node` process (test/workers/peer.mjs) driven over its
// stdin, with timeouts: peers share one entry table, a peer killed with
// SIGKILL holding entry locks hangs no one, the sidecar comes and goes with
// its processes, and what a peer cannot share is refused.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { afterAll, afterEach, describe, expect, test } from 'vitest';
import { open } from 'udax';
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
  return `/dev/shm/udax-table.${st.dev.toString(16)}.${st.ino.toString(16)}`;
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

describe(`several processes, one file (${TRACKER} tracker)`, () => {
  test('a writable open beside a peer is refused (no cross-process write-protect); readOnly joins', async () => {
    const path = scratchPath('refused');
    const a = new Peer();
    const b = new Peer();
    await a.call({ op: 'open', path, opts: { create: true, size: 4 * PAGE, media: 'shadow' } });
    await a.call({ op: 'store', offset: 0, bytes: [7] });
    await expect(b.call({ op: 'open', path })).rejects.toMatchObject({ code: 'ERR_UDAX_SHARED', syscall: 'open' });
    expect((await b.call({ op: 'open', path, opts: { readOnly: true } })).tracker).toBe(TRACKER);
    await a.call({ op: 'sync' });
    expect((await b.call({ op: 'stats' })).syncs).toBe(1);  // one table
  });

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
