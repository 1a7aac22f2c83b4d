/**
 * Aedes alone, in memory: `Aedes.createBroker()` with its default in-memory persistence and
 * emitter, no authentication, no ACL, no ingest. Started by the runner as a child process so its
 * CPU and memory can be read by pid; prints `listening <port>` when ready. This is the floor under
 * Parley's broker: whatever Parley costs above it is Parley's own work.
 */
import { createServer, type AddressInfo } from 'node:net';
import { Aedes } from 'aedes';

const host = process.env.BENCH_HOST ?? '127.0.0.1';
const port = Number(process.env.BENCH_PORT ?? 0);

const aedes = await Aedes.createBroker();
const server = createServer((socket) => aedes.handle(socket));
server.listen(port, host, () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});

const stop = (): void => {
  server.close();
  aedes.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
