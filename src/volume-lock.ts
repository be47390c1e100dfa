// One opener of a volume directory at a time (docs/volumes.md). Two Volume
// objects over one directory, in two processes or in one, would each clear
// and rewrite .udax/ (each file's media, the kept bytes of removed files)
// under the other, with a namespace and pending list of their own: neither's
// crash states would be true. So openVolume takes an OFD lock (fcntl
// F_OFD_SETLK, native/ofd_lock.cc) on .udax/lock and close releases it. An
// OFD lock conflicts with any other open of the file, in this process too
// (a POSIX F_SETLK lock would not), and the kernel drops it when the
// process dies, so a crashed run's volume opens again.
import { constants as fsConstants, mkdirSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { errnoError, udaxError } from './errors.js';
import { native } from './native.js';

/** The lock file's name inside the volume's private directory. */
export const VOLUME_LOCK_FILE = 'lock';
/** Opens of a lock file that a closing holder removed before we locked it. */
const ATTEMPTS = 8;

export class VolumeLock {
  readonly path: string;
  #file: number | undefined;

  /** @internal Use lockVolume(). */
  constructor(path: string, file: number) {
    this.path = path;
    this.#file = file;
  }

  /** Release the lock (closing its open file description). */
  release(): void {
    if (this.#file === undefined) return;
    const file = this.#file;
    this.#file = undefined;
    native.fileClose(file);
  }
}

/** Lock volumeDir through privateDir/lock, making both if absent; refuse
 * (ERR_UDAX_VOLUME_LOCKED, changing nothing) when another open holds it. */
export function lockVolume(volumeDir: string, privateDir: string): VolumeLock {
  const path = join(privateDir, VOLUME_LOCK_FILE);
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    mkdirSync(privateDir, { recursive: true });
    let opened;
    try {
      opened = native.fileOpen(path, fsConstants.O_RDWR | fsConstants.O_CREAT, 0o644);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') continue;  // a closing holder removed the directory
      throw e;
    }
    const err = native.fileOfdLock(opened.id);
    if (err !== 0) {
      native.fileClose(opened.id);
      if (err === osConstants.errno.EAGAIN || err === osConstants.errno.EACCES) {
        throw udaxError('ERR_UDAX_VOLUME_LOCKED',
          `the volume is open already, in this process or another (${join('.udax', VOLUME_LOCK_FILE)} is locked): close it first:`, { syscall: 'fcntl', path: volumeDir });
      }
      throw errnoError(err, 'fcntl', path);
    }
    // A holder that closed between our open and our lock removed the file:
    // our lock is then on a file no later opener sees. Hold the one at path.
    let now;
    try {
      now = statSync(path);
    } catch {
      now = undefined;
    }
    if (now && now.ino === opened.ino && now.dev === opened.dev) return new VolumeLock(path, opened.id);
    native.fileClose(opened.id);
  }
  throw errnoError('EAGAIN', 'fcntl', path, `the lock file was replaced under each of ${ATTEMPTS} attempts`);
}
