// The fsync-semantics experiment of docs/fsync-experiment.md, runnable as is:
//   npm install && node examples/fsync-experiment.mjs
// Every claim it prints is also checked with assert, so it fails loudly if
// udax stops behaving this way.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { open, checkRecovery } from 'udax';  // this package, by name (package.json exports)
import { Wal, recoverWal } from './wal.mjs';

// tmpfs when there is one (the experiment is about semantics, not speed).
const dir = mkdtempSync(join(process.platform === 'linux' ? '/dev/shm' : tmpdir(), 'udax-fsync-'));
const say = (s) => console.log(s);
const bytesOf = (path) => new Uint8Array(readFileSync(path));

try {
  // 1. A file with a persistence domain: every flush is copied to data.media.
  say('1. open data with media: \'shadow\'');
  const file = open(join(dir, 'data'), { create: true, size: 64 * 1024, media: 'shadow', granularity: 'cache-line' });
  say(`   media: ${JSON.stringify(file.media)}`);
  const m = file.map();

  // 2. A store is visible at once, but not durable until a sync.
  m.bytes.set(new TextEncoder().encode('hello'), 0);
  const none = file.crashImage(join(dir, 'crash-none'), { units: 'none' });
  const all = file.crashImage(join(dir, 'crash-all'), { units: 'all' });
  say(`2. stored 'hello' without sync: ${none.differed.length} cache line(s) differ from the media`);
  say(`   pessimistic crash image starts with ${JSON.stringify(String.fromCharCode(...bytesOf(join(dir, 'crash-none')).subarray(0, 5)))}`);
  say(`   optimistic  crash image starts with ${JSON.stringify(String.fromCharCode(...bytesOf(join(dir, 'crash-all')).subarray(0, 5)))}`);
  assert.equal(bytesOf(join(dir, 'crash-none'))[0], 0);
  assert.equal(bytesOf(join(dir, 'crash-all'))[0], 'h'.charCodeAt(0));
  assert.equal(all.persisted.length, 1);

  // 3. After sync, the media equals the file.
  file.sync();
  const same = Buffer.compare(readFileSync(join(dir, 'data')), readFileSync(join(dir, 'data.media'))) === 0;
  say(`3. after sync: media equals data: ${same}`);
  assert.ok(same);

  // 4. A writeback error, reported once to each open handle (errseq_t).
  const a = file.openHandle();
  const b = file.openHandle();
  m.bytes[4096] = 1;
  file.injectWritebackError({ offset: 4096, length: 4096, errno: 'EIO', data: 'mark-clean' });
  const outcome = (h) => { try { h.sync(); return 'ok'; } catch (e) { return e.code; } };
  const seen = [outcome(a), outcome(a), outcome(b), outcome(b)];
  say(`4. injected EIO; fsync via handle a, a, b, b -> ${seen.join(', ')}`);
  assert.deepEqual(seen, ['EIO', 'ok', 'EIO', 'ok']);

  // 5. ...and with 'mark-clean' (what ext4 and XFS do) the data is gone:
  //    the page is clean, memory still shows the byte, the media never got
  //    it, and a retried fsync happily succeeds.
  const media = bytesOf(join(dir, 'data.media'));
  say(`5. memory says ${m.bytes[4096]}, media says ${media[4096]}, dirty ranges: ${JSON.stringify(file.dirtyRanges())}`);
  assert.equal(m.bytes[4096], 1);
  assert.equal(media[4096], 0);
  assert.deepEqual(file.dirtyRanges(), []);
  assert.equal(outcome(file), 'EIO');  // the DaxFile is a handle too: told once
  assert.equal(outcome(file), 'ok');   // the retry "succeeds"; the byte stays lost
  assert.equal(bytesOf(join(dir, 'data.media'))[4096], 0);
  say('   a retried fsync succeeds and the byte is still not on the media: the PostgreSQL 2018 lesson');

  // 6. A write-ahead log checked over every crash state, correct and buggy.
  for (const buggy of [false, true]) {
    const log = open(join(dir, buggy ? 'wal-buggy' : 'wal'), { create: true, size: 64 * 1024, media: 'shadow' });
    const wal = new Wal(log, { buggy });
    let states = 0;
    let failure;
    for (let i = 0; i < 3 && !failure; i++) {
      wal.append(`entry ${i}`, () => {
        const r = checkRecovery(log, (image) => { recoverWal(image); }, { k: 2 });
        states += r.checked;
        if (!r.ok) failure ??= r;
      });
    }
    if (!buggy) {
      say(`6. WAL (sync record, then publish): recovery accepted all ${states} crash states`);
      assert.equal(failure, undefined);
    } else {
      say(`   WAL with a missing sync: ${failure.message}`);
      assert.ok(failure);
    }
    log.close();
  }

  // 7. What the media costs, in this process (see bench/media-cost.ts for a real measurement).
  say(`7. stats: ${JSON.stringify(file.stats().persistence)}`);
  file.close();
  say('experiment complete');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
