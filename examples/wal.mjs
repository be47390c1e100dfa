// A tiny write-ahead log on a udax file, used by examples/fsync-experiment.mjs
// and by test/70-persist.test.ts.
//
// Layout: a 64-byte header at offset 0 (u32 magic, u32 committed count),
// then 64-byte records from offset 64 (u32 length, u32 checksum, payload).
// append(): write the record -> sync it -> bump the count -> sync the header.
// The count is a single aligned 4-byte store, so it persists atomically.
export const MAGIC = 0x57414c31;  // 'WAL1'
export const RECORD = 64;
const PAYLOAD = RECORD - 8;

/** FNV-1a over the payload bytes. */
export function checksum(bytes) {
  let h = 0x811c9dc5;
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

export class Wal {
  /** file: an open udax DaxFile. buggy: skip the sync of the record before
   * publishing it (the classic missing-fsync bug). */
  constructor(file, { buggy = false } = {}) {
    this.file = file;
    this.buggy = buggy;
    this.mapping = file.map();
    this.view = new DataView(this.mapping.bytes.buffer, this.mapping.bytes.byteOffset, this.mapping.bytes.byteLength);
    if (this.view.getUint32(0, true) !== MAGIC) {
      this.view.setUint32(4, 0, true);
      this.view.setUint32(0, MAGIC, true);
      file.sync(0, 4096);
    }
  }

  get count() {
    return this.view.getUint32(4, true);
  }

  /** Append payload (a string of at most 56 bytes). crashPoint(step), if
   * given, is called after each store and before the sync that follows it:
   * the places a power failure matters. */
  append(payload, crashPoint = () => {}) {
    const data = new TextEncoder().encode(payload);
    if (data.length > PAYLOAD) throw new RangeError('payload too long');
    const n = this.count;
    const at = RECORD * (n + 1);
    if (at + RECORD > this.file.size) throw new RangeError('log full');
    this.mapping.bytes.set(data, at + 8);
    this.view.setUint32(at, data.length, true);
    this.view.setUint32(at + 4, checksum(data), true);
    crashPoint('record written');
    if (!this.buggy) this.file.sync(at, RECORD);
    this.view.setUint32(4, n + 1, true);  // publish: the commit point
    crashPoint('count written');
    this.file.sync(0, RECORD);
  }
}

/** Recovery: read a crash image (a Uint8Array of the file) and return the
 * committed payloads; throw if a committed record is torn or missing. */
export function recoverWal(image) {
  const view = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new Error('bad magic: the log header never persisted');
  const count = view.getUint32(4, true);
  const out = [];
  for (let i = 0; i < count; i++) {
    const at = RECORD * (i + 1);
    const len = view.getUint32(at, true);
    const data = image.subarray(at + 8, at + 8 + Math.min(len, PAYLOAD));
    if (len > PAYLOAD || checksum(data) !== view.getUint32(at + 4, true)) {
      throw new Error(`committed record ${i} at offset ${at} is torn or missing (count says ${count})`);
    }
    out.push(new TextDecoder().decode(data));
  }
  return out;
}
