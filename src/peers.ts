// Sharing one file between processes: where the shared entry tables live,
// and what a process needs before it may open a file others have open
// (native/sidecar.cc has the mechanisms; docs/processes.md the model).
//
// Every tracker's writeback reaches other processes' mappings: async (its
// harvest scans each peer's page tables through /proc/PID/pagemap:
// PTRACE_MODE_READ), sigbus (its writeback write-protects each peer's pages
// through the peer's own userfaultfd, taken with pidfd_getfd:
// PTRACE_MODE_ATTACH) and sigsegv (a shootdown: each peer's helper thread,
// woken with tgkill, write-protects its own mappings; same user, same pid
// namespace). A writable open beside a peer these cannot reach is refused
// with a typed error. Read-only opens map nothing writable and always join.
import { openSync, closeSync } from 'node:fs';
import type { EntryTable } from './entry.js';
import { errnoError, udaxError } from './errors.js';
import { native } from './native.js';
import type { TrackerName } from './tracker.js';

/** Where sidecars live: UDAX_SIDECAR_DIR, else /dev/shm (a memfd would
 * reach only processes it is handed to). */
export function sidecarDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.UDAX_SIDECAR_DIR || '/dev/shm';
}

/** Bind open file `file` to the entry table of its inode, shared with every
 * process that has it open (native inodeBind); a sidecar of another user is
 * EACCES, said plainly. */
export function bindShared(file: number, size: number, entryShift: number, st: { dev: number; ino: number }, path: string) {
  try {
    return native.inodeBind(file, size, entryShift, st.dev, st.ino, sidecarDir());
  } catch (e) {
    const err = e as { code?: string; path?: string };
    if (err.code === 'EACCES' && err.path?.startsWith(sidecarDir())) {
      throw errnoError('EACCES', 'open', path,
        `its shared entry table ${err.path} belongs to another user: processes sharing a file must run as one user`);
    }
    if (err.code === 'ESTALE' && err.path?.startsWith(sidecarDir())) {
      throw errnoError('ESTALE', 'open', path, `its shared entry table ${err.path}, held by live processes, names another file`);
    }
    throw e;
  }
}

/** The other live processes that have the file open. */
export function peersOf(table: EntryTable): { pid: number; sameNamespace: boolean; attachErrno: number }[] {
  return native.inodePeers(table.id);
}

/** Throw unless this open may share the file with the processes that have
 * it open now (none: nothing to check). */
export function checkPeers(table: EntryTable, tracker: TrackerName, readOnly: boolean, path: string): void {
  if (readOnly) return;
  const peers = peersOf(table);
  if (peers.length === 0) return;
  for (const p of peers) {
    if (tracker === 'sigbus' && p.attachErrno !== 0) {
      throw udaxError('ERR_UDAX_SHARED',
        `the file is open in process ${p.pid}, whose userfaultfd this process may not take (pidfd_getfd: errno ${p.attachErrno}; ptrace rules: another user, not dumpable, Yama), so a sync here could not write-protect its pages:`,
        { syscall: 'open', path });
    }
    if (!p.sameNamespace) {
      throw udaxError('ERR_UDAX_SHARED', `the file is open in a process (pid ${p.pid} there) of another pid namespace, whose page tables this one cannot scan or whose threads it cannot signal:`,
        { syscall: 'open', path });
    }
    if (tracker !== 'async') continue;
    // The harvest reads the peer's page tables: PTRACE_MODE_READ (same user, dumpable).
    let fd: number;
    try {
      fd = openSync(`/proc/${p.pid}/pagemap`, 'r');
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ESRCH') continue;  // gone meanwhile
      throw udaxError('ERR_UDAX_SHARED',
        `the file is open in process ${p.pid}, whose /proc/${p.pid}/pagemap this process cannot read (${code}: another user, or not dumpable), so its stores could not be written back from here:`,
        { syscall: 'open', path });
    }
    closeSync(fd);
  }
}
