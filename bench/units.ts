// Sizes and times: parsing what people type, printing what people read.

const SUFFIX: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** "4096", "256M", "4G", "2m", "64KiB" -> bytes. Throws a RangeError naming
 * the option on anything else. */
export function parseSize(option: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!m) throw new RangeError(`${option}: expected a size such as 4096, 256M or 4G, got '${text}'`);
  const bytes = Number(m[1]) * SUFFIX[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new RangeError(`${option}: '${text}' is not a positive whole number of bytes`);
  return bytes;
}

/** A positive integer option ("--repeat 3"). */
export function parseCount(option: string, text: string, max = 1_000_000): number {
  if (!/^\d+$/.test(text.trim())) throw new RangeError(`${option}: expected a positive integer, got '${text}'`);
  const n = Number(text);
  if (n < 1 || n > max) throw new RangeError(`${option}: expected an integer in [1, ${max}], got ${n}`);
  return n;
}

export function formatBytes(bytes: number): string {
  for (const [unit, scale] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes >= scale && bytes % (scale / 16) === 0) return `${+(bytes / scale).toFixed(2)}${unit}iB`;
  }
  return `${bytes} B`;
}

/** Nanoseconds as "812 ns", "6.41 µs", "1.93 ms", "2.1 s" (3 significant digits). */
export function formatNs(ns: number): string {
  if (!Number.isFinite(ns)) return '-';
  if (ns < 0) return `-${formatNs(-ns)}`;
  const [value, unit] = ns < 1e3 ? [ns, 'ns'] : ns < 1e6 ? [ns / 1e3, 'µs'] : ns < 1e9 ? [ns / 1e6, 'ms'] : [ns / 1e9, 's'];
  return `${value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)} ${unit}`;
}

export function formatRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return '';
  return r >= 100 ? `${r.toFixed(0)}×` : r >= 10 ? `${r.toFixed(1)}×` : `${r.toFixed(2)}×`;
}
