// The async tracker's scan policy (native/uffd.cc), chosen by a file's first
// open and kept in its entry table, so every open and worker agrees.
// UDAX_ASYNC_SCAN=armed|populated overrides it; file.scanPolicy and
// `udax info` report it.
//   armed      every mapping write-protected whole at map time, holes
//              included. Exact wherever the kernel may unmap a written page
//              (reclaim of disk files, swap, huge-page collapse): the hole it
//              leaves is reported. A scan walks every mapped page, so a sync
//              of a huge sparse file costs milliseconds.
//   populated  nothing armed; scans look at present and swapped pages only:
//              holes cost nothing. Two differences: a page that was only
//              read is reported once (one needless flush, no lost store),
//              and a written page unmapped before the next scan would be
//              missed, so it runs only where nothing but an explicit
//              madvise(MADV_DONTNEED / MADV_PAGEOUT) can unmap one.
import { realpathSync } from 'node:fs';
import { TMPFS_MAGIC } from './constants.js';
import { mountOf, selectedSetting, SHMEM_HUGE_PAGES, swapAreas } from './system.js';

export type ScanPolicy = 'armed' | 'populated';
export const SCAN_OPTIONS = ['auto', 'armed', 'populated'] as const;
export type ScanOption = (typeof SCAN_OPTIONS)[number];

/** Files up to this size are armed even where populated is exact: the walk
 * of every page is cheap there, and armed reports no page that was only
 * read. */
export const ARMED_MAX_BYTES = 8 << 20;

export interface ScanChoice {
  scan: ScanPolicy;
  reason: string;
}

const zapRisks = new Map<number, string | undefined>();

/** Why the kernel could unmap a written page of this file on its own (so
 * populated would miss it), or undefined when nothing but an explicit
 * madvise can. Asked once per file system (dev) per process. */
export function zapRisk(fsType: number, dev: number, path: string): string | undefined {
  if (!zapRisks.has(dev)) zapRisks.set(dev, zapRiskNow(fsType, path));
  return zapRisks.get(dev);
}

function zapRiskNow(fsType: number, path: string): string | undefined {
  if (fsType !== TMPFS_MAGIC) return 'not tmpfs: the kernel reclaims pages of disk files';
  if (swapAreas() > 0) return 'swap is on: tmpfs pages can be swapped out';
  const thp = selectedSetting(SHMEM_HUGE_PAGES);
  if (thp === 'force') return 'shmem huge pages are forced: a collapse unmaps small pages';
  let real = path;
  try {
    real = realpathSync(path);
  } catch {
    // keep path: a mount lookup by name is still right for most paths
  }
  const huge = /(^|,)huge=(\w+)/.exec(mountOf(real)?.options ?? '')?.[2];
  if (thp !== 'deny' && huge !== undefined && huge !== 'never') return `the mount has huge=${huge}: a collapse unmaps small pages`;
  return undefined;
}

export function scanOption(env: NodeJS.ProcessEnv = process.env): ScanOption {
  const v = env.UDAX_ASYNC_SCAN;
  if (v === undefined || v === '') return 'auto';
  if (!(SCAN_OPTIONS as readonly string[]).includes(v)) {
    throw Object.assign(new TypeError(`UDAX_ASYNC_SCAN must be one of ${SCAN_OPTIONS.join(', ')}, got ${v}`), { code: 'ERR_INVALID_ARG_VALUE' });
  }
  return v as ScanOption;
}

/** The scan policy for a file of size bytes on the file system fsType.
 * UDAX_ASYNC_SCAN=armed arms every file; =populated drops the size rule,
 * never the exactness rule (populated where the kernel can unmap pages
 * could lose stores). */
export function chooseScan(fsType: number, dev: number, path: string, size: number, env: NodeJS.ProcessEnv = process.env): ScanChoice {
  const option = scanOption(env);
  if (option === 'armed') return { scan: 'armed', reason: 'UDAX_ASYNC_SCAN=armed' };
  const risk = zapRisk(fsType, dev, path);
  if (risk) return { scan: 'armed', reason: risk };
  if (option === 'populated') return { scan: 'populated', reason: 'UDAX_ASYNC_SCAN=populated, and nothing but madvise unmaps pages here' };
  if (size <= ARMED_MAX_BYTES) return { scan: 'armed', reason: `${size} bytes: small enough to arm whole` };
  return { scan: 'populated', reason: 'tmpfs with no swap and no huge pages: only present pages are scanned' };
}
