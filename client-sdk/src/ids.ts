/**
 * Identifier formats. Ids are short because they travel in topics and envelopes on every message.
 *
 * - user, device (= MQTT clientId) and chat ids: a one-letter kind prefix and 12 base64url
 *   characters (72 random bits), 13 characters in all — under Aedes' 23-character clientId limit.
 * - msgId: `<chatId>.<seq in base 36>`. It is assigned when the message is stored, is unique, sorts
 *   within a chat by `seq`, and lets a receipt name both the chat and the position in it.
 * - clientMsgId: chosen by the sending device (the idempotency key), 1–24 of [A-Za-z0-9_-].
 */
const ID_RE = /^[a-z][A-Za-z0-9_-]{12}$/;
const CLIENT_MSG_ID_RE = /^[A-Za-z0-9_-]{1,24}$/;
const MSG_ID_RE = /^([a-z][A-Za-z0-9_-]{12})\.([0-9a-z]{1,11})$/;

export const ID_PREFIX = { user: 'u', device: 'd', chat: 'c', group: 'g', media: 'm', status: 's' } as const;

export function isId(value: unknown): value is string {
  return typeof value === 'string' && ID_RE.test(value);
}

export function isUserId(value: unknown): value is string {
  return isId(value) && value.startsWith(ID_PREFIX.user);
}

/** A device id (= its MQTT clientId): `d` + 12 characters. */
export function isDeviceId(value: unknown): value is string {
  return isId(value) && value.startsWith(ID_PREFIX.device);
}

/** An attachment (uploaded media) id: `m` + 12 characters. */
export function isAttachmentId(value: unknown): value is string {
  return isId(value) && value.startsWith(ID_PREFIX.media);
}

/** A status post id: `s` + 12 characters. */
export function isStatusId(value: unknown): value is string {
  return isId(value) && value.startsWith(ID_PREFIX.status);
}

export function isChatId(value: unknown): value is string {
  return isId(value) && (value.startsWith(ID_PREFIX.chat) || value.startsWith(ID_PREFIX.group));
}

export function isClientMsgId(value: unknown): value is string {
  return typeof value === 'string' && CLIENT_MSG_ID_RE.test(value);
}

export function isMsgId(value: unknown): value is string {
  return typeof value === 'string' && parseMsgId(value) !== null;
}

export function msgIdOf(chatId: string, seq: number): string {
  return `${chatId}.${seq.toString(36)}`;
}

export function parseMsgId(msgId: string): { chatId: string; seq: number } | null {
  const m = MSG_ID_RE.exec(msgId);
  if (!m || !m[1] || !m[2]) return null;
  const seq = parseInt(m[2], 36);
  if (!Number.isSafeInteger(seq) || seq < 1) return null;
  return { chatId: m[1], seq };
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** 12 random base64url characters from the platform's CSPRNG (Node and browsers alike). */
export function randomIdBody(length = 12): string {
  const bytes = new Uint8Array(length);
  globalThis.crypto.getRandomValues(bytes);
  let out = '';
  for (const b of bytes) out += B64URL[b & 63];
  return out;
}

export function newId(kind: keyof typeof ID_PREFIX): string {
  return ID_PREFIX[kind] + randomIdBody();
}

let lastMs = 0;
let counter = 0;
/**
 * A compact, increasing clientMsgId: milliseconds in base 36 plus a per-millisecond counter and
 * two random characters, so two SDK instances on one device do not collide.
 */
export function newClientMsgId(now = Date.now()): string {
  if (now === lastMs) counter++;
  else {
    lastMs = now;
    counter = 0;
  }
  return now.toString(36) + counter.toString(36) + randomIdBody(2);
}
