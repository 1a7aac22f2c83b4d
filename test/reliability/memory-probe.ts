/**
 * Preloaded into role processes by `spawnRole(..., { memoryProbe: true })` (with --expose-gc):
 * on SIGUSR2 the process runs a full garbage collection and prints its memory usage as one line
 * `[memory] {...}` on stdout. Test-only; nothing in Parley uses SIGUSR2.
 */
process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.();
  process.stdout.write(`\n[memory] ${JSON.stringify(process.memoryUsage())}\n`);
});
