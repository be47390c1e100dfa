// Layer 3: bad input gets a clear, typed error and loses nothing.
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, test } from 'vitest';
import { DaxError, open, PMD_SIZE } from 'udax';
import { daxError, removeScratch, scratchPath } from './helpers.js';

afterAll(removeScratch);

const PAGE = 4096;
const dax = daxError;

describe('open', () => {
  test('a missing file: ENOENT with errno, syscall and path', () => {
    const path = scratchPath('missing');
    let err: unknown;
    try { open(path); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(DaxError);
    expect(err).toMatchObject({ code: 'ENOENT', errno: 2, syscall: 'open', path });
    expect((err as Error).message).toContain(path);
    expect(existsSync(path)).toBe(false);
  });

  test('no permission: EACCES', () => {
    if (process.getuid?.() === 0) {
      // root ignores file modes, but not a 0444 sysctl opened for writing
      expect(() => open('/proc/sys/kernel/ostype')).toThrow(dax('EACCES', 'open'));
      return;
    }
    const path = scratchPath('noperm');
    writeFileSync(path, Buffer.alloc(PAGE));
    chmodSync(path, 0o000);
    expect(() => open(path)).toThrow(dax('EACCES', 'open'));
  });

  test('not a regular file', () => {
    expect(() => open('/dev/null', { readOnly: true })).toThrow(dax('EINVAL', 'open'));
  });

  test('a size that is not a multiple of the page size, or not a positive integer: RangeError', () => {
    const path = scratchPath();
    expect(() => open(path, { create: true, size: 5000 })).toThrow(RangeError);
    expect(() => open(path, { create: true, size: -4096 })).toThrow(RangeError);
    expect(() => open(path, { create: true, size: 1.5 })).toThrow(RangeError);
    expect(() => open(path, { create: true, size: '4096' as unknown as number })).toThrow(TypeError);
    expect(existsSync(path)).toBe(false);
  });

  test('an existing file whose size is not a multiple of the page size: EINVAL, file untouched', () => {
    const path = scratchPath();
    writeFileSync(path, Buffer.alloc(5000, 1));
    expect(() => open(path)).toThrow(dax('EINVAL', 'mmap'));
    expect(() => open(path, { create: true, size: 4096 })).toThrow(dax('EINVAL'));
  });

  test('an empty file opens with size 0; mapping it is EINVAL until it grows', () => {
    const path = scratchPath();
    writeFileSync(path, '');
    const f = open(path);
    expect(f.size).toBe(0);
    expect(() => f.map()).toThrow(dax('EINVAL', 'mmap'));
    expect(f.sync()).toEqual({ entries: 0, bytes: 0 });
    f.resize(PAGE);
    f.map().bytes[0] = 1;
    expect(f.sync()).toEqual({ entries: 1, bytes: PAGE });
    f.close();
    const g = open(scratchPath(), { create: true, size: 0 });
    expect(g.size).toBe(0);
    g.close();
  });

  test('misuse of options', () => {
    const path = scratchPath();
    expect(() => open('')).toThrow(TypeError);
    expect(() => open(42 as unknown as string)).toThrow(TypeError);
    expect(() => open(path, { create: true })).toThrow(TypeError);
    expect(() => open(path, { create: true, size: PAGE, entrySize: 8192 })).toThrow(RangeError);
    expect(() => open(path, { create: true, size: PAGE, readOnly: true })).toThrow(TypeError);
    expect(() => open(path, 'r' as unknown as object)).toThrow(TypeError);
  });

  test('size extends a shorter file and never shrinks a longer one', () => {
    const path = scratchPath();
    writeFileSync(path, Buffer.alloc(2 * PAGE, 7));
    const f = open(path, { size: 4 * PAGE });
    expect(f.size).toBe(4 * PAGE);
    expect(f.map().bytes[PAGE]).toBe(7);
    f.close();
    const g = open(path, { size: PAGE });
    expect(g.size).toBe(4 * PAGE);
    g.close();
  });
});

describe('map', () => {
  const file = () => open(scratchPath(), { create: true, size: 16 * PAGE });

  test('past the end of the file, or at it: EINVAL', () => {
    const f = file();
    expect(() => f.map({ offset: 8 * PAGE, length: 9 * PAGE })).toThrow(dax('EINVAL', 'mmap'));
    expect(() => f.map({ offset: 16 * PAGE })).toThrow(dax('EINVAL', 'mmap'));
    f.close();
  });

  test('zero length, unaligned offset, bad types: RangeError/TypeError', () => {
    const f = file();
    expect(() => f.map({ length: 0 })).toThrow(RangeError);
    expect(() => f.map({ offset: 100 })).toThrow(RangeError);
    expect(() => f.map({ offset: -4096 })).toThrow(RangeError);
    expect(() => f.map({ private: 'yes' as unknown as boolean })).toThrow(TypeError);
    f.close();
  });

  test('views out of range: RangeError', () => {
    const f = file();
    const m = f.map({ length: 4 * PAGE });
    expect(() => m.view(0, 5 * PAGE)).toThrow(RangeError);
    expect(() => m.view(4 * PAGE + 1)).toThrow(RangeError);
    expect(m.view(4 * PAGE - 1).length).toBe(1);
    f.close();
  });
});

describe('read-only files', () => {
  test('writes asked of a read-only file: EACCES, and sync is a no-op', () => {
    const path = scratchPath();
    open(path, { create: true, size: 4 * PAGE }).close();
    const f = open(path, { readOnly: true });
    const m = f.map();
    expect(m.bytes[0]).toBe(0);
    expect(() => m.prepareWrite(0, PAGE)).toThrow(dax('EACCES', 'mprotect'));
    expect(f.sync()).toEqual({ entries: 0, bytes: 0 });
    const p = f.map({ private: true });   // copy-on-write is still allowed
    p.bytes[0] = 1;
    expect(m.bytes[0]).toBe(0);
    f.close();
  });
});

describe('use after unmap or close', () => {
  test('every entry point says EBADF', () => {
    const f = open(scratchPath(), { create: true, size: 4 * PAGE });
    const m = f.map();
    m.bytes[0] = 1;
    m.unmap();
    m.unmap();  // idempotent
    // syscall names the system call the entry point stands for
    expect(() => m.bytes).toThrow(dax('EBADF', 'mmap'));
    expect(() => m.view(0, 1)).toThrow(dax('EBADF', 'mmap'));
    expect(() => m.prepareWrite(0, 1)).toThrow(dax('EBADF', 'mprotect'));
    f.close();
    f.close();  // idempotent
    for (const [syscall, call] of [['fsync', () => f.sync()], ['mmap', () => f.map()], ['fstat', () => f.stats()],
      ['msync', () => f.dirtyRanges()], ['open', () => f.handle()], ['open', () => f.openHandle()]] as const) {
      expect(call, syscall).toThrow(dax('EBADF', syscall));
    }
  });

  test('unmap or close while holding entry locks is refused instead of risking a deadlock', () => {
    const f = open(scratchPath(), { create: true, size: 4 * PAGE });
    const m = f.map();
    m.bytes[0] = 1;
    expect(() => f.withEntriesLocked(0, PAGE, () => m.unmap())).toThrow(dax('ERR_UDAX_DEADLOCK', 'munmap'));
    expect(() => f.withEntriesLocked(0, PAGE, () => f.close())).toThrow(dax('ERR_UDAX_DEADLOCK', 'close'));
    m.bytes[PAGE] = 2;  // still mapped and tracked
    expect(f.sync()).toEqual({ entries: 2, bytes: 2 * PAGE });
    m.unmap();
    f.close();
  });

  test('sync and range misuse leaves the entry table intact', () => {
    const f = open(scratchPath(), { create: true, size: 2 * PMD_SIZE, entrySize: PMD_SIZE });
    const m = f.map();
    m.bytes[10] = 1;
    expect(() => f.sync(0, 0)).toThrow(RangeError);
    expect(() => f.sync(-1)).toThrow(RangeError);
    expect(() => f.sync(0, 3 * PMD_SIZE)).toThrow(RangeError);
    expect(() => f.withEntriesLocked(0, 1, 'x' as unknown as () => void)).toThrow(TypeError);
    expect(() => f.withEntriesLocked(0, PAGE, () => { throw new Error('inside'); })).toThrow('inside');
    expect(f.dirtyRanges()).toEqual([{ offset: 0, length: PMD_SIZE }]);
    expect(f.sync()).toEqual({ entries: 1, bytes: PMD_SIZE });  // the lock was released by the throw
    f.close();
  });
});
