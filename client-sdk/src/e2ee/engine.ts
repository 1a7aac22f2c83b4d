/**
 * End-to-end encryption of a device's chats (docs/SECURITY.md, docs/E2EE-CHOICE.md): one MLS
 * group per chat whose leaves are the devices of its members. The server stays the authority on
 * who is a member (HTTP, chat events); this engine makes the MLS group follow it, and the server
 * only ever stores and relays opaque bodies (wire.ts).
 *
 * Ordering is the server's per-chat seq, the MLS Delivery Service's job: every device applies
 * handshakes in seq order, and the first commit of an epoch wins. A device that commits keeps the
 * state from before its commit (ts-mls states are immutable) until its commit's place in the seq
 * stream is known: everything before it processed, it adopts the new state if no other commit came
 * first, else drops it and rebuilds the change on the winner.
 *
 * Three queues per chat: incoming messages are processed one at a time in seq order (`#incoming`);
 * sends and commits of this device go one at a time (`#outgoing`); both change the group state, so
 * each change is a short critical section (`#state`), never held across a network wait (a commit's
 * resolution needs the incoming queue to advance).
 *
 * Re-keying is lazy, as with sender keys: membership and device-set events (`added`, `removed`,
 * `left`, `joined`, `identity`) mark the chat, and the next send from any member device first
 * commits the difference between the group and the server's member devices. A device that cannot
 * decrypt asks to be put back (`rejoin`) and for the messages again (`resend`).
 */
import type {
  ChatInfo, ClaimedDeviceKeys, HistoryMessage, IdentityPublished, KeyPackageCount, KeyPackagesUploaded, UploadKeyPackagesInput, UserIdentities,
} from '../api-types.js';
import type { MediaRef, MsgEnvelope } from '../codec.js';
import { ParleyError } from '../errors.js';
import { base64ToBytes, base64UrlToBytes as fromB64url, bytesToBase64Url as b64url, bytesToHex } from '../bytes.js';
import { isChatId } from '../ids.js';
import { decodeIdentity, encodeIdentity, equalBytes, keyPackageIdentity, MlsGroup, newIdentity, newKeyPackage, type Identity, type OwnKeyPackage } from './mls.js';
import { decodeContent, decodeE2ee, encodeContent, encodeE2ee, isE2eeBody, type Content, type E2eeBody } from './wire.js';
import type { KeyStorage } from './storage.js';
import { Decoder, Encoder } from 'cbor-x';

/** The HTTP operations the engine needs (ParleyClient provides them). */
export interface E2eeApi {
  publishIdentity(input: { credential: string; signatureKey: string }): Promise<IdentityPublished>;
  uploadKeyPackages(input: UploadKeyPackagesInput): Promise<KeyPackagesUploaded>;
  countKeyPackages(): Promise<KeyPackageCount>;
  claimKeyPackages(users: string[], devices?: string[]): Promise<ClaimedDeviceKeys[]>;
  listIdentities(users: string[]): Promise<UserIdentities[]>;
  getChat(chatId: string): Promise<ChatInfo>;
  createChat(userId: string): Promise<ChatInfo>;
  /** Up to `limit` messages of a chat before `beforeSeq`, as the server stores them. */
  history(chatId: string, beforeSeq: number, limit: number): Promise<HistoryMessage[]>;
}

export interface E2eeHost {
  userId: string;
  deviceId: string;
  api: E2eeApi;
  /** Publishes a body in a chat (with an attachment) and resolves once stored (seq known). */
  sendRaw(chatId: string, body: Uint8Array, media?: string): Promise<{ seq: number; msgId: string }>;
  /** The largest body that fits in one MQTT payload; bigger handshakes go as attachments. */
  maxBodyBytes: number;
  /** Uploads opaque bytes as an attachment (resolves with its id). */
  upload(bytes: Uint8Array): Promise<string>;
  /** Downloads a message's attachment (checked against its SHA-256). */
  download(media: MediaRef): Promise<Uint8Array>;
  /** A message for the application, in seq order (decrypted, or not end-to-end at all). */
  deliver(m: MsgEnvelope, extra: DecryptedExtra): void;
  undecryptable(u: UndecryptableMessage): void;
  error(err: ParleyError): void;
}

/** What the engine adds to a delivered message. */
export interface DecryptedExtra {
  /** The body was end-to-end encrypted (false: sent in the clear, e.g. by a bot or the server). */
  encrypted: boolean;
  /** An encrypted attachment's key (attachment.ts), to download and decrypt it. */
  attachmentKey?: Uint8Array | undefined;
  /** The key of its client-made thumbnail. */
  thumbnailKey?: Uint8Array | undefined;
  /** Its client-made inline preview (ThumbHash, base64). */
  preview?: string | undefined;
  /** This message is the sender's device resending the one at this seq (which this device could not decrypt). */
  replacesSeq?: number | undefined;
}

/** A message this device could not decrypt. */
export interface UndecryptableMessage {
  chatId: string;
  msgId: string;
  seq: number;
  from: string;
  fromDevice: string;
  ts: number;
  /**
   * Why: `no-group` (this device has no group for the chat yet, or lost it), `epoch` (sent in an
   * epoch or a group this device is not in), `failed` (malformed, or keys already used),
   * `sender` (the signing device is not the one the server names, or left the group since), or
   * `cleartext` (a body in the clear from a device that is a member of the encrypted group). For
   * the first three the SDK asks to be put back and for the message again (a message with
   * `replaces` follows if its sender's device can still send it); the last two are refused.
   */
  reason: 'no-group' | 'epoch' | 'failed' | 'sender' | 'cleartext';
}

/** Content to send. */
export interface OutgoingContent {
  text?: string; bytes?: Uint8Array; attachmentKey?: Uint8Array; thumbnailKey?: Uint8Array; preview?: string; replacesSeq?: number;
}

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const uncbor = new Decoder({ useRecords: false, mapsAsObjects: true });
const utf8 = new TextEncoder();

/** How many key packages to make when the server says the pool is low (it says how many it wants). */
const MAX_UPLOAD_BATCH = 100;
/** A device asks to be put back in a chat at most this often. */
const REJOIN_EVERY_MS = 20_000;
/** A rejoin request of the same device is acted on at most this often (a spamming peer). */
const REJOIN_ANSWER_EVERY_MS = 20_000;
/** Rejoin key packages this device made and nobody used are forgotten after this long. */
const REJOIN_PACKAGE_TTL_MS = 7 * 24 * 3600_000;
/** The roster is checked against the server at least this often before a send. */
const ROSTER_MAX_AGE_MS = 10 * 60_000;
/** A commit that lost its epoch is rebuilt this many times before the send fails. */
const COMMIT_ATTEMPTS = 4;
/** How far back a commit looks for another one of its epoch (they are concurrent: close by). */
const RACE_WINDOW = 100;
/** A device without the chat's group waits this long to be put back before making one. */
const JOIN_WAIT_MS = 10_000;
/** Own sent contents kept for resend requests, per chat. */
const SENT_KEEP = 1000;
/** Epoch member lists kept per chat (a message older than that many epochs is not resent). */
const EPOCHS_KEPT = 64;
/** Downloads of a handshake attachment before giving up (then the device asks to be put back). */
const DOWNLOAD_ATTEMPTS = 3;


/** Byte order of two group ids: when a chat has two groups (made at once), the smaller one wins. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

const nameOf = (m: { userId: string; deviceId: string }): string => `${m.userId}/${m.deviceId}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs async functions one at a time, in call order. */
class Queue {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(fn, fn);
    this.#tail = p.catch(() => undefined);
    return p;
  }
  idle(): Promise<void> {
    return this.#tail.then(() => undefined);
  }
}

interface PendingCommit {
  /** Its seq, once stored. */
  seq: number | undefined;
  /** Settles when the commit's fate is known (never rejects). */
  settled: Promise<void>;
}

interface ChatE2ee {
  incoming: Queue;
  outgoing: Queue;
  state: Queue;
  group: MlsGroup | null | undefined;
  /** The roster may differ from the group (an event, a rejoin request, a commit of someone else). */
  dirty: boolean;
  checkedAt: number;
  /** This device's commit on its way: incoming messages after it wait for its outcome. */
  pending: PendingCommit | null;
  /** Devices that asked to be put back, with the key package they sent. */
  rejoins: Map<string, { userId: string; keyPackage: Uint8Array }>;
  /** When a rejoin request of each device was last taken. */
  rejoinTaken: Map<string, number>;
  lastRejoinAt: number;
  /** Seqs this device could not decrypt, to ask for again, and who sent each. */
  missing: Set<number>;
  reported: Map<number, string>;
  /** Resend requests answered (`<requester>:<seq>`): each once. */
  answered: Set<string>;
  /** The first commit that applied for each `<groupId>:<epoch>` (a later one of the same epoch lost, its Welcome too). */
  commits: Map<string, number>;
  resendTimer: ReturnType<typeof setTimeout> | undefined;
  /** Resolved when the chat gets a group (a device waiting to be put back). */
  joined: Array<() => void>;
  sentSinceTrim: number;
}

export class E2eeEngine {
  readonly #host: E2eeHost;
  readonly #storage: KeyStorage;
  readonly #chats = new Map<string, ChatE2ee>();
  readonly #directChats = new Map<string, Promise<string>>();
  #identity: Promise<Identity> | undefined;
  #replenishing: Promise<void> | undefined;
  #started: Promise<void> | undefined;
  #closed = false;
  #releaseLock: (() => void) | undefined;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();

  constructor(host: E2eeHost, storage: KeyStorage) {
    this.#host = host;
    this.#storage = storage;
  }

  // --- identity and key packages -----------------------------------------------------------------

  /** This device's identity: loaded, or made on first use (and kept in the storage). */
  identity(): Promise<Identity> {
    this.#identity ??= (async () => {
      const stored = await this.#storage.get('id');
      if (stored) {
        const id = decodeIdentity(stored);
        if (id.userId === this.#host.userId && id.deviceId === this.#host.deviceId) return id;
      }
      const id = await newIdentity({ userId: this.#host.userId, deviceId: this.#host.deviceId });
      await this.#storage.set('id', encodeIdentity(id));
      return id;
    })();
    this.#identity.catch(() => { this.#identity = undefined; });
    return this.#identity;
  }

  /**
   * Publishes the identity (the same bytes again change nothing) and tops the key packages up.
   * Sending waits for it: a group member without a published identity is removed by the others.
   */
  start(): Promise<void> {
    this.#started ??= (async () => {
      await this.#lockDevice();
      const id = await this.identity();
      await this.#host.api.publishIdentity({ credential: b64url(id.credential), signatureKey: b64url(id.signaturePublicKey) });
      await this.replenish();
      await this.#forgetOldRejoinPackages();
    })();
    this.#started.catch(() => { this.#started = undefined; });
    return this.#started;
  }

  /**
   * One client per device at a time: two tabs (or windows) sharing a device's keys in IndexedDB
   * would encrypt with the same message keys. Where the Web Locks API exists (browsers), the
   * device's lock is held until close(); a second client of the device is refused. (In Node, run
   * one process per device: a FileKeyStorage directory must not be shared.)
   */
  async #lockDevice(): Promise<void> {
    if (this.#releaseLock) return;
    const locks = (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
    if (!locks) return;
    await new Promise<void>((resolve, reject) => {
      locks.request(`parley-e2ee:${this.#host.deviceId}`, { ifAvailable: true }, (lock) => {
        if (!lock) {
          reject(new ParleyError('E_CONFIG', 'another client (tab or window) is using this device\'s end-to-end keys'));
          return undefined;
        }
        resolve();
        return new Promise<void>((release) => { this.#releaseLock = release; });
      }).catch(reject);
    });
  }

  /** Uploads key packages until the server's pool is full (and a last-resort one if it has none). */
  replenish(): Promise<void> {
    this.#replenishing ??= (async () => {
      try {
        const id = await this.identity();
        let pool = await this.#host.api.countKeyPackages();
        while (!this.#closed && (pool.count < pool.target || !pool.lastResort)) {
          const n = Math.min(MAX_UPLOAD_BATCH, Math.max(0, pool.target - pool.count));
          const fresh: OwnKeyPackage[] = [];
          for (let i = 0; i < n; i++) fresh.push(await newKeyPackage(id));
          const lastResort = pool.lastResort ? undefined : await newKeyPackage(id);
          // Private halves first: a package the server hands out must be usable here.
          for (const kp of fresh) await this.#saveKeyPackage(kp, 'pool');
          if (lastResort) await this.#saveKeyPackage(lastResort, 'last');
          const up = await this.#host.api.uploadKeyPackages({
            packages: fresh.map((kp) => ({ ref: b64url(kp.ref), data: b64url(kp.data) })),
            ...(lastResort ? { lastResort: { ref: b64url(lastResort.ref), data: b64url(lastResort.data) } } : {}),
          });
          // Refused ones (the pool filled meanwhile) are never handed out: forget them.
          const accepted = new Set(up.accepted);
          for (const kp of fresh) if (!accepted.has(b64url(kp.ref))) await this.#storage.delete(`kp/${bytesToHex(kp.ref)}`);
          if (up.count === pool.count && up.lastResort === pool.lastResort) break;
          pool = up;
        }
      } finally {
        this.#replenishing = undefined;
      }
    })();
    return this.#replenishing;
  }

  async #saveKeyPackage(kp: OwnKeyPackage, kind: 'pool' | 'last' | 'rejoin'): Promise<void> {
    await this.#storage.set(`kp/${bytesToHex(kp.ref)}`, cbor.encode([kp.data, kp.secret, kind, Date.now()]) as Uint8Array);
  }

  async #findKeyPackage(ref: Uint8Array): Promise<{ kp: OwnKeyPackage; kind: string } | null> {
    const raw = await this.#storage.get(`kp/${bytesToHex(ref)}`);
    if (!raw) return null;
    const [data, secret, kind] = uncbor.decode(raw) as [Uint8Array, Uint8Array, string | boolean];
    return { kp: { ref, data, secret }, kind: kind === true ? 'last' : kind === false ? 'pool' : kind };
  }

  /** Key packages sent with rejoin requests that nobody used: their private keys go. */
  async #forgetOldRejoinPackages(): Promise<void> {
    for (const key of await this.#storage.keys('kp/')) {
      const raw = await this.#storage.get(key);
      if (!raw) continue;
      const [, , kind, at] = uncbor.decode(raw) as [unknown, unknown, unknown, unknown];
      if (kind === 'rejoin' && typeof at === 'number' && Date.now() - at > REJOIN_PACKAGE_TTL_MS) await this.#storage.delete(key);
    }
  }

  // --- per-chat state ------------------------------------------------------------------------------

  #chat(chatId: string): ChatE2ee {
    let c = this.#chats.get(chatId);
    if (!c) {
      c = {
        incoming: new Queue(), outgoing: new Queue(), state: new Queue(), group: undefined, dirty: true, checkedAt: 0, pending: null,
        rejoins: new Map(), rejoinTaken: new Map(), lastRejoinAt: 0, missing: new Set(), reported: new Map(), answered: new Set(),
        commits: new Map(), resendTimer: undefined, joined: [], sentSinceTrim: 0,
      };
      this.#chats.set(chatId, c);
    }
    return c;
  }

  async #group(chatId: string, c: ChatE2ee): Promise<MlsGroup | null> {
    if (c.group === undefined) {
      const raw = await this.#storage.get(`g/${chatId}`);
      c.group = raw ? MlsGroup.decode(raw) : null;
    }
    return c.group;
  }

  /** Replaces the chat's group (null: none) and stores it before anything else happens. */
  async #setGroup(chatId: string, c: ChatE2ee, g: MlsGroup | null): Promise<void> {
    const before = c.group;
    if (g && g.active) {
      await this.#storage.set(`g/${chatId}`, g.encode());
      // Who was in each epoch, with which key: a resend goes only where the original could be read.
      if (!before || before.epoch !== g.epoch || !equalBytes(before.groupId, g.groupId)) {
        await this.#storage.set(`ep/${chatId}/${g.epoch}`, cbor.encode([b64url(g.groupId), g.members().map((m) => [nameOf(m), b64url(m.signatureKey)])]) as Uint8Array);
        await this.#trim(`ep/${chatId}/`, EPOCHS_KEPT);
      }
      c.group = g;
      for (const wake of c.joined.splice(0)) wake();
    } else {
      await this.#storage.delete(`g/${chatId}`);
      c.group = null;
    }
  }

  /** Keeps the `keep` highest-numbered entries under a prefix (`<prefix><number>`). */
  async #trim(prefix: string, keep: number): Promise<void> {
    const keys = await this.#storage.keys(prefix);
    if (keys.length <= keep) return;
    const byNumber = keys.map((k) => [Number(k.slice(prefix.length)), k] as const).sort((a, b) => a[0] - b[0]);
    for (const [, k] of byNumber.slice(0, keys.length - keep)) await this.#storage.delete(k);
  }

  /** Everything this device keeps for a chat it is no longer in. */
  async #forgetChat(chatId: string, c: ChatE2ee): Promise<void> {
    await this.#setGroup(chatId, c, null);
    for (const prefix of [`ep/${chatId}/`, `sent/${chatId}/`]) {
      for (const k of await this.#storage.keys(prefix)) await this.#storage.delete(k);
    }
  }

  // --- sending -------------------------------------------------------------------------------------

  /** The chat a `to` (userId or chatId) names. */
  chatIdOf(to: string): Promise<string> {
    if (isChatId(to)) return Promise.resolve(to);
    let p = this.#directChats.get(to);
    if (!p) {
      p = this.#host.api.createChat(to).then((chat) => chat.chatId);
      p.catch(() => this.#directChats.delete(to));
      this.#directChats.set(to, p);
    }
    return p;
  }

  /**
   * Encrypts content for a chat: puts the group in line with the chat's member devices first
   * (creating it, or committing adds and removes), then encrypts. Resolves with the body to send,
   * or null when `onlyTo` refuses the group's current members.
   */
  async encrypt(
    chatId: string, content: OutgoingContent, onlyTo?: (members: Array<{ name: string; key: string }>) => boolean,
  ): Promise<{ body: Uint8Array; epoch: number; groupId: string } | null> {
    const c = this.#chat(chatId);
    await this.start();
    return c.outgoing.run(async () => {
      await this.#ensureGroup(chatId, c);
      return c.state.run(async () => {
        const g = c.group;
        if (!g) throw new ParleyError('E_CONFLICT', `no end-to-end group for ${chatId}`);
        if (onlyTo && !onlyTo(g.members().map((m) => ({ name: nameOf(m), key: b64url(m.signatureKey) })))) return null;
        const inner: Content = {
          d: this.#host.deviceId, t: content.text, b: content.bytes, k: content.attachmentKey, tk: content.thumbnailKey, pv: content.preview,
          r: content.replacesSeq,
        };
        const { group, message } = await g.encrypt(encodeContent(inner));
        // Stored before the message leaves: a restart must never reuse a message key.
        await this.#setGroup(chatId, c, group);
        return { body: encodeE2ee({ type: 'app', mls: message }), epoch: Number(g.epoch), groupId: b64url(g.groupId) };
      });
    });
  }

  /** Remembers an own message's content and epoch (for resend requests) once its seq is known. */
  async rememberSent(chatId: string, seq: number, content: OutgoingContent, sentIn: { epoch: number; groupId: string }): Promise<void> {
    const inner: Content = { d: this.#host.deviceId, t: content.text, b: content.bytes, k: content.attachmentKey, tk: content.thumbnailKey };
    await this.#storage.set(`sent/${chatId}/${seq}`, cbor.encode([encodeContent(inner), sentIn.epoch, sentIn.groupId]) as Uint8Array);
    const c = this.#chat(chatId);
    if (++c.sentSinceTrim >= 50) {
      c.sentSinceTrim = 0;
      await this.#trim(`sent/${chatId}/`, SENT_KEEP);
    }
  }

  /**
   * The signature keys of each member device in a chat's group, after putting the group in line
   * with the directory: what safety numbers are computed from (the keys messages go to).
   */
  async groupKeys(chatId: string): Promise<Map<string, Uint8Array[]>> {
    const c = this.#chat(chatId);
    await this.start();
    return c.outgoing.run(async () => {
      await this.#ensureGroup(chatId, c);
      const keys = new Map<string, Uint8Array[]>();
      for (const m of (await c.state.run(() => this.#group(chatId, c)))?.members() ?? []) {
        keys.set(m.userId, [...(keys.get(m.userId) ?? []), m.signatureKey]);
      }
      return keys;
    });
  }

  async #ensureGroup(chatId: string, c: ChatE2ee): Promise<void> {
    for (let attempt = 0; attempt < COMMIT_ATTEMPTS; attempt++) {
      let g = await c.state.run(() => this.#group(chatId, c));
      const stale = Date.now() - c.checkedAt > ROSTER_MAX_AGE_MS;
      if (g && !c.dirty && !stale) return;
      if (!g && attempt === 0 && await this.#chatHasGroup(chatId)) {
        // Others already encrypt here: be put back in their group rather than make a second one.
        g = await this.#waitToBePutBack(chatId, c);
      }
      const change = await this.#plan(chatId, c, g);
      if (!change) {
        c.dirty = false;
        c.checkedAt = Date.now();
        return;
      }
      const won = await this.#commit(chatId, c, change);
      if (won) {
        c.dirty = c.rejoins.size > 0;
        c.checkedAt = Date.now();
        if (!c.dirty) return;
      }
    }
    throw new ParleyError('E_CONFLICT', `the end-to-end group of ${chatId} kept changing; retry`);
  }

  /** Whether other devices encrypt in this chat already (its recent history has end-to-end bodies of theirs). */
  async #chatHasGroup(chatId: string): Promise<boolean> {
    const chat = await this.#host.api.getChat(chatId);
    if (chat.lastSeq === 0) return false;
    const recent = await this.#host.api.history(chatId, chat.lastSeq + 1, RACE_WINDOW);
    return recent.some((h) => h.fromDevice !== this.#host.deviceId && h.data !== undefined && isE2eeBody(base64ToBytes(h.data)));
  }

  async #waitToBePutBack(chatId: string, c: ChatE2ee): Promise<MlsGroup | null> {
    const joined = new Promise<void>((resolve) => {
      c.joined.push(resolve);
      this.#later(resolve, JOIN_WAIT_MS);
    });
    this.#requestRejoin(chatId, c, true);
    await joined;
    return c.state.run(() => this.#group(chatId, c));
  }

  /**
   * What to commit so the group holds the chat's member devices with their published keys: a new
   * group, or adds and removes (null: nothing to do). A member the directory lists no device for
   * (blocked, or without keys) keeps the leaves he has: a gap in the directory is not a removal.
   */
  async #plan(chatId: string, c: ChatE2ee, g: MlsGroup | null): Promise<{ from: MlsGroup | null; add: Uint8Array[]; remove: number[] } | null> {
    const chat = await this.#host.api.getChat(chatId);
    const users = chat.members.map((m) => m.userId);
    if (!users.includes(this.#host.userId)) throw new ParleyError('E_NOT_MEMBER', chatId);
    const directory = await this.#host.api.listIdentities(users);
    const wanted = new Map<string, { userId: string; deviceId: string; key: Uint8Array }>();
    const listed = new Set<string>();
    for (const u of directory) {
      if (u.devices.length > 0) listed.add(u.userId);
      for (const d of u.devices) wanted.set(`${u.userId}/${d.deviceId}`, { userId: u.userId, deviceId: d.deviceId, key: fromB64url(d.signatureKey) });
    }
    const self = nameOf(this.#host);
    const members = new Set(users);
    const remove: number[] = [];
    const present = new Set<string>();
    if (g) {
      this.#dropAnsweredRejoins(c, g);
      for (const m of g.members()) {
        const name = nameOf(m);
        if (name === self) continue;
        if (members.has(m.userId) && !listed.has(m.userId)) {
          present.add(name);
          continue;
        }
        const w = wanted.get(name);
        if (!members.has(m.userId) || !w || !equalBytes(w.key, m.signatureKey) || c.rejoins.has(name)) remove.push(m.leaf);
        else present.add(name);
      }
    }
    if (chat.kind === 'direct') {
      const other = users.find((u) => u !== this.#host.userId);
      if (other && !listed.has(other) && ![...present].some((n) => n.startsWith(`${other}/`))) {
        throw new ParleyError('E_NO_KEYS', `${other} has no end-to-end keys`);
      }
    }
    const add: Uint8Array[] = [];
    const claim: { userId: string; deviceId: string }[] = [];
    for (const [name, w] of wanted) {
      if (name === self || present.has(name)) continue;
      const rejoin = c.rejoins.get(name);
      if (rejoin && this.#packageIs(rejoin.keyPackage, w)) add.push(rejoin.keyPackage);
      else claim.push(w);
    }
    if (claim.length > 0) {
      const claimed = await this.#host.api.claimKeyPackages([...new Set(claim.map((d) => d.userId))], claim.map((d) => d.deviceId));
      for (const k of claimed) {
        const w = wanted.get(`${k.userId}/${k.deviceId}`);
        if (!w || !k.keyPackage) continue; // no package left: added by the next send after it uploads
        const data = fromB64url(k.keyPackage.data);
        if (this.#packageIs(data, w)) add.push(data);
        else this.#host.error(new ParleyError('E_BAD_ENVELOPE', `a key package of ${k.deviceId} does not match its published identity`));
      }
    }
    c.rejoins.clear();
    if (!g) return { from: null, add, remove: [] };
    if (add.length === 0 && remove.length === 0) return null;
    return { from: g, add, remove };
  }

  /** A rejoin is answered once the group holds that device with the key package it sent (someone else committed it). */
  #dropAnsweredRejoins(c: ChatE2ee, g: MlsGroup): void {
    if (c.rejoins.size === 0) return;
    for (const m of g.members()) {
      const name = nameOf(m);
      const r = c.rejoins.get(name);
      if (!r) continue;
      try {
        if (equalBytes(keyPackageIdentity(r.keyPackage).encryptionKey, m.encryptionKey)) c.rejoins.delete(name);
      } catch {
        c.rejoins.delete(name);
      }
    }
  }

  #packageIs(data: Uint8Array, w: { userId: string; deviceId: string; key: Uint8Array }): boolean {
    try {
      const p = keyPackageIdentity(data);
      return p.device !== null && p.device.userId === w.userId && p.device.deviceId === w.deviceId && equalBytes(p.signatureKey, w.key);
    } catch {
      return false;
    }
  }

  /** Sends a commit (or a new group's Welcome) and resolves whether it won its epoch. */
  async #commit(chatId: string, c: ChatE2ee, change: { from: MlsGroup | null; add: Uint8Array[]; remove: number[] }): Promise<boolean> {
    const id = await this.identity();
    let from = change.from;
    let body: E2eeBody;
    let to: MlsGroup;
    const creating = !from;
    if (!from) {
      // A new group: made from a key package of our own that is never uploaded.
      const own = await newKeyPackage(id);
      from = await MlsGroup.create(utf8.encode(`${chatId}:${b64url(crypto.getRandomValues(new Uint8Array(9)))}`), own);
      if (change.add.length === 0) {
        // Alone (nobody else has keys yet): the group starts here, nothing to tell anyone.
        const alone = from;
        await c.state.run(() => this.#setGroup(chatId, c, alone));
        return true;
      }
      const r = await from.commit({ add: change.add });
      to = r.group;
      body = { type: 'handshake', commit: null, welcome: r.welcome };
    } else {
      const r = await from.commit({ add: change.add, remove: change.remove });
      to = r.group;
      body = { type: 'handshake', commit: r.commit, welcome: r.welcome };
    }
    let settle: () => void = () => {};
    const pending: PendingCommit = { seq: undefined, settled: new Promise<void>((r) => { settle = r; }) };
    c.pending = pending;
    try {
      const header = { groupId: from.groupId, epoch: creating ? null : from.epoch };
      const stored = await this.#sendHandshake(chatId, encodeE2ee(body), header);
      pending.seq = stored.seq;
      return await this.#resolve(chatId, c, { from, to, creating, seq: stored.seq });
    } finally {
      if (c.pending === pending) c.pending = null;
      settle();
    }
  }

  /** A handshake in one message, or as the attachment of one when it is too big (large groups). */
  async #sendHandshake(chatId: string, encoded: Uint8Array, header: { groupId: Uint8Array; epoch: bigint | null }): Promise<{ seq: number }> {
    if (encoded.length <= this.#host.maxBodyBytes) return this.#host.sendRaw(chatId, encoded);
    const attachmentId = await this.#host.upload(encoded);
    return this.#host.sendRaw(chatId, encodeE2ee({ type: 'external', groupId: header.groupId, epoch: header.epoch === null ? null : Number(header.epoch) }), attachmentId);
  }

  /**
   * Whether this device's commit, stored at `seq`, won its epoch: everything before it is in the
   * chat's history by now, so another commit of the same epoch there means ours came second. The
   * winner is adopted keeping what the old state received meanwhile.
   */
  async #resolve(chatId: string, c: ChatE2ee, p: { from: MlsGroup; to: MlsGroup; creating: boolean; seq: number }): Promise<boolean> {
    let lost = false;
    if (!p.creating) {
      const before = await this.#host.api.history(chatId, p.seq, RACE_WINDOW);
      lost = before.some((h) => h.seq < p.seq && h.fromDevice !== this.#host.deviceId && this.#isCommitOf(h, p.from.groupId, p.from.epoch));
    }
    return c.state.run(async () => {
      const current = await this.#group(chatId, c);
      if (p.creating) {
        // Two groups made at once: the smaller id wins, everywhere (see #tryJoin).
        if (current && compareBytes(current.groupId, p.to.groupId) < 0) {
          c.dirty = true;
          return false;
        }
        await this.#setGroup(chatId, c, p.to);
        return true;
      }
      const same = current !== null && equalBytes(current.groupId, p.from.groupId) && current.epoch === p.from.epoch;
      if (lost || !same) {
        c.dirty = true;
        return false;
      }
      await this.#setGroup(chatId, c, p.to.adoptAfter(current));
      c.commits.set(`${b64url(p.from.groupId)}:${p.from.epoch}`, p.seq);
      return true;
    });
  }

  /** A history message that is a commit (or its attachment's header) of that group and epoch. */
  #isCommitOf(h: HistoryMessage, groupId: Uint8Array, epoch: bigint): boolean {
    if (h.data === undefined) return false;
    const bytes = base64ToBytes(h.data);
    if (!isE2eeBody(bytes)) return false;
    try {
      const b = decodeE2ee(bytes);
      if (b.type === 'external') return b.groupId !== null && b.epoch !== null && equalBytes(b.groupId, groupId) && BigInt(b.epoch) === epoch;
      if (b.type !== 'handshake' || !b.commit) return false;
      const where = MlsGroup.commitEpoch(b.commit);
      return equalBytes(where.groupId, groupId) && where.epoch === epoch;
    } catch {
      return false;
    }
  }

  // --- receiving -----------------------------------------------------------------------------------

  /** A message from the sequencer (in seq order): processed in order, then handed to the host. */
  onMessage(m: MsgEnvelope): void {
    const c = this.#chat(m.chatId);
    void c.incoming.run(async () => {
      // After this device's own commit, nothing later is read before we know whether it won.
      const p = c.pending;
      if (p && (p.seq === undefined || m.seq > p.seq)) await p.settled;
      await this.#receive(m, c);
    }).catch((err: unknown) => this.#host.error(toError(err)));
  }

  async #receive(m: MsgEnvelope, c: ChatE2ee): Promise<void> {
    if (m.event) {
      await this.#onEvent(m, c);
      this.#host.deliver(m, { encrypted: false });
      return;
    }
    if (!isE2eeBody(m.body)) {
      // In the clear: fine from a bot (not in the group); from a member device, a forgery.
      const g = await c.state.run(() => this.#group(m.chatId, c));
      if (g?.members().some((x) => x.userId === m.from && x.deviceId === m.fromDevice)) this.#undecryptable(m, c, 'cleartext');
      else this.#host.deliver(m, { encrypted: false });
      return;
    }
    let body: E2eeBody;
    try {
      body = decodeE2ee(m.body);
    } catch {
      this.#undecryptable(m, c, 'failed');
      return;
    }
    switch (body.type) {
      case 'app': return this.#onApp(m, c, body.mls);
      case 'handshake': return this.#onHandshake(m, c, body);
      case 'rejoin': return this.#onRejoin(m, c, body.keyPackage);
      case 'resend': return this.#onResend(m, c, body.seqs);
      case 'external': return this.#onExternal(m, c, body);
    }
  }

  async #onEvent(m: MsgEnvelope, c: ChatE2ee): Promise<void> {
    const e = m.event;
    if (!e) return;
    const me = this.#host.userId;
    const out = (e.type === 'removed' && e.users.includes(me)) || (e.type === 'left' && m.from === me) || e.type === 'deleted';
    if (out) {
      await c.state.run(() => this.#forgetChat(m.chatId, c));
      return;
    }
    if (['created', 'added', 'removed', 'left', 'joined', 'identity'].includes(e.type)) c.dirty = true;
  }

  async #onApp(m: MsgEnvelope, c: ChatE2ee, mls: Uint8Array): Promise<void> {
    const result = await c.state.run(async () => {
      const g = await this.#group(m.chatId, c);
      if (!g) return { ok: false as const, why: 'no-group' as const };
      let where: { groupId: Uint8Array; epoch: bigint };
      try {
        where = MlsGroup.messageEpoch(mls);
      } catch {
        return { ok: false as const, why: 'failed' as const };
      }
      if (!equalBytes(where.groupId, g.groupId)) {
        // Another group of this chat: the smaller id is the one everyone ends in.
        return { ok: false as const, why: 'epoch' as const, rejoin: compareBytes(where.groupId, g.groupId) < 0 };
      }
      if (where.epoch > g.epoch) return { ok: false as const, why: 'epoch' as const, rejoin: true };
      let out: Awaited<ReturnType<MlsGroup['decrypt']>>;
      let content: Content;
      try {
        out = await g.decrypt(mls);
        content = decodeContent(out.plaintext);
      } catch {
        return { ok: false as const, why: 'failed' as const };
      }
      await this.#setGroup(m.chatId, c, out.group);
      // MLS names the signing leaf; the server names the device: they must agree, and a message
      // of an earlier epoch must not come from a device removed since.
      const sender = out.sender;
      if (!sender || sender.userId !== m.from || sender.deviceId !== m.fromDevice || content.d !== m.fromDevice) return { ok: false as const, why: 'sender' as const };
      if (where.epoch < g.epoch && !g.members().some((x) => x.userId === sender.userId && x.deviceId === sender.deviceId)) return { ok: false as const, why: 'sender' as const };
      return { ok: true as const, content };
    });
    if (!result.ok) {
      this.#undecryptable(m, c, result.why, 'rejoin' in result ? result.rejoin : undefined);
      return;
    }
    const content = result.content;
    // A resend stands for a message this device reported, from the same device: nothing else.
    const replaces = content.r !== undefined && c.reported.get(content.r) === m.fromDevice ? content.r : undefined;
    if (replaces !== undefined) c.reported.delete(replaces);
    this.#host.deliver({ ...m, body: content.t ?? content.b ?? '' }, {
      encrypted: true, ...(content.k ? { attachmentKey: content.k } : {}), ...(content.tk ? { thumbnailKey: content.tk } : {}),
      ...(content.pv !== undefined ? { preview: content.pv } : {}),
      ...(replaces !== undefined ? { replacesSeq: replaces } : {}),
    });
  }

  async #onHandshake(m: MsgEnvelope, c: ChatE2ee, hs: { commit: Uint8Array | null; welcome: Uint8Array | null }): Promise<void> {
    if (m.fromDevice === this.#host.deviceId) return; // our own, resolved by #resolve
    let key: string | null = null;
    let where: { groupId: Uint8Array; epoch: bigint } | null = null;
    if (hs.commit) {
      try {
        where = MlsGroup.commitEpoch(hs.commit);
      } catch {
        return;
      }
      key = `${b64url(where.groupId)}:${where.epoch}`;
      // Only the first commit of an epoch counts, its Welcome included.
      const first = c.commits.get(key);
      if (first !== undefined && first !== m.seq) return;
    }
    await c.state.run(async () => {
      const g = await this.#group(m.chatId, c);
      if (hs.welcome) {
        const joined = await this.#tryJoin(m.chatId, hs.welcome, g);
        if (joined) {
          await this.#setGroup(m.chatId, c, joined);
          if (key) this.#remember(c, key, m.seq);
          c.dirty = true;
          return;
        }
      }
      if (!hs.commit || !where || !key) return;
      if (!g) {
        // No group to check it with: the first one seen stands (a later Welcome of its epoch is void).
        this.#remember(c, key, m.seq);
        return;
      }
      if (!equalBytes(where.groupId, g.groupId) || where.epoch !== g.epoch) return;
      try {
        await this.#setGroup(m.chatId, c, await g.process(hs.commit));
      } catch (err) {
        // Refused (forged, malformed, or proposals we do not accept): it does not take the epoch.
        this.#host.error(new ParleyError('E_BAD_ENVELOPE', `a commit in ${m.chatId} was refused: ${err instanceof Error ? err.message : String(err)}`, m.chatId));
        return;
      }
      this.#remember(c, key, m.seq);
      // Its adds were checked by its committer only: the next send checks them against the directory.
      c.dirty = true;
    });
  }

  #remember(c: ChatE2ee, key: string, seq: number): void {
    c.commits.set(key, seq);
    if (c.commits.size > 256) c.commits.delete(c.commits.keys().next().value as string);
  }

  /**
   * Joins from a Welcome meant for one of this device's key packages, for this chat: a group of
   * the chat's own (its id starts with the chatId), newer than the one it has, or another group
   * with a smaller id (two made at once: the smaller wins everywhere).
   */
  async #tryJoin(chatId: string, welcome: Uint8Array, current: MlsGroup | null): Promise<MlsGroup | null> {
    let refs: Uint8Array[];
    try {
      refs = MlsGroup.welcomeRefs(welcome);
    } catch {
      return null;
    }
    for (const ref of refs) {
      const found = await this.#findKeyPackage(ref);
      if (!found) continue;
      try {
        const g = await MlsGroup.join(welcome, found.kp);
        if (!new TextDecoder().decode(g.groupId).startsWith(`${chatId}:`)) return null;
        if (current && (equalBytes(current.groupId, g.groupId) ? current.epoch >= g.epoch : compareBytes(g.groupId, current.groupId) > 0)) return null;
        if (found.kind !== 'last') await this.#storage.delete(`kp/${bytesToHex(ref)}`);
        void this.replenish().catch((err: unknown) => this.#host.error(toError(err)));
        return g;
      } catch {
        return null;
      }
    }
    return null;
  }

  async #onExternal(m: MsgEnvelope, c: ChatE2ee, header: { groupId: Uint8Array | null; epoch: number | null }): Promise<void> {
    if (!m.media || m.fromDevice === this.#host.deviceId) return;
    // The header says which commit it is: a loser, or one for another epoch of our group, is not downloaded.
    if (header.groupId && header.epoch !== null) {
      const first = c.commits.get(`${b64url(header.groupId)}:${header.epoch}`);
      if (first !== undefined && first !== m.seq) return;
      const g = await c.state.run(() => this.#group(m.chatId, c));
      if (g && equalBytes(g.groupId, header.groupId) && g.epoch !== BigInt(header.epoch)) return;
    }
    let inner: E2eeBody | null = null;
    for (let attempt = 0; attempt < DOWNLOAD_ATTEMPTS && !inner && !this.#closed; attempt++) {
      try {
        inner = decodeE2ee(await this.#host.download(m.media));
      } catch (err) {
        if (err instanceof ParleyError && err.code === 'E_BAD_ENVELOPE') break;
        if (attempt < DOWNLOAD_ATTEMPTS - 1) await sleep(1000 * 3 ** attempt);
      }
    }
    if (!inner || inner.type !== 'handshake') {
      this.#host.error(new ParleyError('E_BAD_ENVELOPE', `a handshake attachment in ${m.chatId} could not be read`, m.chatId));
      this.#requestRejoin(m.chatId, c);
      return;
    }
    return this.#onHandshake(m, c, inner);
  }

  async #onRejoin(m: MsgEnvelope, c: ChatE2ee, keyPackage: Uint8Array): Promise<void> {
    if (!m.fromDevice || m.fromDevice === this.#host.deviceId) return;
    const name = `${m.from}/${m.fromDevice}`;
    const now = Date.now();
    if (now - (c.rejoinTaken.get(name) ?? 0) < REJOIN_ANSWER_EVERY_MS) return;
    c.rejoinTaken.set(name, now);
    if (c.rejoinTaken.size > 1024) c.rejoinTaken.delete(c.rejoinTaken.keys().next().value as string);
    c.rejoins.set(name, { userId: m.from, keyPackage });
    c.dirty = true;
    const g = await c.state.run(() => this.#group(m.chatId, c));
    if (g) this.#scheduleRepair(m.chatId, c, g);
  }

  #undecryptable(m: MsgEnvelope, c: ChatE2ee, reason: UndecryptableMessage['reason'], rejoin?: boolean): void {
    this.#host.undecryptable({ chatId: m.chatId, msgId: `${m.chatId}.${m.seq.toString(36)}`, seq: m.seq, from: m.from, fromDevice: m.fromDevice, ts: m.ts, reason });
    if (reason === 'sender' || reason === 'cleartext') return;
    c.reported.set(m.seq, m.fromDevice);
    if (c.reported.size > 1000) c.reported.delete(c.reported.keys().next().value as number);
    c.missing.add(m.seq);
    if (reason === 'no-group' || (reason === 'epoch' && rejoin !== false)) this.#requestRejoin(m.chatId, c);
    this.#armResend(m.chatId, c);
  }

  /** Asks, a second after the last failure, for what could not be read (100 seqs a request). */
  #armResend(chatId: string, c: ChatE2ee): void {
    if (c.resendTimer !== undefined || this.#closed) return;
    c.resendTimer = this.#later(() => {
      c.resendTimer = undefined;
      const seqs = [...c.missing].sort((a, b) => a - b).slice(0, 100);
      for (const s of seqs) c.missing.delete(s);
      if (seqs.length === 0 || this.#closed) return;
      this.#host.sendRaw(chatId, encodeE2ee({ type: 'resend', seqs })).catch((err: unknown) => this.#host.error(toError(err)));
      if (c.missing.size > 0) this.#armResend(chatId, c);
    }, 1000);
  }

  #requestRejoin(chatId: string, c: ChatE2ee, now = false): void {
    const t = Date.now();
    if (this.#closed || (!now && t - c.lastRejoinAt < REJOIN_EVERY_MS)) return;
    c.lastRejoinAt = t;
    void (async () => {
      const id = await this.identity();
      const kp = await newKeyPackage(id);
      await this.#saveKeyPackage(kp, 'rejoin');
      await this.#host.sendRaw(chatId, encodeE2ee({ type: 'rejoin', keyPackage: kp.data }));
    })().catch((err: unknown) => this.#host.error(toError(err)));
  }

  /**
   * Someone asked to be put back. One member commits it: the device with the lowest leaf at once,
   * the others only if it is still not done after a wait that grows with their rank (in a group
   * of 1,024 every device answering at once would make a thousand commits).
   */
  #scheduleRepair(chatId: string, c: ChatE2ee, g: MlsGroup): void {
    if (this.#closed) return;
    const askers = new Set(c.rejoins.keys());
    const order = g.members().filter((m) => !askers.has(nameOf(m))).sort((a, b) => a.leaf - b.leaf);
    const rank = Math.max(0, order.findIndex((m) => m.leaf === g.ownLeaf));
    const delay = rank === 0 ? Math.random() * 200 : Math.min(30_000, rank * 3000) + Math.random() * 500;
    this.#later(() => {
      if (this.#closed || c.rejoins.size === 0) return;
      void c.outgoing.run(async () => {
        const now = await c.state.run(() => this.#group(chatId, c));
        if (now) this.#dropAnsweredRejoins(c, now);
        if (c.rejoins.size > 0) await this.#ensureGroup(chatId, c);
      }).catch((err: unknown) => this.#host.error(toError(err)));
    }, delay);
  }

  /**
   * Sends again, once per requester and seq, what this device sent and the requester could not
   * read, if the requester was in the group then and every device in the group now was too, with
   * the same key (a resend is readable by the whole group as it is now).
   */
  async #onResend(m: MsgEnvelope, c: ChatE2ee, seqs: number[]): Promise<void> {
    if (m.fromDevice === this.#host.deviceId) return;
    const requester = `${m.from}/${m.fromDevice}`;
    for (const seq of seqs) {
      const once = `${requester}:${seq}`;
      if (c.answered.has(once)) continue;
      const raw = await this.#storage.get(`sent/${m.chatId}/${seq}`);
      if (!raw) continue;
      c.answered.add(once);
      if (c.answered.size > 10_000) c.answered.delete(c.answered.values().next().value as string);
      const [contentBytes, epoch, groupId] = uncbor.decode(raw) as [Uint8Array, number, string];
      const log = await this.#storage.get(`ep/${m.chatId}/${epoch}`);
      if (!log) continue;
      const [loggedGroup, entries] = uncbor.decode(log) as [string, Array<[string, string]>];
      if (loggedGroup !== groupId || !entries.some(([name]) => name === requester)) continue;
      const then = new Set(entries.map(([name, key]) => `${name} ${key}`));
      const content = decodeContent(contentBytes);
      // A media message's attachment reference is not kept: only text and bytes are resent.
      if (content.k) continue;
      void (async () => {
        const sealed = await this.encrypt(m.chatId, {
          ...(content.t !== undefined ? { text: content.t } : {}), ...(content.b ? { bytes: content.b } : {}),
          replacesSeq: seq,
        }, (now) => now.every((x) => then.has(`${x.name} ${x.key}`)));
        if (sealed) await this.#host.sendRaw(m.chatId, sealed.body);
      })().catch((err: unknown) => this.#host.error(toError(err)));
    }
  }

  #later(fn: () => void, ms: number): ReturnType<typeof setTimeout> {
    const t = setTimeout(() => {
      this.#timers.delete(t);
      fn();
    }, ms);
    this.#timers.add(t);
    return t;
  }

  /** Waits until every queued message of every chat is processed. */
  async idle(): Promise<void> {
    await Promise.all([...this.#chats.values()].map((c) => c.incoming.idle()));
  }

  close(): void {
    this.#closed = true;
    this.#releaseLock?.();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const c of this.#chats.values()) {
      c.resendTimer = undefined;
      for (const wake of c.joined.splice(0)) wake();
    }
  }
}

function toError(err: unknown): ParleyError {
  return err instanceof ParleyError ? err : new ParleyError('E_INTERNAL', err instanceof Error ? err.message : String(err));
}

/**
 * Whether a device's stored keys can read a message body of a chat (without changing them): for
 * diagnostics, and for checking that a removed or revoked device cannot read what followed.
 */
export async function canDecrypt(storage: KeyStorage, chatId: string, body: Uint8Array): Promise<boolean> {
  const raw = await storage.get(`g/${chatId}`);
  if (!raw || !isE2eeBody(body)) return false;
  try {
    const b = decodeE2ee(body);
    if (b.type !== 'app') return false;
    await MlsGroup.decode(raw).decrypt(b.mls);
    return true;
  } catch {
    return false;
  }
}
