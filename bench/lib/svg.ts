/** Hand-drawn grouped bar charts as standalone SVG (no dependencies), for docs/bench-*.svg. */
import type { BarChart } from './types.js';

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

export function fmtNum(v: number): string {
  if (!Number.isFinite(v)) return 'n/a';
  const a = Math.abs(v);
  if (a >= 100_000) return `${Math.round(v / 1000)}k`;
  if (a >= 10_000) return `${(v / 1000).toFixed(1)}k`;
  if (a >= 100) return String(Math.round(v));
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

export function barChartSvg(c: BarChart): string {
  const W = 760;
  const H = 380;
  const left = 70;
  const right = 20;
  const top = 64;
  const bottom = 56;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const values = c.series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v)));
  const max = niceMax(Math.max(...values, c.target?.value ?? 0, 0) * 1.08);
  const positive = [...values, ...(c.target ? [c.target.value] : [])].filter((v) => v > 0 && Number.isFinite(v));
  if (positive.length === 0) positive.push(1);
  const lo = c.log ? Math.pow(10, Math.floor(Math.log10(Math.min(...positive, max)))) : 0;
  const hi = c.log ? Math.pow(10, Math.ceil(Math.log10(Math.max(...positive, lo * 10) * 1.01))) : max;
  const y = (v: number): number => c.log
    ? top + plotH - ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * plotH
    : top + plotH - (v / max) * plotH;
  const ticks = c.log
    ? Array.from({ length: Math.round(Math.log10(hi / lo)) + 1 }, (_, k) => lo * Math.pow(10, k))
    : Array.from({ length: 6 }, (_, k) => (max / 5) * k);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(c.title)}</text>`);
  // Legend.
  let lx = left;
  c.series.forEach((s, i) => {
    out.push(`<rect x="${lx}" y="34" width="12" height="12" fill="${COLORS[i % COLORS.length]}"/>`);
    out.push(`<text x="${lx + 16}" y="44">${esc(s.name)}</text>`);
    lx += 24 + s.name.length * 7;
  });
  // Axis and grid.
  for (const v of ticks) {
    const yy = y(v);
    out.push(`<line x1="${left}" y1="${yy}" x2="${W - right}" y2="${yy}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${left - 6}" y="${yy + 4}" text-anchor="end" fill="#555">${fmtNum(v)}</text>`);
  }
  const unit = c.log ? `${c.unit} (log scale)` : c.unit;
  out.push(`<text x="16" y="${top + plotH / 2}" transform="rotate(-90 16 ${top + plotH / 2})" text-anchor="middle" fill="#333">${esc(unit)}</text>`);
  out.push(`<line x1="${left}" y1="${top + plotH}" x2="${W - right}" y2="${top + plotH}" stroke="#333"/>`);
  // Bars.
  const groupW = plotW / Math.max(1, c.categories.length);
  const nS = Math.max(1, c.series.length);
  const barW = Math.min(56, (groupW * 0.8) / nS);
  c.categories.forEach((cat, gi) => {
    const gx = left + gi * groupW + (groupW - barW * nS) / 2;
    c.series.forEach((s, si) => {
      const v = s.values[gi];
      const x = gx + si * barW;
      if (v === null || v === undefined || !Number.isFinite(v)) {
        out.push(`<text x="${x + barW / 2}" y="${top + plotH - 4}" text-anchor="middle" fill="#999" font-size="10">n/a</text>`);
        return;
      }
      const yy = y(v);
      out.push(`<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(top + plotH - yy).toFixed(1)}" fill="${COLORS[si % COLORS.length]}"/>`);
      out.push(`<text x="${(x + barW / 2 - 1).toFixed(1)}" y="${(yy - 4).toFixed(1)}" text-anchor="middle" font-size="11">${fmtNum(v)}</text>`);
    });
    out.push(`<text x="${left + gi * groupW + groupW / 2}" y="${top + plotH + 18}" text-anchor="middle">${esc(cat)}</text>`);
  });
  if (c.target) {
    const yy = y(c.target.value);
    out.push(`<line x1="${left}" y1="${yy}" x2="${W - right}" y2="${yy}" stroke="#d62728" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${W - right - 4}" y="${yy - 5}" text-anchor="end" fill="#d62728">${esc(c.target.label)}</text>`);
  }
  out.push('</svg>');
  return out.join('\n') + '\n';
}
