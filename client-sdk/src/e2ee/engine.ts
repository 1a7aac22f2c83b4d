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
import type { ChatInfo, ClaimedDeviceKeys, IdentityPublished, KeyPackageCount, KeyPackagesUploaded, UploadKeyPackagesInput, UserIdentities } from '../api-types.js';
import type { MediaRef, MsgEnvelope } from '../codec.js';
import { ParleyError } from '../errors.js';
import { bytesToHex } from '../bytes.js';
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
  /** The sequencer's last delivered seq of a chat (own seqs included), if known. */
  lastSeq(chatId: string): number | undefined;
  /** A message for the application, in seq order (decrypted, or not end-to-end at all). */
  deliver(m: MsgEnvelope, extra: DecryptedExtra): void;
  undecryptable(u: UndecryptableInfo): void;
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
  /** This message is the sender's device resending the one at this seq (which this device could not decrypt). */
  replacesSeq?: number | undefined;
}

/** A message this device could not decrypt (the engine has asked for it again). */
export interface UndecryptableInfo {
  chatId: string;
  msgId: string;
  seq: number;
  from: string;
  fromDevice: string;
  ts: number;
  /** Why: no group state for the chat, an epoch this device is not (or no longer) in, or a failed check. */
  reason: 'no-group' | 'epoch' | 'failed' | 'sender';
}

/** Content to send. */
export interface OutgoingContent { text?: string; bytes?: Uint8Array; attachmentKey?: Uint8Array; thumbnailKey?: Uint8Array; replacesSeq?: number }

const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const uncbor = new Decoder({ useRecords: false, mapsAsObjects: true });
const utf8 = new TextEncoder();

/** How many key packages to make when the server says the pool is low (it says how many it wants). */
const MAX_UPLOAD_BATCH = 100;
/** A device asks to be put back in a chat at most this often. */
const REJOIN_EVERY_MS = 20_000;
/** The roster is checked against the server at least this often before a send. */
const ROSTER_MAX_AGE_MS = 10 * 60_000;
/** A commit that lost its epoch is rebuilt this many times before the send fails. */
const COMMIT_ATTEMPTS = 4;
/** How long a commit may wait for its place in the seq stream to be known. */
const RESOLVE_TIMEOUT_MS = 30_000;
/** Own sent contents kept for resend requests, per chat. */
const SENT_KEEP = 1000;
/** Epoch member lists kept per chat (a message older than that many epochs is not resent). */
const EPOCHS_KEPT = 64;

export const b64url = (b: Uint8Array): string => {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
};
export const fromB64url = (s: string): Uint8Array => {
  const std = s.replaceAll('-', '+').replaceAll('_', '/');
  return Uint8Array.from(atob(std + '='.repeat((4 - (std.length % 4)) % 4)), (c) => c.charCodeAt(0));
};

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
  /** The group before the commit (its epoch must still be the confirmed one). */
  from: MlsGroup;
  /** The group after it. */
  to: MlsGroup;
  seq: number | undefined;
  done: (won: boolean) => void;
  queued: boolean;
}

interface ChatE2ee {
  incoming: Queue;
  outgoing: Queue;
  state: Queue;
  group: MlsGroup | null | undefined;
  /** The roster may differ from the group (an event, a rejoin request, a lost commit). */
  dirty: boolean;
  checkedAt: number;
  pending: PendingCommit | null;
  /** Devices that asked to be put back, with the key package they sent. */
  rejoins: Map<string, { userId: string; keyPackage: Uint8Array }>;
  lastRejoinAt: number;
  /** Seqs this device could not decrypt, to ask for again. */
  missing: Set<number>;
  /** The first commit seen for each `<groupId>:<epoch>` (a later one of the same epoch lost, its Welcome too). */
  commits: Map<string, number>;
  resendTimer: ReturnType<typeof setTimeout> | undefined;
}

export class E2eeEngine {
  readonly #host: E2eeHost;
  readonly #storage: KeyStorage;
  readonly #chats = new Map<string, ChatE2ee>();
  readonly #directChats = new Map<string, string>();
  #identity: Promise<Identity> | undefined;
  #replenishing: Promise<void> | undefined;
  #started: Promise<void> | undefined;
  #closed = false;

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
      const id = await this.identity();
      await this.#host.api.publishIdentity({ credential: b64url(id.credential), signatureKey: b64url(id.signaturePublicKey) });
      await this.replenish();
    })();
    this.#started.catch(() => { this.#started = undefined; });
    return this.#started;
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
          for (const kp of fresh) await this.#saveKeyPackage(kp, false);
          if (lastResort) await this.#saveKeyPackage(lastResort, true);
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

  async #saveKeyPackage(kp: OwnKeyPackage, lastResort: boolean): Promise<void> {
    await this.#storage.set(`kp/${bytesToHex(kp.ref)}`, cbor.encode([kp.data, kp.secret, lastResort]) as Uint8Array);
  }

  async #findKeyPackage(ref: Uint8Array): Promise<{ kp: OwnKeyPackage; lastResort: boolean } | null> {
    const raw = await this.#storage.get(`kp/${bytesToHex(ref)}`);
    if (!raw) return null;
    const [data, secret, lastResort] = uncbor.decode(raw) as [Uint8Array, Uint8Array, boolean];
    return { kp: { ref, data, secret }, lastResort };
  }

  // --- per-chat state ------------------------------------------------------------------------------

  #chat(chatId: string): ChatE2ee {
    let c = this.#chats.get(chatId);
    if (!c) {
      c = {
        incoming: new Queue(), outgoing: new Queue(), state: new Queue(), group: undefined, dirty: true, checkedAt: 0, pending: null,
        rejoins: new Map(), lastRejoinAt: 0, missing: new Set(), resendTimer: undefined, commits: new Map(),
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

  /** Replaces the chat's confirmed group (null: none) and stores it before anything else happens. */
  async #setGroup(chatId: string, c: ChatE2ee, g: MlsGroup | null): Promise<void> {
    if (g && g.active) {
      await this.#storage.set(`g/${chatId}`, g.encode());
      // Who was in each epoch: a resend goes only to a device that could have read the original.
      if (c.group?.epoch !== g.epoch || !c.group || !equalBytes(c.group.groupId, g.groupId)) {
        const epoch = Number(g.epoch);
        await this.#storage.set(`ep/${chatId}/${epoch}`, cbor.encode([b64url(g.groupId), g.members().map((m) => `${m.userId}/${m.deviceId}`)]) as Uint8Array);
        if (epoch >= EPOCHS_KEPT) await this.#storage.delete(`ep/${chatId}/${epoch - EPOCHS_KEPT}`);
      }
    } else {
      await this.#storage.delete(`g/${chatId}`);
    }
    c.group = g && g.active ? g : null;
  }

  // --- sending -------------------------------------------------------------------------------------

  /** The chat a `to` (userId or chatId) names. */
  async chatIdOf(to: string): Promise<string> {
    if (isChatId(to)) return to;
    let chatId = this.#directChats.get(to);
    if (!chatId) {
      chatId = (await this.#host.api.createChat(to)).chatId;
      this.#directChats.set(to, chatId);
    }
    return chatId;
  }

  /**
   * Encrypts content for a chat: puts the group in line with the chat's member devices first
   * (creating it, or committing adds and removes), then encrypts. Resolves with the body to send.
   */
  async encrypt(
    chatId: string, content: OutgoingContent, onlyTo?: (members: string[]) => boolean,
  ): Promise<{ body: Uint8Array; epoch: number; groupId: string } | null> {
    const c = this.#chat(chatId);
    await this.start();
    return c.outgoing.run(async () => {
      await this.#ensureGroup(chatId, c);
      const body = await c.state.run(async () => {
        const g = c.group;
        if (!g) throw new ParleyError('E_CONFLICT', `no end-to-end group for ${chatId}`);
        if (onlyTo && !onlyTo(g.members().map((m) => `${m.userId}/${m.deviceId}`))) return null;
        const inner: Content = {
          d: this.#host.deviceId, t: content.text, b: content.bytes, k: content.attachmentKey, tk: content.thumbnailKey, r: content.replacesSeq,
        };
        const { group, message } = await g.encrypt(encodeContent(inner));
        // Stored before the message leaves: a restart must never reuse a message key.
        await this.#setGroup(chatId, c, group);
        return { body: encodeE2ee({ type: 'app', mls: message }), epoch: Number(g.epoch), groupId: b64url(g.groupId) };
      });
      return body;
    });
  }

  /** Remembers an own message's content and epoch (for resend requests) once its seq is known. */
  async rememberSent(chatId: string, seq: number, content: OutgoingContent, sentIn: { epoch: number; groupId: string }): Promise<void> {
    const inner: Content = { d: this.#host.deviceId, t: content.text, b: content.bytes, k: content.attachmentKey, tk: content.thumbnailKey };
    await this.#storage.set(`sent/${chatId}/${seq}`, cbor.encode([encodeContent(inner), sentIn.epoch, sentIn.groupId]) as Uint8Array);
    if (seq > SENT_KEEP) await this.#storage.delete(`sent/${chatId}/${seq - SENT_KEEP}`);
  }

  async #ensureGroup(chatId: string, c: ChatE2ee): Promise<void> {
    for (let attempt = 0; attempt < COMMIT_ATTEMPTS; attempt++) {
      const g = await c.state.run(() => this.#group(chatId, c));
      const stale = Date.now() - c.checkedAt > ROSTER_MAX_AGE_MS;
      if (g && !c.dirty && !stale) return;
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

  /**
   * What to commit so the group holds exactly the chat's member devices with their published
   * keys: a new group, or adds and removes (null: nothing to do).
   */
  async #plan(chatId: string, c: ChatE2ee, g: MlsGroup | null): Promise<{ from: MlsGroup | null; add: Uint8Array[]; remove: number[] } | null> {
    const chat = await this.#host.api.getChat(chatId);
    const users = chat.members.map((m) => m.userId);
    if (!users.includes(this.#host.userId)) throw new ParleyError('E_NOT_MEMBER', chatId);
    const directory = await this.#host.api.listIdentities(users);
    const wanted = new Map<string, { userId: string; deviceId: string; key: Uint8Array }>();
    for (const u of directory) {
      for (const d of u.devices) wanted.set(`${u.userId}/${d.deviceId}`, { userId: u.userId, deviceId: d.deviceId, key: fromB64url(d.signatureKey) });
    }
    const self = `${this.#host.userId}/${this.#host.deviceId}`;
    const remove: number[] = [];
    const present = new Set<string>();
    if (g) {
      this.#dropAnsweredRejoins(c, g);
      for (const m of g.members()) {
        const name = `${m.userId}/${m.deviceId}`;
        if (name === self) continue;
        const w = wanted.get(name);
        if (!w || !equalBytes(w.key, m.signatureKey) || c.rejoins.has(name)) remove.push(m.leaf);
        else present.add(name);
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
      const name = `${m.userId}/${m.deviceId}`;
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
    if (!from) {
      // A new group: made from a key package of our own that is never uploaded.
      const own = await newKeyPackage(id);
      const groupId = utf8.encode(`${chatId}:${b64url(crypto.getRandomValues(new Uint8Array(9)))}`);
      from = await MlsGroup.create(groupId, own);
      if (change.add.length === 0) {
        // Alone (nobody else has keys yet): the group starts here, nothing to tell anyone.
        await c.state.run(() => this.#setGroup(chatId, c, from));
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
    const pending: PendingCommit = { from, to, seq: undefined, done: () => {}, queued: false };
    const resolved = new Promise<boolean>((resolve) => { pending.done = resolve; });
    c.pending = pending;
    const timer = setTimeout(() => pending.done(false), RESOLVE_TIMEOUT_MS);
    try {
      const stored = await this.#sendHandshake(chatId, encodeE2ee(body));
      pending.seq = stored.seq;
      this.#maybeResolve(chatId, c, this.#host.lastSeq(chatId));
      return await resolved;
    } finally {
      clearTimeout(timer);
      if (c.pending === pending) c.pending = null;
    }
  }

  /** A handshake in one message, or as the attachment of one when it is too big (large groups). */
  async #sendHandshake(chatId: string, encoded: Uint8Array): Promise<{ seq: number }> {
    if (encoded.length <= this.#host.maxBodyBytes) return this.#host.sendRaw(chatId, encoded);
    const attachmentId = await this.#host.upload(encoded);
    return this.#host.sendRaw(chatId, encodeE2ee({ type: 'external' }), attachmentId);
  }

  /** Queues the pending commit's resolution once every message before it was handed to the incoming queue. */
  #maybeResolve(chatId: string, c: ChatE2ee, delivered: number | undefined): void {
    const p = c.pending;
    if (!p || p.seq === undefined || p.queued) return;
    // Unknown position (nothing of this chat seen yet): the commit starts this device's view of it.
    if (delivered !== undefined && delivered < p.seq - 1) return;
    p.queued = true;
    void c.incoming.run(() => c.state.run(async () => {
      const current = await this.#group(chatId, c);
      const fresh = p.from.epoch === 0n && !current;
      const same = current && equalBytes(current.groupId, p.from.groupId) && current.epoch === p.from.epoch;
      if (fresh || same) {
        await this.#setGroup(chatId, c, p.to);
        p.done(true);
      } else {
        // Another commit (or group) came first: ours is void; the roster is checked again.
        c.dirty = true;
        p.done(false);
      }
    }));
  }

  // --- receiving -----------------------------------------------------------------------------------

  /** A message from the sequencer (in seq order): processed in order, then handed to the host. */
  onMessage(m: MsgEnvelope): void {
    const c = this.#chat(m.chatId);
    void c.incoming.run(() => this.#receive(m, c).catch((err: unknown) => {
      this.#host.error(err instanceof ParleyError ? err : new ParleyError('E_INTERNAL', err instanceof Error ? err.message : String(err)));
    }));
    this.#maybeResolve(m.chatId, c, m.seq);
  }

  /** One of this device's own messages got its seq (after the sequencer saw it). */
  onStored(chatId: string): void {
    const c = this.#chats.get(chatId);
    if (c) this.#maybeResolve(chatId, c, this.#host.lastSeq(chatId));
  }

  async #receive(m: MsgEnvelope, c: ChatE2ee): Promise<void> {
    if (m.event) {
      await this.#onEvent(m, c);
      this.#host.deliver(m, { encrypted: false });
      return;
    }
    if (!isE2eeBody(m.body)) {
      this.#host.deliver(m, { encrypted: false });
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
      case 'rejoin':
        if (m.fromDevice && m.fromDevice !== this.#host.deviceId) {
          c.rejoins.set(`${m.from}/${m.fromDevice}`, { userId: m.from, keyPackage: body.keyPackage });
          c.dirty = true;
          this.#scheduleRepair(m.chatId, c);
        }
        return;
      case 'resend':
        return this.#onResend(m, body.seqs);
      case 'external': {
        if (!m.media || m.fromDevice === this.#host.deviceId) return;
        let inner: E2eeBody;
        try {
          inner = decodeE2ee(await this.#host.download(m.media));
        } catch (err) {
          this.#host.error(new ParleyError('E_BAD_ENVELOPE', `a handshake attachment in ${m.chatId} is unreadable: ${err instanceof Error ? err.message : String(err)}`, m.chatId));
          return;
        }
        if (inner.type === 'handshake') return this.#onHandshake(m, c, inner);
        return;
      }
    }
  }

  async #onEvent(m: MsgEnvelope, c: ChatE2ee): Promise<void> {
    const e = m.event;
    if (!e) return;
    const me = this.#host.userId;
    const out = (e.type === 'removed' && e.users.includes(me)) || (e.type === 'left' && m.from === me) || e.type === 'deleted';
    if (out) {
      await c.state.run(() => this.#setGroup(m.chatId, c, null));
      return;
    }
    if (['created', 'added', 'removed', 'left', 'joined', 'identity'].includes(e.type)) c.dirty = true;
  }

  async #onApp(m: MsgEnvelope, c: ChatE2ee, mls: Uint8Array): Promise<void> {
    const result = await c.state.run(async () => {
      const g = await this.#group(m.chatId, c);
      if (!g) return 'no-group' as const;
      let where: { groupId: Uint8Array; epoch: bigint };
      try {
        where = MlsGroup.messageEpoch(mls);
      } catch {
        return 'failed' as const;
      }
      if (!equalBytes(where.groupId, g.groupId) || where.epoch > g.epoch) return 'epoch' as const;
      try {
        const { group, plaintext } = await g.decrypt(mls);
        await this.#setGroup(m.chatId, c, group);
        return decodeContent(plaintext);
      } catch {
        return 'failed' as const;
      }
    });
    if (typeof result === 'string') {
      this.#undecryptable(m, c, result);
      return;
    }
    // MLS proves a member sent it; the server says which device: they must agree.
    if (result.d !== m.fromDevice) {
      this.#undecryptable(m, c, 'sender');
      return;
    }
    this.#host.deliver({ ...m, body: result.t ?? result.b ?? '' }, {
      encrypted: true, ...(result.k ? { attachmentKey: result.k } : {}), ...(result.tk ? { thumbnailKey: result.tk } : {}), ...(result.r !== undefined ? { replacesSeq: result.r } : {}),
    });
  }

  async #onHandshake(m: MsgEnvelope, c: ChatE2ee, hs: { commit: Uint8Array | null; welcome: Uint8Array | null }): Promise<void> {
    let where: { groupId: Uint8Array; epoch: bigint } | null = null;
    if (hs.commit) {
      try {
        where = MlsGroup.commitEpoch(hs.commit);
      } catch {
        return;
      }
      // Only the first commit of an epoch counts, for every device, with a group or without one
      // yet: a Welcome that came with a losing commit would put its device in a dead branch.
      const key = `${b64url(where.groupId)}:${where.epoch}`;
      const first = c.commits.get(key);
      if (first !== undefined && first !== m.seq) return;
      c.commits.set(key, m.seq);
      if (c.commits.size > 256) c.commits.delete(c.commits.keys().next().value as string);
    }
    if (m.fromDevice === this.#host.deviceId) return; // our own, resolved by its seq
    await c.state.run(async () => {
      const g = await this.#group(m.chatId, c);
      if (hs.welcome) {
        // Another group's Welcome replaces ours only when we asked to be put back (ours fell
        // behind or was reset): otherwise the first group of the chat stays, as for commits.
        const joined = await this.#tryJoin(hs.welcome, g, c.lastRejoinAt > 0 && Date.now() - c.lastRejoinAt < 5 * 60_000);
        if (joined) {
          await this.#setGroup(m.chatId, c, joined);
          c.dirty = true;
          return;
        }
      }
      if (!hs.commit || !g || !where) return;
      // Only the first commit of our epoch applies; later ones of the same epoch lost the race.
      if (!equalBytes(where.groupId, g.groupId) || where.epoch !== g.epoch) return;
      try {
        await this.#setGroup(m.chatId, c, await g.process(hs.commit));
      } catch (err) {
        this.#host.error(new ParleyError('E_BAD_ENVELOPE', `a commit in ${m.chatId} was refused: ${err instanceof Error ? err.message : String(err)}`, m.chatId));
      }
    });
  }

  /** Joins from a Welcome if it is for one of this device's key packages (and newer than what we have). */
  async #tryJoin(welcome: Uint8Array, current: MlsGroup | null, allowOtherGroup: boolean): Promise<MlsGroup | null> {
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
        if (current && (equalBytes(current.groupId, g.groupId) ? current.epoch >= g.epoch : !allowOtherGroup)) return null;
        if (!found.lastResort) await this.#storage.delete(`kp/${bytesToHex(ref)}`);
        void this.replenish().catch((err: unknown) => this.#host.error(toError(err)));
        return g;
      } catch {
        return null;
      }
    }
    return null;
  }

  #undecryptable(m: MsgEnvelope, c: ChatE2ee, reason: UndecryptableInfo['reason']): void {
    this.#host.undecryptable({ chatId: m.chatId, msgId: `${m.chatId}.${m.seq.toString(36)}`, seq: m.seq, from: m.from, fromDevice: m.fromDevice, ts: m.ts, reason });
    if (reason === 'sender') return;
    c.missing.add(m.seq);
    if (reason === 'no-group' || reason === 'epoch') this.#requestRejoin(m.chatId, c);
    c.resendTimer ??= setTimeout(() => {
      c.resendTimer = undefined;
      const seqs = [...c.missing].slice(0, 100);
      for (const s of seqs) c.missing.delete(s);
      if (seqs.length > 0 && !this.#closed) {
        this.#host.sendRaw(m.chatId, encodeE2ee({ type: 'resend', seqs })).catch((err: unknown) => this.#host.error(toError(err)));
      }
    }, 1000);
  }

  #requestRejoin(chatId: string, c: ChatE2ee): void {
    const now = Date.now();
    if (this.#closed || now - c.lastRejoinAt < REJOIN_EVERY_MS) return;
    c.lastRejoinAt = now;
    void (async () => {
      const id = await this.identity();
      const kp = await newKeyPackage(id);
      await this.#saveKeyPackage(kp, false);
      await this.#host.sendRaw(chatId, encodeE2ee({ type: 'rejoin', keyPackage: kp.data }));
    })().catch((err: unknown) => this.#host.error(toError(err)));
  }

  /** Someone asked to be put back: commit it soon (any member may; the first commit wins). */
  #scheduleRepair(chatId: string, c: ChatE2ee): void {
    if (this.#closed) return;
    setTimeout(() => {
      if (this.#closed || c.rejoins.size === 0) return;
      void c.outgoing.run(() => this.#ensureGroup(chatId, c)).catch((err: unknown) => this.#host.error(toError(err)));
    }, Math.floor(Math.random() * 300));
  }

  async #onResend(m: MsgEnvelope, seqs: number[]): Promise<void> {
    if (m.fromDevice === this.#host.deviceId) return;
    for (const seq of seqs) {
      const raw = await this.#storage.get(`sent/${m.chatId}/${seq}`);
      if (!raw) continue;
      const [contentBytes, epoch, groupId] = uncbor.decode(raw) as [Uint8Array, number, string];
      // Only to a device that was in the group when the original went out: a member added later
      // must not get the history its join keeps from it.
      const log = await this.#storage.get(`ep/${m.chatId}/${epoch}`);
      if (!log) continue;
      const [loggedGroup, names] = uncbor.decode(log) as [string, string[]];
      if (loggedGroup !== groupId || !names.includes(`${m.from}/${m.fromDevice}`)) continue;
      const then = new Set(names);
      const content = decodeContent(contentBytes);
      // A media message's attachment reference is not kept: only text and bytes are resent.
      if (content.k) continue;
      void (async () => {
        // The resend is readable by the whole group as it is now: only if nobody in it joined
        // after the original (a device put back after losing its state keeps its name).
        const sealed = await this.encrypt(m.chatId, {
          ...(content.t !== undefined ? { text: content.t } : {}), ...(content.b ? { bytes: content.b } : {}),
          replacesSeq: seq,
        }, (now) => now.every((name) => then.has(name)));
        if (sealed) await this.#host.sendRaw(m.chatId, sealed.body);
      })().catch((err: unknown) => this.#host.error(toError(err)));
    }
  }

  /** Waits until every queued message of every chat is processed. */
  async idle(): Promise<void> {
    await Promise.all([...this.#chats.values()].map((c) => c.incoming.idle()));
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#chats.values()) {
      if (c.resendTimer !== undefined) clearTimeout(c.resendTimer);
      c.pending?.done(false);
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
