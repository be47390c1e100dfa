// The results as a plain-text table for the terminal.
import type { BenchResult } from './runner.js';
import { formatBytes, formatNs, formatRatio } from './units.js';

function pad(cells: string[][]): string[] {
  const widths = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  // Text columns left-aligned, numbers right-aligned.
  return cells.map((r) => r.map((cell, c) => (c < 3 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd());
}

export function formatTable(result: BenchResult): string {
  const m = result.machine;
  const o = result.options;
  const lines: string[] = [
    `udax bench — ${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}, flush: ${m.flushInstruction}`,
    `file: ${o.file} (${m.fileSystem}), entries ${formatBytes(o.entrySize)}, ${o.threads} thread${o.threads > 1 ? 's' : ''}, ` +
      `${o.repeat} fresh process${o.repeat > 1 ? 'es' : ''} per row, times per operation`,
    '',
  ];
  const cells: string[][] = [['workload', 'variant', 'op', 'median', 'p5', 'p95', 'min', 'max', 'udax ÷ row']];
  const notes: string[] = [];
  for (const w of result.workloads) {
    w.rows.forEach((r, k) => {
      cells.push([k === 0 ? w.name : '', r.variant, k === 0 ? w.op : '', formatNs(r.medianNs), formatNs(r.p5Ns), formatNs(r.p95Ns), formatNs(r.minNs), formatNs(r.maxNs),
        r.variant === 'udax' ? '' : formatRatio(r.udaxRatio)]);
    });
    for (const s of w.skipped) notes.push(`  ${w.name} / ${s.variant} skipped: ${s.reason}`);
  }
  const table = pad(cells);
  lines.push(table[0], '-'.repeat(table[0].length));
  let row = 1;
  for (const w of result.workloads) {
    if (row > 1) lines.push('');
    for (let k = 0; k < w.rows.length; k++) lines.push(table[row++]);
  }
  if (notes.length) lines.push('', ...notes);
  const interval = (i: [number, number] | undefined) => (i ? ` [95% CI ${formatRatio(i[0])}–${formatRatio(i[1])}]` : '');
  const against = result.workloads.flatMap((w) => w.rows.filter((r) => r.baseline).map((r) => {
    const b = r.baseline!;
    const companion = b.companionRatio === undefined ? '' : `; its syncer's median sync ${formatRatio(b.companionRatio)}${interval(b.companionInterval)}`;
    return `  ${w.name} / ${r.variant} ÷ ${b.workload} / ${r.variant}: ${w.op} ${formatRatio(b.ratio)}${interval(b.interval)}${companion}`;
  }));
  if (against.length) lines.push('', 'against the same work in one process (same run):', ...against);
  lines.push('', 'targets (same run):');
  for (const t of result.targets) {
    const format = (x: number) => (t.kind === 'ratio' ? formatRatio(x) : formatNs(x));
    const value = t.measured === undefined ? 'not measured' : format(t.measured);
    const interval = t.interval ? ` [95% CI ${format(t.interval[0])}–${format(t.interval[1])}]` : '';
    const verdict = t.verdict === 'missed' ? 'MISSED' : t.verdict === 'not measured' ? '-' : t.verdict;
    lines.push(`  ${verdict.padEnd(12)} ${t.goal}: ${value}${interval}${t.note ? ` (${t.note})` : ''}`);
  }
  return lines.join('\n') + '\n';
}
