/**
 * A TCP proxy that can freeze: it stops forwarding in both directions without closing anything,
 * as a phone that lost its network does. The broker then notices only when the keep-alive runs out.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface FreezeProxy {
  url: string;
  /** From now on nothing passes, and no socket is closed. */
  freeze(): void;
  close(): Promise<void>;
}

export async function startFreezeProxy(brokerPort: number): Promise<FreezeProxy> {
  const sockets = new Set<Socket>();
  let frozen = false;
  const server: Server = createServer((client) => {
    const broker = connect(brokerPort, '127.0.0.1');
    sockets.add(client).add(broker);
    client.on('data', (b) => { if (!frozen) broker.write(b); });
    broker.on('data', (b) => { if (!frozen) client.write(b); });
    const end = (): void => { client.destroy(); broker.destroy(); };
    client.on('close', end).on('error', end);
    broker.on('close', end).on('error', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    freeze() { frozen = true; },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
