// udax: Linux DAX semantics in user space.
export { open, attach, DaxFile } from './file.js';
export type { OpenOptions, DaxFileHandle, DaxStats } from './file.js';
export { Mapping } from './mapping.js';
export type { MapOptions, MappingHandle } from './mapping.js';
export type { SyncResult } from './writeback.js';
export { DaxError } from './errors.js';
export { flushChoice, chooseFlushInstruction } from './flush.js';
export type { FlushChoice, FlushInstruction } from './flush.js';
export { PAGE_SIZE, PMD_SIZE } from './validate.js';
