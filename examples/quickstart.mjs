// The README's usage example, as a file the test suite runs.
import { open } from 'udax';

const file = open('/dev/shm/udax-quickstart', { create: true, size: 1 << 20 });
const mapping = file.map();               // shared, write-protected until stored to (file.tracker: 'async', 'sigbus' or 'sigsegv')

mapping.bytes.set(Buffer.from('hello, pmem'), 4096);  // one write fault: entry 1 is DIRTY
console.log(file.dirtyRanges());          // [ { offset: 4096, length: 4096 } ]

console.log(file.sync());                 // write-protect, clwb, sfence, clear: { entries: 1, bytes: 4096 }
console.log(file.dirtyRanges());          // []

mapping.bytes[4096] = 0x48;               // faults again: re-dirtied after the sync
const { dirtyEntries, syncs } = file.stats();
console.log({ dirtyEntries, syncs, flush: file.flushInstruction });  // { dirtyEntries: 1, syncs: 1, flush: 'clwb' }

file.close();
