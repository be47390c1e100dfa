// Layer 1: the addon's constants, the flush choice, the fault handler install.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { chooseFlushInstruction, flushChoice } from 'udax';
import { flushInstructionInUse, NATIVE_CONSTANTS } from 'udax/testing';

describe('entry word layout', () => {
  test('native/entry.h and the exported constants agree', () => {
    const header = readFileSync(new URL('../native/entry.h', import.meta.url), 'utf8');
    const define = (name: string) => Number(header.match(new RegExp(`#define ${name} (0x[0-9a-f]+|\\d+)u?`))![1]);
    const c = NATIVE_CONSTANTS;
    expect(c.LOCKED).toBe(define('UDAX_ENTRY_LOCKED'));
    expect(c.DIRTY).toBe(define('UDAX_ENTRY_DIRTY'));
    expect(c.TOWRITE).toBe(define('UDAX_ENTRY_TOWRITE'));
    expect(c.WAITERS).toBe(define('UDAX_ENTRY_WAITERS'));
    expect(c.REDIRTY).toBe(define('UDAX_ENTRY_REDIRTY'));
    expect(c.OWNER_SHIFT).toBe(define('UDAX_ENTRY_OWNER_SHIFT'));
    expect(c.OWNER_MASK).toBe(define('UDAX_ENTRY_OWNER_MASK'));
    expect(c.FLAGS_MASK).toBe(define('UDAX_ENTRY_FLAGS_MASK'));
    expect(c.SUMMARY_SHIFT).toBe(define('UDAX_SUMMARY_SHIFT'));
    expect(c.SUMMARY2_SHIFT).toBe(define('UDAX_SUMMARY2_SHIFT'));
    expect(c.PERSIST_BYTES).toBe(define('UDAX_PERSIST_BYTES'));
    const block = header.slice(header.indexOf('#define UDAX_STATS(X)'), header.indexOf('enum udax_stat'));
    expect(c.STATS).toEqual([...block.matchAll(/X\(\w+, (\w+)\)/g)].map((m) => m[1]));
    // flags and owner bits do not overlap
    expect(c.OWNER_MASK & c.FLAGS_MASK).toBe(0);
  });
});

describe('flush instruction', () => {
  const all = { clwb: true, clflushopt: true, clflush: true };
  test('prefers clwb > clflushopt > clflush from CPUID', () => {
    expect(chooseFlushInstruction(all, {}).instruction).toBe('clwb');
    expect(chooseFlushInstruction({ ...all, clwb: false }, {}).instruction).toBe('clflushopt');
    expect(chooseFlushInstruction({ clwb: false, clflushopt: false, clflush: true }, {}).instruction).toBe('clflush');
  });
  test('honours PMDK variables and UDAX_FLUSH', () => {
    expect(chooseFlushInstruction(all, { PMEM_NO_CLWB: '1' })).toMatchObject({ instruction: 'clflushopt', reason: 'PMEM_NO_CLWB' });
    expect(chooseFlushInstruction(all, { PMEM_NO_CLWB: '1', PMEM_NO_CLFLUSHOPT: '1' }).instruction).toBe('clflush');
    expect(chooseFlushInstruction(all, { PMEM_NO_FLUSH: '1' })).toMatchObject({ instruction: 'none', reason: 'PMEM_NO_FLUSH' });
    expect(chooseFlushInstruction(all, { UDAX_FLUSH: 'clflush', PMEM_NO_FLUSH: '1' })).toMatchObject({ instruction: 'clflush', reason: 'UDAX_FLUSH' });
  });
  test('rejects an unknown or missing instruction with a DaxError', () => {
    expect(() => chooseFlushInstruction(all, { UDAX_FLUSH: 'wbinvd' })).toThrow(expect.objectContaining({ name: 'DaxError', code: 'EINVAL' }));
    expect(() => chooseFlushInstruction({ ...all, clwb: false }, { UDAX_FLUSH: 'clwb' })).toThrow(expect.objectContaining({ code: 'ENOTSUP' }));
  });
  test('the process choice is set in the addon and matches this CPU', () => {
    const choice = flushChoice();
    expect(flushInstructionInUse()).toBe(choice.instruction);
    const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
    expect(choice.available.clwb).toBe(/\bclwb\b/.test(cpuinfo));
    expect(choice.available.clflushopt).toBe(/\bclflushopt\b/.test(cpuinfo));
  });
});
