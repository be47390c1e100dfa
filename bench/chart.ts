// The results as an SVG chart: one panel per workload, a bar per variant
// (udax first and coloured, the baselines beside it in grey tones), each with
// whiskers from the 5th to the 95th percentile of its samples (one outlier
// should not set the spread). Times span nanoseconds to milliseconds, so each
// panel's axis is logarithmic, with labelled decades.
import type { BenchResult } from './runner.js';
import type { VariantName } from './variants.js';
import { formatBytes, formatNs, formatRatio } from './units.js';

const COLORS: Record<VariantName, string> = {
  udax: '#d9480f',
  'udax-sigsegv': '#f08c00',
  'udax-sigbus': '#e8590c',
  raw: '#495057',
  bare: '#868e96',
  'bare-async': '#5c940d',
  'flush-all': '#adb5bd',
  'msync-tmpfs': '#1c7ed6',
  'msync-disk': '#74c0fc',
  'mmap-io': '#a5d8ff',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function renderChart(result: BenchResult): string {
  const width = 900;
  const left = 130;  // variant labels
  const right = 150; // value labels
  const barH = 16;
  const gap = 6;
  const plotW = width - left - right;
  const o = result.options;
  const parts: string[] = [];
  let y = 66;
  for (const w of result.workloads) {
    const values = w.rows.flatMap((r) => [r.p5Ns, r.p95Ns, r.medianNs]).filter((v) => v > 0 && Number.isFinite(v));
    if (values.length === 0) continue;
    const lo = 10 ** Math.floor(Math.log10(Math.min(...values)));
    const hi = 10 ** Math.ceil(Math.log10(Math.max(...values)));
    const x = (ns: number) => left + (Math.log10(Math.max(ns, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo) || 1) * plotW;
    // The subtitle on its own line: a long workload name would run into it.
    parts.push(`<text x="10" y="${y}" class="h">${esc(w.name)}</text>`,
      `<text x="10" y="${y + 16}" class="s">${esc(`${w.summary} — time per ${w.op}; ${formatBytes(w.fileSize)} file, ${formatBytes(o.entrySize)} entries`)}</text>`);
    y += 26;
    const top = y;
    for (const r of w.rows) {
      const cy = y + barH / 2;
      const ratio = r.variant === 'udax' ? '' : ` (udax ${formatRatio(r.udaxRatio)})`;
      parts.push(
        `<text x="${left - 8}" y="${cy + 4}" text-anchor="end" class="${r.variant === 'udax' ? 'u' : 'l'}">${esc(r.variant)}</text>`,
        `<rect x="${left}" y="${y}" width="${Math.max(1, x(r.medianNs) - left).toFixed(1)}" height="${barH}" fill="${COLORS[r.variant]}"><title>${esc(r.description)}: median ${formatNs(r.medianNs)}, p5 ${formatNs(r.p5Ns)}, p95 ${formatNs(r.p95Ns)}, min ${formatNs(r.minNs)}, max ${formatNs(r.maxNs)}, ${r.samples} samples</title></rect>`,
        `<line x1="${x(r.p5Ns).toFixed(1)}" x2="${x(r.p95Ns).toFixed(1)}" y1="${cy}" y2="${cy}" class="w"/>`,
        `<line x1="${x(r.p5Ns).toFixed(1)}" x2="${x(r.p5Ns).toFixed(1)}" y1="${cy - 4}" y2="${cy + 4}" class="w"/>`,
        `<line x1="${x(r.p95Ns).toFixed(1)}" x2="${x(r.p95Ns).toFixed(1)}" y1="${cy - 4}" y2="${cy + 4}" class="w"/>`,
        `<text x="${width - right + 8}" y="${cy + 4}" class="v">${esc(formatNs(r.medianNs) + ratio)}</text>`,
      );
      y += barH + gap;
    }
    // Decade grid lines and labels under the panel.
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
      parts.push(`<line x1="${x(d).toFixed(1)}" x2="${x(d).toFixed(1)}" y1="${top - 2}" y2="${y - gap + 2}" class="g"/>`,
        `<text x="${x(d).toFixed(1)}" y="${y + 8}" text-anchor="middle" class="a">${esc(formatNs(d))}</text>`);
    }
    y += 34;
  }
  const m = result.machine;
  const mark = { met: '✓', missed: '✗', inconclusive: '?', 'n/a': 'n/a', 'not measured': '–' } as const;
  const targets = result.targets.map((t) => `${mark[t.verdict]} ${t.name}`).join('   ');
  y += 4;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 20}" viewBox="0 0 ${width} ${y + 20}" font-family="system-ui, sans-serif">
<style>.h{font-size:15px;font-weight:600}.s{font-size:11px;fill:#555}.l{font-size:12px;fill:#333}.u{font-size:12px;font-weight:700;fill:#d9480f}.v{font-size:11px;fill:#222}.a{font-size:10px;fill:#888}.w{stroke:#000;stroke-width:1}.g{stroke:#ddd;stroke-width:1}</style>
<rect width="100%" height="100%" fill="#fff"/>
<text x="10" y="22" font-size="17" font-weight="700">udax bench: median time per operation (log scale; whiskers: 5th–95th percentile)</text>
<text x="10" y="40" class="s">${esc(`${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}, ${m.flushInstruction}; ${m.fileSystem}, ${formatBytes(o.entrySize)} entries, ${o.threads} thread(s), ${o.repeat} process${o.repeat > 1 ? 'es' : ''} per row, ${result.date.slice(0, 10)}`)}</text>
${parts.join('\n')}
<text x="10" y="${y}" class="l">${esc('targets: ' + targets)}</text>
</svg>
`;
}
