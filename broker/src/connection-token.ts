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

/** Both parts base 36, nothing else (parseInt alone would read `zz!` as `zz`). */
const TOKEN_RE = /^[0-9a-z]+-([0-9a-z]+)$/;

/** When the connection was made (epoch ms), or null for a token without it (an older node's) or not of this format. */
export function connectedAt(token: string): number | null {
  const m = TOKEN_RE.exec(token);
  if (!m) return null;
  const at = parseInt(m[1]!, 36);
  return Number.isSafeInteger(at) && at > 0 ? at : null;
}
