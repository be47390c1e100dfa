// Facts about this machine that policy depends on, read from /proc and /sys.
// Reads only; each answer may change while the process runs (swapon, a
// remount): callers decide how long to trust one.
import { readFileSync } from 'node:fs';

export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export interface MountInfo {
  point: string;
  fs: string;
  /** The mount's and the super block's options, comma-separated. */
  options: string;
}

/** The mountinfo line of the mount holding path (longest mount-point prefix). */
export function mountOf(path: string): MountInfo | undefined {
  const text = readText('/proc/self/mountinfo');
  if (!text) return undefined;
  let best: MountInfo | undefined;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const f = left.split(' ');
    const point = f[4].replace(/\\040/g, ' ');
    const [fs, , superOptions] = right.split(' ');
    const inside = path === point || path.startsWith(point.endsWith('/') ? point : point + '/');
    if (inside && (!best || point.length >= best.point.length)) best = { point, fs, options: `${f[5]},${superOptions ?? ''}` };
  }
  return best;
}

/** The selected value of a /sys "a [b] c" setting, e.g. shmem_enabled. */
export function selectedSetting(path: string): string | undefined {
  const text = readText(path);
  return text?.match(/\[(\w+)\]/)?.[1] ?? text;
}

/** Active swap areas (/proc/swaps lines after its header). */
export function swapAreas(): number {
  const text = readText('/proc/swaps');
  return text === undefined ? 0 : text.split('\n').slice(1).filter((l) => l.trim() !== '').length;
}

export const SHMEM_HUGE_PAGES = '/sys/kernel/mm/transparent_hugepage/shmem_enabled';
