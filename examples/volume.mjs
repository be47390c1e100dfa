// A directory of DAX files and what a crash can leave of it: `node examples/volume.mjs`.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { checkVolumeRecovery, openVolume } from 'udax';

rmSync('/dev/shm/udax-volume', { recursive: true, force: true });
const volume = openVolume('/dev/shm/udax-volume', { create: true });  // metadata: 'ext4/xfs' (the default)

// Replace 'db' the classic way: write a temp file, fsync it, rename it over.
function commit(value, { fsyncTemp }) {
  const tmp = volume.create('db.tmp', 4096);
  tmp.map().bytes.fill(value);
  if (fsyncTemp) tmp.sync();
  volume.rename('db.tmp', 'db');
  volume.syncDirectory();
}

// A recovery gets each crash state as a plain directory: 'db' must be whole.
const whole = (dir) => !existsSync(`${dir}/db`) || new Set(readFileSync(`${dir}/db`)).size === 1;

commit(1, { fsyncTemp: true });
console.log(volume.list());  // [ { name: 'db', path: 'db', type: 'file' } ]

volume.create('db.tmp', 4096).map().bytes.fill(2);  // forgot the fsync:
volume.rename('db.tmp', 'db');
const r = checkVolumeRecovery(volume, whole, { dir: '/dev/shm/udax-volume-states', k: 2 });
console.log(r.ok, r.failures[0].minimal.units.length);  // false 1
console.log(r.failures[0].minimal.operations.map((op) => op.description));  // [ "create 'db.tmp'", "rename 'db.tmp' -> 'db'" ]

volume.close();
rmSync('/dev/shm/udax-volume', { recursive: true, force: true });
