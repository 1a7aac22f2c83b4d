/** Number formatting for report cells. */

const ok = (v: number | undefined | null): v is number => typeof v === 'number' && Number.isFinite(v);

/** 12,345 */
export const int = (v: number | undefined | null): string => (ok(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');

/** Milliseconds with sensible precision. */
export const ms = (v: number | undefined | null): string => {
  if (!ok(v)) return 'n/a';
  if (v >= 1000) return Math.round(v).toLocaleString('en-US');
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
};

/** A number with up to `d` decimals. */
export const num = (v: number | undefined | null, d = 1): string => (ok(v) ? v.toFixed(d) : 'n/a');

/** Percent of one core from CPU ms over a wall-clock span. */
export const core = (cpuMs: number | undefined, wallMs: number): string => (ok(cpuMs) && wallMs > 0 ? `${Math.round((cpuMs / wallMs) * 100)}%` : 'n/a');

export const kib = (bytes: number | undefined | null): string => (ok(bytes) ? `${(bytes / 1024).toFixed(1)} KiB` : 'n/a');
export const mib = (bytes: number | undefined | null): string =>
  !ok(bytes) ? 'n/a' : bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;

export const ratio = (a: number | undefined | null, b: number | undefined | null): string => (ok(a) && ok(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
