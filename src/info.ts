// What `udax info` reports: the CPU's flush instructions and udax's choice,
// what kind of file system a path is on, and the kernel features and limits
// udax depends on. Reads only; writes nothing.
import { constants as fsConstants, existsSync, realpathSync, statSync, statfsSync } from 'node:fs';
import { release } from 'node:os';
import { TMPFS_MAGIC } from './constants.js';
import { dirname, resolve } from 'node:path';
import { flushChoice, type FlushChoice } from './flush.js';
import { native } from './native.js';
import { ARMED_MAX_BYTES, chooseScan, type ScanChoice } from './scan.js';
import { mountOf, readText, selectedSetting, SHMEM_HUGE_PAGES } from './system.js';
import { defaultVmaPolicy } from './vma.js';
import { resolveTracker, trackerAvailability, trackerOption, type TrackerAvailability, type TrackerName, type TrackerOption } from './tracker.js';

export interface PathInfo {
  path: string;
  exists: boolean;
  fileSystem?: string;
  mountPoint?: string;
  mountOptions?: string;
  /** 'dax' (a DAX mount: real persistent memory), 'tmpfs' (memory) or 'disk'. */
  kind?: 'dax' | 'tmpfs' | 'disk';
  /** MAP_SYNC probed on the file itself (regular files only). */
  mapSync?: boolean;
  /** The async tracker's scan policy (src/scan.ts) for the file at path, or
   * for a file larger than ARMED_MAX_BYTES in the directory at path. */
  asyncScan?: ScanChoice & { forSize: number };
  /** Bytes free (to us) and in all on the file system of path or, if path
   * does not exist, of the nearest directory above it that does (at). */
  space?: { free: number; total: number; at: string };
}

export interface SystemInfo {
  flush: FlushChoice;
  path: PathInfo;
  kernel: {
    release: string;
    userfaultfd: boolean;
    /** UFFD write-protect async mode + PAGEMAP_SCAN (Linux 6.7+). */
    pagemapScan: boolean;
    shmemHugePages?: string;
    maxMapCount?: number;
  };
  udax: {
    vmaBudget: number;
    /** The fault trackers: which a file opened with the default option
     * (UDAX_TRACKER, else auto) at the path asked about runs here and why,
     * and each one's availability (the async and sigbus self-tests ran in
     * this process; sigbus also needs a tmpfs file). */
    trackers: {
      option: TrackerOption;
      default: TrackerName | undefined;
      reason: string;
      available: Record<TrackerName, TrackerAvailability>;
    };
  };
}

function spaceAt(path: string): PathInfo['space'] {
  let at = resolve(path);
  while (!existsSync(at) && at !== dirname(at)) at = dirname(at);
  try {
    const s = statfsSync(at);
    return { free: s.bavail * s.bsize, total: s.blocks * s.bsize, at };
  } catch {
    return undefined;
  }
}

export function pathInfo(path: string): PathInfo {
  if (!existsSync(path)) return { path, exists: false, space: spaceAt(path) };
  const real = realpathSync(path);
  const mount = mountOf(real);
  const fsType = statfsSync(real).type;
  const isTmpfs = fsType === TMPFS_MAGIC;
  const dax = mount !== undefined && /(^|,)dax(=always|=inode)?(,|$)/.test(mount.options);
  const info: PathInfo = {
    path, exists: true, fileSystem: mount?.fs ?? (isTmpfs ? 'tmpfs' : undefined), mountPoint: mount?.point,
    mountOptions: mount?.options, kind: dax ? 'dax' : isTmpfs ? 'tmpfs' : 'disk', space: spaceAt(real),
  };
  const st = statSync(real);
  const forSize = st.isFile() ? st.size : ARMED_MAX_BYTES + 4096;
  info.asyncScan = { ...chooseScan(fsType, st.dev, real, forSize), forSize };
  if (st.isFile()) {
    try {
      const file = native.fileOpen(real, fsConstants.O_RDWR, 0).id;
      try {
        info.mapSync = native.fileProbeMapSync(file);
      } finally {
        native.fileClose(file);
      }
    } catch {
      // not writable by us: leave mapSync unknown
    }
  }
  return info;
}

/** fsType: the statfs f_type of the path asked about (the sigbus tracker
 * runs on tmpfs only), if it exists. */
function trackersInfo(fsType: number | undefined): SystemInfo['udax']['trackers'] {
  const available = { async: trackerAvailability('async'), sigbus: trackerAvailability('sigbus'), sigsegv: trackerAvailability('sigsegv') };
  let option: TrackerOption = 'auto';
  try {
    option = trackerOption(undefined).option;
    const r = resolveTracker(option, undefined, fsType);
    return { option, default: r.name, reason: r.reason, available };
  } catch (e) {
    return { option, default: undefined, reason: (e as Error).message, available };
  }
}

/** statfs f_type of path, or of the nearest existing directory above it. */
function fileSystemType(path: string): number | undefined {
  let at = resolve(path);
  while (!existsSync(at) && at !== dirname(at)) at = dirname(at);
  try {
    return statfsSync(at).type;
  } catch {
    return undefined;
  }
}

function kernelAtLeast(version: string, major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(version);
  return m !== null && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

export function systemInfo(path: string): SystemInfo {
  const rel = release();
  const maxMap = readText('/proc/sys/vm/max_map_count');
  return {
    flush: flushChoice(),
    path: pathInfo(path),
    kernel: {
      release: rel,
      userfaultfd: existsSync('/dev/userfaultfd') || existsSync('/proc/sys/vm/unprivileged_userfaultfd'),
      pagemapScan: kernelAtLeast(rel, 6, 7),
      shmemHugePages: selectedSetting(SHMEM_HUGE_PAGES),
      maxMapCount: maxMap === undefined ? undefined : Number(maxMap),
    },
    udax: { vmaBudget: defaultVmaPolicy().budget, trackers: trackersInfo(fileSystemType(path)) },
  };
}
