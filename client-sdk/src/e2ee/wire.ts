/**
 * The end-to-end layer's message bodies. The server stores and relays them as opaque bytes (a
 * `send` / `msg` body); only member devices read them. Every body starts with the two magic bytes
 * E2 EE and a version, then one CBOR array whose first item is the type:
 *
 * - `app` [1, mls]: an MLS PrivateMessage; inside it, the {@link Content} CBOR map.
 * - `handshake` [2, commit | null, welcome | null]: a commit (MLS PublicMessage) that changes the
 *   group's members and keys, and the Welcome for the devices it adds. Applied by every device in
 *   the chat's seq order: the first commit of an epoch wins, later ones of the same epoch are
 *   ignored (their authors rebuild them). A group's creation is a Welcome alone.
 * - `rejoin` [3, keyPackage]: a device that cannot decrypt (no group, or a state that fell behind)
 *   asks to be put back: any member removes its old leaf and adds this key package.
 * - `resend` [4, seqs]: a device could not decrypt these messages of the chat: their sender's device
 *   sends them again (as new messages that name the original) if it still has them.
 * - `external` [5, groupId, epoch | null]: a handshake too big for one MQTT payload (a commit or
 *   Welcome of a large group): its body is the message's attachment, uploaded and downloaded like
 *   media. The header names the commit's group and epoch (null: a new group's Welcome), so a
 *   device skips the download of a commit that lost its epoch.
 *
 * Nothing here is secret but the MLS ciphertexts; see docs/SECURITY.md for what the server learns.
 */
import { Decoder, Encoder } from 'cbor-x';
import { ParleyError } from '../errors.js';

const MAGIC0 = 0xe2;
const MAGIC1 = 0xee;
export const E2EE_WIRE_VERSION = 1;

export type E2eeBody =
  | { type: 'app'; mls: Uint8Array }
  | { type: 'handshake'; commit: Uint8Array | null; welcome: Uint8Array | null }
  | { type: 'rejoin'; keyPackage: Uint8Array }
  | { type: 'resend'; seqs: number[] }
  | { type: 'external'; groupId: Uint8Array | null; epoch: number | null };

const TYPE = { app: 1, handshake: 2, rejoin: 3, resend: 4, external: 5 } as const;
/** Most seqs one resend request names. */
export const MAX_RESEND = 100;

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const uncbor = new Decoder({ useRecords: false, mapsAsObjects: true });

/** Whether a message body is an end-to-end body (cheap: the magic bytes and version). */
export function isE2eeBody(body: unknown): body is Uint8Array {
  return body instanceof Uint8Array && body.length > 3 && body[0] === MAGIC0 && body[1] === MAGIC1 && body[2] === E2EE_WIRE_VERSION;
}

export function encodeE2ee(b: E2eeBody): Uint8Array {
  let fields: unknown[];
  switch (b.type) {
    case 'app': fields = [TYPE.app, b.mls]; break;
    case 'handshake': fields = [TYPE.handshake, b.commit, b.welcome]; break;
    case 'rejoin': fields = [TYPE.rejoin, b.keyPackage]; break;
    case 'resend': fields = [TYPE.resend, b.seqs]; break;
    case 'external': fields = [TYPE.external, b.groupId, b.epoch]; break;
  }
  const inner = cbor.encode(fields) as Uint8Array;
  const out = new Uint8Array(inner.length + 3);
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = E2EE_WIRE_VERSION;
  out.set(inner, 3);
  return out;
}

const bad = (what: string): ParleyError => new ParleyError('E_BAD_ENVELOPE', `end-to-end body: ${what}`);
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array && v.length > 0;

export function decodeE2ee(body: Uint8Array): E2eeBody {
  if (!isE2eeBody(body)) throw bad('no magic');
  let a: unknown;
  try {
    a = uncbor.decode(body.subarray(3));
  } catch {
    throw bad('not CBOR');
  }
  if (!Array.isArray(a)) throw bad('not an array');
  switch (a[0]) {
    case TYPE.app:
      if (!isBytes(a[1])) throw bad('app: mls');
      return { type: 'app', mls: a[1] };
    case TYPE.handshake: {
      const commit: unknown = a[1] ?? null;
      const welcome: unknown = a[2] ?? null;
      if ((commit !== null && !isBytes(commit)) || (welcome !== null && !isBytes(welcome)) || (commit === null && welcome === null)) throw bad('handshake');
      return { type: 'handshake', commit, welcome };
    }
    case TYPE.rejoin:
      if (!isBytes(a[1])) throw bad('rejoin: keyPackage');
      return { type: 'rejoin', keyPackage: a[1] };
    case TYPE.resend: {
      const seqs: unknown = a[1];
      if (!Array.isArray(seqs) || seqs.length === 0 || seqs.length > MAX_RESEND || !seqs.every((s) => Number.isSafeInteger(s) && (s as number) > 0)) throw bad('resend: seqs');
      return { type: 'resend', seqs: seqs as number[] };
    }
    case TYPE.external: {
      const groupId: unknown = a[1] ?? null;
      const epoch: unknown = a[2] ?? null;
      if ((groupId !== null && !isBytes(groupId)) || (epoch !== null && !(Number.isSafeInteger(epoch) && (epoch as number) >= 0))) throw bad('external');
      return { type: 'external', groupId, epoch: epoch as number | null };
    }
    default:
      throw bad(`unknown type ${String(a[0])}`);
  }
}

/**
 * What an application message carries, encrypted: the sender's device (checked against the
 * server's `fromDevice`), the text or bytes, the attachment's key and digest, and for a resent
 * message the seq it stands for.
 */
export interface Content {
  /** The sending device. */
  d: string;
  /** Text body. */
  t?: string | undefined;
  /** Binary body. */
  b?: Uint8Array | undefined;
  /** An encrypted attachment's key (attachment.ts `encodeAttachmentKey`). */
  k?: Uint8Array | undefined;
  /** The key of the attachment's client-made thumbnail (its poster attachment). */
  tk?: Uint8Array | undefined;
  /** The attachment's client-made inline preview (a ThumbHash, base64). */
  pv?: string | undefined;
  /** Resent: the seq of the original message in this chat. */
  r?: number | undefined;
}

/**
 * Contents are padded to a multiple of this many bytes (a `p` field of zeros), so a ciphertext's
 * size tells the server the length of a message only to within this bucket.
 */
export const PAD_TO = 256;

export function encodeContent(c: Content): Uint8Array {
  const o: Record<string, unknown> = { d: c.d };
  if (c.t !== undefined) o['t'] = c.t;
  if (c.b !== undefined) o['b'] = c.b;
  if (c.k !== undefined) o['k'] = c.k;
  if (c.tk !== undefined) o['tk'] = c.tk;
  if (c.pv !== undefined) o['pv'] = c.pv;
  if (c.r !== undefined) o['r'] = c.r;
  const bare = (cbor.encode(o) as Uint8Array).length;
  // The `p` entry costs its key and a byte-string header (3 to 5 bytes with its length): aim at
  // the next bucket with room for them, then correct by what the header really took.
  // Where the header's size changes a length can be unreachable: then the next bucket.
  for (let target = Math.ceil((bare + 5) / PAD_TO) * PAD_TO; ; target += PAD_TO) {
    let n = target - bare - 3;
    for (let i = 0; i < 3; i++) {
      o['p'] = new Uint8Array(Math.max(0, n));
      const len = (cbor.encode(o) as Uint8Array).length;
      if (len === target) return cbor.encode(o) as Uint8Array;
      n += target - len;
    }
  }
}


export function decodeContent(b: Uint8Array): Content {
  let o: unknown;
  try {
    o = uncbor.decode(b);
  } catch {
    throw bad('content: not CBOR');
  }
  if (typeof o !== 'object' || o === null) throw bad('content');
  const c = o as Record<string, unknown>;
  if (typeof c['d'] !== 'string') throw bad('content: d');
  if (c['t'] !== undefined && typeof c['t'] !== 'string') throw bad('content: t');
  if (c['b'] !== undefined && !(c['b'] instanceof Uint8Array)) throw bad('content: b');
  if (c['k'] !== undefined && !(c['k'] instanceof Uint8Array)) throw bad('content: k');
  if (c['tk'] !== undefined && !(c['tk'] instanceof Uint8Array)) throw bad('content: tk');
  if (c['pv'] !== undefined && (typeof c['pv'] !== 'string' || c['pv'].length > 256)) throw bad('content: pv');
  if (c['r'] !== undefined && !(Number.isSafeInteger(c['r']) && (c['r'] as number) > 0)) throw bad('content: r');
  return {
    d: c['d'], t: c['t'] as string | undefined, b: c['b'] as Uint8Array | undefined, k: c['k'] as Uint8Array | undefined,
    tk: c['tk'] as Uint8Array | undefined, pv: c['pv'] as string | undefined, r: c['r'] as number | undefined,
  };
}
