/**
 * A TCP balancer for tests, as a deployment's load balancer in front of the broker nodes: each new
 * connection goes to the first backend that accepts it (in the given order), so when a node dies
 * its devices' reconnections land on the next one.
 */
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

export interface Balancer {
  url: string;
  close(): Promise<void>;
}

export async function startBalancer(ports: number[]): Promise<Balancer> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.pause();
    const attempt = (i: number): void => {
      if (i >= ports.length) { client.destroy(); return; }
      const backend = connect(ports[i]!, '127.0.0.1');
      backend.once('error', () => attempt(i + 1));
      backend.once('connect', () => {
        sockets.add(backend);
        backend.removeAllListeners('error');
        const end = (): void => { client.destroy(); backend.destroy(); };
        backend.on('error', end).on('close', end);
        client.on('error', end).on('close', end);
        client.pipe(backend);
        backend.pipe(client);
        client.resume();
      });
    };
    attempt(0);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
