/**
 * A TCP proxy between one MQTT client and the broker that drops chosen `msg` publishes on their
 * way to the device and acknowledges them to the broker itself: the broker counts them delivered,
 * the device never sees them. It makes a seq gap on purpose, to test how the SDK fills one.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { peekPosition } from '@parley/client-sdk/protocol';

export interface DropProxy {
  url: string;
  /** What was dropped, as chatId:seq. */
  dropped: string[];
  close(): Promise<void>;
}

/** Drops, once each, the `msg` envelopes for which `shouldDrop(chatId, seq)` is true. */
export async function startDropProxy(brokerPort: number, shouldDrop: (chatId: string, seq: number) => boolean): Promise<DropProxy> {
  const dropped: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const broker = connect(brokerPort, '127.0.0.1');
    sockets.add(client).add(broker);
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on('packet', (packet: mqttPacket.Packet) => {
      if (packet.cmd === 'publish' && packet.qos === 1 && Buffer.isBuffer(packet.payload)) {
        const pos = peekPosition(packet.payload);
        const key = pos ? `${pos.chatId}:${pos.seq}` : '';
        if (pos && !dropped.includes(key) && shouldDrop(pos.chatId, pos.seq)) {
          dropped.push(key);
          broker.write(mqttPacket.generate({ cmd: 'puback', messageId: packet.messageId }));
          return;
        }
      }
      client.write(mqttPacket.generate(packet));
    });
    broker.on('data', (b) => parser.parse(b));
    client.pipe(broker);
    const end = (): void => { client.destroy(); broker.destroy(); };
    client.on('close', end).on('error', end);
    broker.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    dropped,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
