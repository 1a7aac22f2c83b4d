// aedes-persistence-redis ships no type declarations.
declare module 'aedes-persistence-redis' {
  import type { Redis } from 'ioredis';
  interface RedisPersistenceOptions {
    conn?: Redis;
    port?: number;
    host?: string;
    db?: number;
    maxSessionDelivery?: number;
    packetTTL?: (packet: unknown) => number;
    [key: string]: unknown;
  }
  interface RedisPersistence {
    setup(broker: unknown): Promise<void>;
    destroy(): Promise<void>;
    [key: string]: unknown;
  }
  export default function persistence(opts?: RedisPersistenceOptions): RedisPersistence;
}
