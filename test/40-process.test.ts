// Layer 4: behaviour that ends or breaks a process, each in a child process
// with a timeout: genuine crashes still crash, WebAssembly traps still throw,
// a self-deadlock aborts with a message, a replaced handler is refused; a
// forked child inherits no tracked mapping.
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { open } from 'udax';
import { forkProbe, mapUntracked } from 'udax/testing';
import { distIndex, noFaultHook, removeScratch, runChild, scratchPath, TRACKER, writablePages } from './helpers.js';

afterAll(removeScratch);

/** A child script that opens a scratch file and maps it (handler installed). */
function withFile(body: string, opts: { size?: number } = {}): string {
  return `
    import * as udax from ${JSON.stringify(distIndex)};
    const file = udax.open(${JSON.stringify(scratchPath('child'))}, { create: true, size: ${opts.size ?? 65536} });
    const mapping = file.map();
    mapping.bytes[0] = 1;
    ${body}
  `;
}

describe('crashes that are not udax\'s stay crashes', () => {
  test('a stack overflow (a real SIGSEGV outside any mapping) kills the process', () => {
    const r = runChild(withFile('function down(n) { return down(n + 1) + 1; } down(0);'), { args: ['--stack-size=50000'] });
    expect(r.signal).toBe('SIGSEGV');
  });

  test('a store into a read-only file\'s mapping kills the process with SIGSEGV', () => {
    const path = scratchPath('ro');
    const r = runChild(`
      import * as udax from ${JSON.stringify(distIndex)};
      udax.open(${JSON.stringify(path)}, { create: true, size: 8192 }).close();
      const ro = udax.open(${JSON.stringify(path)}, { readOnly: true });
      const m = ro.map();
      console.log('read', m.bytes[0]);
      m.bytes[0] = 1;
      console.log('survived');
    `);
    expect(r.stdout).toContain('read 0');
    expect(r.stdout).not.toContain('survived');
    expect(r.signal).toBe('SIGSEGV');
  });

  test('SIGSEGV sent with kill() still kills the process', () => {
    const r = runChild(withFile(`process.kill(process.pid, 'SIGSEGV'); setTimeout(() => console.log('survived'), 500);`));
    expect(r.stdout).not.toContain('survived');
    expect(r.signal).toBe('SIGSEGV');
  });

  test('a WebAssembly out-of-bounds load still throws RuntimeError with udax loaded', () => {
    // (module (memory 1) (func (export "load") (param i32) (result i32) local.get 0 i32.load))
    const wasm = [0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 3, 2, 1, 0, 5, 3, 1, 0, 1,
      7, 8, 1, 4, 108, 111, 97, 100, 0, 0, 10, 9, 1, 7, 0, 32, 0, 40, 2, 0, 11];
    const r = runChild(withFile(`
      const { instance } = await WebAssembly.instantiate(new Uint8Array(${JSON.stringify(wasm)}));
      console.log('in bounds', instance.exports.load(16));
      try { instance.exports.load(1 << 24); console.log('no trap'); }
      catch (e) { console.log(e.constructor.name, e.message); }
      mapping.bytes[4096] = 2;
      console.log('udax still works', file.sync().entries);
    `));
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('in bounds 0');
    expect(r.stdout).toContain('RuntimeError memory access out of bounds');
    expect(r.stdout).toContain('udax still works 2');  // entries 0 and 1
    expect(r.status).toBe(0);
  });
});

describe('self-deadlock', () => {
  // sigsegv, sigbus: only a fault hook waits for entry locks (async stores never wait)
  test.skipIf(noFaultHook)('a store into an entry whose lock the same thread holds aborts, naming file and offset', () => {
    const path = scratchPath('dl');
    const r = runChild(`
      import * as udax from ${JSON.stringify(distIndex)};
      const file = udax.open(${JSON.stringify(path)}, { create: true, size: 65536 });
      const m = file.map();
      file.withEntriesLocked(8192, 4096, () => { m.bytes[8192 + 5] = 1; });
      console.log('survived');
    `, { timeout: 10_000 });
    expect(r.signal).toBe('SIGABRT');
    expect(r.stderr).toMatch(new RegExp(`udax: self-deadlock: thread \\d+ stored into ${path} at offset 8192 while holding that entry's lock`));
  });

  /** A child: two workers, each holding the lock of its own entry (k) and
   * (1 + k), then doing `then` with the other's, at offset `other`. */
  function twoLockHolders(then: string, storeFirst = true): string {
    return withFile(`
      const { Worker } = await import('node:worker_threads');
      const bar = new Int32Array(new SharedArrayBuffer(4));
      const code = \`
        import { attach } from \${JSON.stringify(${JSON.stringify(distIndex)})};
        import { parentPort, workerData } from 'node:worker_threads';
        const { k, bar } = workerData;
        const file = attach(workerData.handle);
        const m = file.attachMapping(workerData.mapping);
        const other = (2 - k) * 4096;  // entries 1 and 2: entry 0 is written already
        if (${storeFirst}) m.bytes[other + 1] = 1;
        Atomics.add(bar, 0, 1);
        while (Atomics.load(bar, 0) < 2) {}
        try {
          file.withEntriesLocked((1 + k) * 4096, 4096, () => {
            Atomics.add(bar, 0, 1);
            while (Atomics.load(bar, 0) < 4) {}
            ${then}
          });
          parentPort.postMessage('done');
        } catch (e) { parentPort.postMessage(e.code); }
      \`;
      const ws = [0, 1].map((k) => new Worker(code, { eval: true, workerData: { k, bar, handle: file.handle(), mapping: mapping.handle() } }));
      const got = await Promise.all(ws.map((w) => new Promise((ok, fail) => { w.once('message', ok); w.once('error', fail); })));
      file.sync();
      console.log(JSON.stringify({ got: got.sort(), dirty: file.dirtyRanges() }));
    `);
  }

  test('two threads each holding an entry lock and syncing the other\'s entry: one gets ERR_UDAX_DEADLOCK, the other syncs, nothing hangs', () => {
    const r = runChild(twoLockHolders('file.sync(other, 4096);'), { timeout: 20_000 });
    expect(r.signal).toBeNull();
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ got: ['ERR_UDAX_DEADLOCK', 'done'], dirty: [] });
  });

  test.skipIf(noFaultHook)('two threads each holding an entry lock and storing into the other\'s entry (both fault handlers wait): the process aborts naming them, never hangs', () => {
    const r = runChild(twoLockHolders('m.bytes[other + 2] = 1;', false), { timeout: 20_000 });
    expect(r.signal).toBe('SIGABRT');
    expect(r.stderr).toMatch(/udax: deadlock: thread \d+ waits for the lock of .* at offset (4096|8192) held by thread \d+, which waits, directly or not, for a lock this thread holds/);
  });

  test('taking a lock the same thread holds throws instead of hanging', () => {
    const r = runChild(withFile(`
      try { file.withEntriesLocked(0, 4096, () => file.sync()); }
      catch (e) { console.log(e.code); }
    `));
    expect(r.stdout.trim()).toBe('ERR_UDAX_DEADLOCK');
    expect(r.status).toBe(0);
  });
});

describe('a replaced fault handler', () => {
  // sigsegv (SIGSEGV), sigbus (SIGBUS): the async tracker has no fault handler
  const signal = TRACKER === 'sigbus' ? 'SIGBUS' : 'SIGSEGV';
  test.skipIf(noFaultHook)(`map, sync and prepareWrite fail with ERR_UDAX_HANDLER_REPLACED after process.on('${signal}')`, () => {
    const r = runChild(withFile(`
      process.on('${signal}', () => {});
      for (const [name, op] of [['sync', () => file.sync()], ['map', () => file.map()], ['prepareWrite', () => mapping.prepareWrite(0, 4096)]]) {
        try { op(); console.log(name, 'ok'); } catch (e) { console.log(name, e.name, e.code, e.syscall); }
      }
    `));
    expect(r.stdout).toContain('sync DaxError ERR_UDAX_HANDLER_REPLACED sigaction');
    expect(r.stdout).toContain('map DaxError ERR_UDAX_HANDLER_REPLACED sigaction');
    expect(r.stdout).toContain('prepareWrite DaxError ERR_UDAX_HANDLER_REPLACED sigaction');
    expect(r.status).toBe(0);
  });
});

describe('flush instruction overrides', () => {
  const cases: [Record<string, string>, string][] = [
    [{ UDAX_FLUSH: 'clflushopt' }, 'clflushopt'],
    [{ UDAX_FLUSH: 'clflush' }, 'clflush'],
    [{ PMEM_NO_FLUSH: '1' }, 'none'],
    [{ PMEM_NO_CLWB: '1' }, 'clflushopt'],
  ];
  for (const [env, expected] of cases) {
    test(`${JSON.stringify(env)} -> ${expected}, and sync still works`, () => {
      const r = runChild(withFile(`console.log(file.flushInstruction, file.sync().bytes);`), { env });
      expect(r.stdout.trim()).toBe(`${expected} 4096`);
    });
  }
  test('a bad UDAX_FLUSH makes open fail with a DaxError', () => {
    const r = runChild(`
      import * as udax from ${JSON.stringify(distIndex)};
      try { udax.open('/dev/shm/never', { create: true, size: 4096 }); } catch (e) { console.log(e.name, e.code, e.message); }
    `, { env: { UDAX_FLUSH: 'wbinvd' } });
    expect(r.stdout).toContain('DaxError EINVAL UDAX_FLUSH=wbinvd');
  });
});

describe('fork with tracked mappings (every tracker)', () => {
  const PAGE = 4096;

  test('a forked child finds no tracked mapping (MADV_DONTFORK), only the untracked and private ones', () => {
    const f = open(scratchPath('fork'), { create: true, size: 8 * PAGE });
    const tracked = f.map();
    tracked.bytes[PAGE] = 1;                      // writable in the parent (sigsegv) / written (async)
    const part = f.map({ offset: 2 * PAGE, length: 4 * PAGE });
    const priv = f.map({ private: true });
    const raw = mapUntracked(f);
    expect(forkProbe(tracked)).toBe('unmapped');
    expect(forkProbe(part)).toBe('unmapped');
    expect(forkProbe(priv)).toBe('mapped');       // copy-on-write, as fork gives it
    expect(forkProbe(raw)).toBe('mapped');        // untracked: nothing to lose
    f.close();
  });

  test('the parent\'s tracking is unaffected by a fork: stores before and after it reach the media at the next sync', () => {
    const f = open(scratchPath('forkparent'), { create: true, size: 8 * PAGE, media: 'shadow' });
    const m = f.map();
    m.bytes[PAGE] = 1;                            // before the fork, not synced
    expect(forkProbe(m)).toBe('unmapped');
    m.bytes[3 * PAGE + 5] = 2;                    // after it
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }, { offset: 3 * PAGE, length: PAGE }]);
    expect(f.sync()).toEqual({ entries: 2, bytes: 2 * PAGE });
    expect(forkProbe(m)).toBe('unmapped');
    m.bytes[PAGE] = 3;                            // re-dirtied after a sync and a second fork
    expect(f.dirtyRanges()).toEqual([{ offset: PAGE, length: PAGE }]);
    expect(f.sync().entries).toBe(1);
    const live = Buffer.alloc(f.size);
    f.read(live, 0);
    expect(live[PAGE]).toBe(3);
    expect(live[3 * PAGE + 5]).toBe(2);
    expect(readFileSync(f.media.path!).equals(live)).toBe(true);   // flushed content = live content
    if (TRACKER !== 'async') expect(writablePages(m).some(Boolean)).toBe(false);  // clean => write-protected
    expect(f.dirtyRanges()).toEqual([]);
    f.close();
  });
});
