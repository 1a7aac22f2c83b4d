/**
 * Redis pub/sub is fire-and-forget: while a node's subscriber connection to Redis is down (Redis
 * restarted, a network blip), publishes on the cluster bus are lost for that node. A message for a
 * device connected here is still safe in the device's Redis queue, but Aedes only replays that
 * queue on reconnect, so the device would not see it until then. When the bus comes back, the node
 * therefore asks the workers to resend, from the store, whatever its connected devices have not
 * acknowledged (the SDK drops the duplicates this may cause).
 */
interface Reconnectable {
  on(event: 'close' | 'ready', listener: () => void): unknown;
}

/** Calls `onReconnect` each time the mq's subscriber connection is ready again after a loss. */
export function watchBusReconnects(mq: object, onReconnect: () => void): void {
  // mqemitter-redis keeps its ioredis subscriber as `subConn` (not in its type declarations).
  const sub = (mq as { subConn?: Reconnectable }).subConn;
  if (!sub || typeof sub.on !== 'function') return;
  let lost = false;
  sub.on('close', () => { lost = true; });
  sub.on('ready', () => {
    if (!lost) return;
    lost = false;
    onReconnect();
  });
}
