/**
 * A connection's token (`LiveConnection.connection`, the second word of a device route and part of
 * its presence entries): unique on its node, and carrying when the device connected there, so the
 * dashboard's client look-up reads "connected since" from the route without another key per
 * connection. Format: `<seq base 36>-<connected at, epoch ms base 36>`; no spaces (routes and
 * presence entries are space-separated).
 */
export function newConnectionToken(seq: number, connectedAt: number): string {
  return `${seq.toString(36)}-${Math.floor(connectedAt).toString(36)}`;
}

/** When the connection was made (epoch ms), or null for a token without it (an older node's). */
export function connectedAt(token: string): number | null {
  const dash = token.indexOf('-');
  if (dash < 0) return null;
  const at = parseInt(token.slice(dash + 1), 36);
  return Number.isSafeInteger(at) && at > 0 ? at : null;
}
