/**
 * ParleyClient: one device's MQTT 3.1.1 connection to Parley (TCP `mqtt://` in Node, WebSocket
 * `ws://`/`wss://` in Node and browsers). See README.md for the guarantees it gives.
 *
 * Protocol, in short: clientId = username = deviceId, password = device token, clean = false (a
 * persistent broker session). After CONNACK the client subscribes `inbox/<deviceId>` (QoS 1) and
 * `live/<deviceId>` (QoS 0); when the broker had no session for it (sessionPresent = false) it then
 * publishes `sync` so the server resends what is undelivered. Messages are `send` envelopes
 * published QoS 1 on `outbox/<deviceId>`; the PUBACK is the "sent" tick; the server answers with
 * `stored` (the seq). Read receipts are empty QoS 1 publishes on `receipts/<msgId>`.
 *
 * Reconnection is done here (mqtt.js `reconnectPeriod` is 0): exponential back-off with jitter,
 * reset after each successful CONNACK. One mqtt.js client instance lives as long as the
 * ParleyClient, so its in-memory outgoing store retransmits the QoS 1 publishes that were not
 * PUBACKed (same packet, same clientMsgId) when the connection comes back.
 *
 * Browser-safe: no `node:` import, no Buffer.
 */
// The default import: mqtt.js' browser ESM build has no named exports.
import mqtt from 'mqtt';
import type { IClientOptions, IConnackPacket, MqttClient } from 'mqtt';
import {
  decode, encode, type Body, type ChatEvent, type Envelope, type MediaRef, type MsgEnvelope, type StoredEnvelope, type TypingState,
} from './codec.js';
import type {
  AttachmentInfo, ChatChange, ChatInfo, ChatListItem, ChatSettingsInput, CreateGroupInput, DeviceInfo, HistoryMessage, HistoryPage, InviteInfo,
  LinkCode, LookupEntry, MessageFields, MessageStatusResponse, NewInvite, ParticipantsInput, UpdateChatInput,
  DownloadUrl, PrivacyInput, PrivacySettings, ProfileInfo, ProfileInput,
} from './api-types.js';
import { ParleyApi } from './http.js';
import { normalizePhoneNumber, type CountryCode } from './contacts.js';
import { CONTACT_LIMITS, hashPhone } from './social.js';
import type { PushConfigInfo, PushRegistrationInfo, PushRegistrationInput } from './api-types.js';
import type {
  ClaimedDeviceKeys, IdentityPublished, KeyPackageCount, KeyPackagesUploaded, PublishIdentityInput, UploadKeyPackagesInput, UserIdentities,
} from './api-types.js';
import { base64ToBytes, base64UrlToBytes, bytesToBase64 } from './bytes.js';
import { downloadMedia, mediaBytes, prepareMediaBytes, uploadMedia, type MediaData, type MediaMeta, type TransferOptions } from './media.js';
import { ParleyError, type ErrorCode } from './errors.js';
import { isChatId, isClientMsgId, isId, isMsgId, msgIdOf, newClientMsgId } from './ids.js';
import { inboxTopic, liveTopic, outboxTopic, receiptTopic } from './topics.js';
import { TypedEmitter } from './emitter.js';
import { StatusInbox, type StatusPostEvent } from './status.js';
import type { OwnStatusPost, PostStatusInput, StatusFeed, StatusViewer } from './api-types.js';
import type { AccountDeleted, AccountExport, DeletionCodeSent, ExportRecord } from './api-types.js';
import { LiveChannel, type PresenceInfo, type TypingInfo } from './live.js';
import { MemoryStateStore, OwnStatusTracker, Sequencer, type StateStore, type StatusUpdate } from './sequencer.js';
import { E2eeEngine, type DecryptedExtra, type OutgoingContent, type UndecryptableMessage } from './e2ee/engine.js';
import { MemoryKeyStorage, type KeyStorage } from './e2ee/storage.js';
import { decryptAttachment, decodeAttachmentKey, encodeAttachmentKey, encryptAttachment } from './e2ee/attachment.js';
import { formatSafetyNumber, safetyNumber, safetyQrPayload, verifySafetyQr, type IdentitySet } from './e2ee/safety.js';

export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'closed';

export interface ParleyClientOptions {
  /** Broker URL: `mqtt://host:1883`, `mqtts://…`, `ws://host:8083/mqtt` or `wss://…`. Required. */
  url: string;
  /** This device's id (also the MQTT clientId and username). Required. */
  deviceId: string;
  /** This device's token (the MQTT password). Required. */
  token: string;
  /**
   * The user's id. Used to tell the user's own messages (`message.own`, sent from another of the
   * user's devices) and to ignore the user's own read receipts when computing ticks.
   * @defaultValue undefined
   */
  userId?: string | undefined;
  /**
   * The HTTP API's base URL (e.g. `http://localhost:8080`), for the operations that go over HTTP
   * (chats and groups, history, message status, devices). Without it they reject with E_CONFIG,
   * and a seq gap the server does not resend cannot be fetched from history.
   * @defaultValue undefined
   */
  apiUrl?: string | undefined;
  /** MQTT keepalive, in seconds. @defaultValue 30 */
  keepalive: number;
  /** First reconnect delay (ms); doubles on every failed attempt, with jitter. @defaultValue 500 */
  reconnectPeriodMs: number;
  /** Longest reconnect delay (ms). @defaultValue 15000 */
  maxReconnectPeriodMs: number;
  /** How long `connect()` may take, and the CONNACK timeout of each attempt (ms). @defaultValue 10000 */
  connectTimeoutMs: number;
  /** How long a seq gap may stay open before the client asks the server for a sync (ms). @defaultValue 2000 */
  gapTimeoutMs: number;
  /**
   * Where the last delivered seq of each chat is kept (key `seq:<chatId>`), so that duplicates are
   * dropped across restarts. @defaultValue a new {@link MemoryStateStore}
   */
  state: StateStore;
  /**
   * Extra mqtt.js options (TLS, `wsOptions`, `transformWsUrl`, …). `clientId`, `username`,
   * `password`, `clean`, `keepalive`, `protocolVersion`, `reconnectPeriod`, `connectTimeout`,
   * `manualConnect` and `resubscribe` are always set by the client.
   * @defaultValue \{\}
   */
  mqttOptions: Partial<IClientOptions>;
  /**
   * End-to-end encryption of user-to-user chats (MLS; docs/SECURITY.md): on by default when
   * `apiUrl` and `userId` are set, with the device's keys in `storage` (memory unless given: pass
   * `FileKeyStorage` from `@parley/client-sdk/node` or `IndexedDbKeyStorage` to keep them across
   * restarts; a device that loses its keys asks to be put back and cannot read what came before).
   * `false`: bodies are sent in the clear (bots, backend services).
   * @defaultValue `{ storage: new MemoryKeyStorage() }` with apiUrl and userId, else false
   */
  e2ee: false | { storage: KeyStorage };
  /**
   * The server's largest MQTT payload (`PARLEY_MAX_PAYLOAD_BYTES`): end-to-end handshakes bigger
   * than that (large groups) go as attachments. @defaultValue 65536
   */
  maxPayloadBytes: number;
}

/** What the constructor takes: the required options, the rest optional. */
export type ParleyClientInit = Pick<ParleyClientOptions, 'url' | 'deviceId' | 'token'> &
  Partial<Omit<ParleyClientOptions, 'url' | 'deviceId' | 'token' | 'e2ee'>> & { e2ee?: boolean | { storage?: KeyStorage } };

/** The defaults of the optional options (`state` excepted: each client gets its own store). */
export const DEFAULT_CLIENT_OPTIONS: Readonly<
  Pick<ParleyClientOptions, 'keepalive' | 'reconnectPeriodMs' | 'maxReconnectPeriodMs' | 'connectTimeoutMs' | 'gapTimeoutMs' | 'maxPayloadBytes'>
> = Object.freeze({
  maxPayloadBytes: 65_536,
  keepalive: 30,
  reconnectPeriodMs: 500,
  maxReconnectPeriodMs: 15_000,
  connectTimeoutMs: 10_000,
  gapTimeoutMs: 2_000,
});

/** Default timeout of {@link ParleyClient.waitStored}, in ms. */
export const DEFAULT_WAIT_STORED_MS = 30_000;

/** A chat message, delivered in seq order per chat and at most once (group changes included, with `event`). */
export interface ChatMessage extends MessageFields {
  body: Body;
  /** Sent by this user (from another of the user's devices). */
  own: boolean;
  /** The body was end-to-end encrypted to this device (false: sent in the clear, or a server event). */
  encrypted?: boolean | undefined;
  /** An end-to-end encrypted attachment's key (base64): `downloadMedia(message)` decrypts with it. */
  mediaKey?: string | undefined;
  /** The key of its client-made thumbnail (base64): `downloadMedia(message, { thumbnail: true })`. */
  thumbnailKey?: string | undefined;
  /** The sender's device resent this message in place of one this device could not decrypt (its msgId). */
  replaces?: string | undefined;
}

export type { UndecryptableMessage } from './e2ee/engine.js';

/** What `sendMessage` resolves with: where the server stored the message. */
export type SentMessage = StoredInfo;

/**
 * Something about a chat changed:
 * - `event`: a group change in the chat's seq stream (members, admins, name, deletion), in order
 *   with the messages;
 * - `receipt`: `by` (in a direct chat: the other member when absent) has every message up to
 *   `seq` delivered or read;
 * - `tally`: of the `of` other members of a group, `delivered` / `read` have this user's messages
 *   up to `seq` (`deliveredToAll`, `readByAll` when all have).
 */
export type ChatUpdate =
  | { type: 'event'; chatId: string; msgId: string; seq: number; by: string; ts: number; event: ChatEvent }
  | { type: 'receipt'; chatId: string; seq: number; status: 'delivered' | 'read'; ts: number; by?: string | undefined }
  | { type: 'tally'; chatId: string; seq: number; delivered: number; read: number; of: number; deliveredToAll: boolean; readByAll: boolean };

/** Where the server stored one of this device's messages. */
export interface StoredInfo {
  clientMsgId: string;
  msgId: string;
  chatId: string;
  seq: number;
  ts: number;
}

export interface SyncedInfo {
  /** How many messages the server resent. */
  count: number;
  /** Set when the sync was for one chat. */
  chatId?: string;
}

export type { StatusUpdate } from './sequencer.js';

export interface ParleyClientEvents {
  /** A chat message from another user or from another of this user's devices (group changes included). */
  newMessage: ChatMessage;
  /** A group change, a receipt, or a group tally: see {@link ChatUpdate}. */
  chatUpdate: ChatUpdate;
  /**
   * The chat list (last message, unread count, flags), fetched by itself when the broker had no
   * session for this device (a newly linked device, or one away longer than its session), with `apiUrl`.
   */
  chatList: ChatListItem[];
  /** One of this device's messages got its seq. */
  stored: StoredInfo;
  /** An end-to-end encrypted message this device could not decrypt (see {@link UndecryptableMessage}). */
  undecryptable: UndecryptableMessage;
  /** A tick of one of the user's own messages advanced (one event per message). */
  status: StatusUpdate;
  /** The server finished a sync. */
  synced: SyncedInfo;
  state: ConnectionState;
  /** Error envelopes from the server, undecodable payloads, connection problems. Never thrown. */
  error: ParleyError;
  /** A watched user's presence: at once for each user of {@link ParleyClient.watchChats}, then on every change. */
  presence: PresenceInfo;
  /** Someone typing or recording in a watched chat, and `stop` (sent, or after TYPING_TTL_MS of silence). */
  typing: TypingInfo;
  /**
   * A contact's status post reached this device (or one of this user's own, `own`, from another
   * device), or its removal (`removed`: hide it). Posts that expired before they arrived are not
   * emitted; hide the others at `expiresAt`. Devices that were offline get them on reconnection;
   * `listStatuses()` gives the whole current feed.
   */
  statusPost: StatusPostEvent;
}

interface Outbound {
  topic: string;
  payload: Uint8Array;
  resolve: () => void;
  reject: (err: ParleyError) => void;
  /** Handed to mqtt.js (which then owns retransmission) and not yet answered. */
  inFlight: boolean;
  settled: boolean;
}

interface Waiter<T> {
  resolve: (value: T) => void;
  reject: (err: ParleyError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
}

type MqttPayload = Parameters<MqttClient['publish']>[1];

/** Bounded memory of recent stored results and error refs (for `waitStored`). */
const REMEMBER = 10_000;

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > REMEMBER) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
}

/** CONNACK codes that mean the token is refused: retrying with it cannot help. */
const AUTH_CODES = new Set([4, 134, 135]);
/** CONNACK 5 from Parley means too many failed logins lately: back off and retry. */
const RATE_LIMITED_CODE = 5;

export class ParleyClient extends TypedEmitter<ParleyClientEvents> {
  readonly options: Readonly<ParleyClientOptions>;

  #state: ConnectionState = 'disconnected';
  #mqtt: MqttClient | null = null;
  /** Incremented on every CONNACK and every close: stale callbacks compare it. */
  #connGen = 0;
  /** Subscribed to the inbox on the current connection. */
  #ready = false;
  #closed = false;
  #closing: Promise<void> | null = null;
  #halted = false;
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;

  readonly #outbound: Outbound[] = [];
  readonly #connectWaiters = new Set<Waiter<void>>();
  readonly #storedWaiters = new Map<string, Set<Waiter<StoredInfo>>>();
  readonly #stored = new Map<string, StoredInfo>();
  /** Sends PUBACKed but not yet answered by `stored`: resent (same clientMsgId) after a full sync. */
  readonly #unstored = new Map<string, Uint8Array>();
  readonly #errorsByRef = new Map<string, ParleyError>();
  readonly #sequencer: Sequencer<MsgEnvelope>;
  readonly #liveChannel = new LiveChannel({
    send: (payload) => {
      const m = this.#mqtt;
      if (!m || !this.#ready) return false;
      m.publish(this.#outbox, payload as unknown as MqttPayload, { qos: 0 });
      return true;
    },
    presence: (p) => this.emit('presence', p),
    typing: (t) => this.emit('typing', t),
  });
  readonly #ticks = new OwnStatusTracker();
  readonly #statusInbox = new StatusInbox();
  readonly #inbox: string;
  readonly #live: string;
  readonly #outbox: string;
  readonly #e2ee: E2eeEngine | null = null;
  #e2eeStarted = false;
  /** Contents of end-to-end messages sent and not yet stored (kept once stored, for resend requests). */
  readonly #sentContent = new Map<string, { content: OutgoingContent; epoch: number; groupId: string }>();

  constructor(init: ParleyClientInit) {
    super();
    const { e2ee: e2eeInit, ...rest } = init;
    const e2eeWanted = e2eeInit ?? (init.apiUrl !== undefined && init.userId !== undefined);
    if (e2eeWanted !== false && (!init.apiUrl || !init.userId)) throw new ParleyError('E_CONFIG', 'end-to-end encryption needs apiUrl and userId (or e2ee: false)');
    const options: ParleyClientOptions = {
      ...DEFAULT_CLIENT_OPTIONS,
      state: init.state ?? new MemoryStateStore(),
      mqttOptions: {},
      ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined)),
      e2ee: e2eeWanted === false ? false : { storage: (typeof e2eeWanted === 'object' ? e2eeWanted.storage : undefined) ?? new MemoryKeyStorage() },
    } as ParleyClientOptions;
    if (typeof options.url !== 'string' || options.url === '') throw new ParleyError('E_CONFIG', 'url is required');
    if (!isId(options.deviceId)) throw new ParleyError('E_CONFIG', 'deviceId is not a valid id');
    if (typeof options.token !== 'string' || options.token === '') throw new ParleyError('E_CONFIG', 'token is required');
    for (const k of ['keepalive', 'reconnectPeriodMs', 'maxReconnectPeriodMs', 'connectTimeoutMs', 'gapTimeoutMs', 'maxPayloadBytes'] as const) {
      if (!Number.isFinite(options[k]) || options[k] < 0) throw new ParleyError('E_CONFIG', `${k} must be a number >= 0`);
    }
    this.options = Object.freeze(options);
    if (options.e2ee) this.#e2ee = this.#makeE2ee(options.e2ee.storage);
    this.#inbox = inboxTopic(options.deviceId);
    this.#live = liveTopic(options.deviceId);
    this.#outbox = outboxTopic(options.deviceId);
    this.#sequencer = new Sequencer<MsgEnvelope>({
      state: options.state,
      gapTimeoutMs: options.gapTimeoutMs,
      deliver: (m) => this.#deliver(m),
      ...(options.apiUrl ? { fetchMissing: (chatId: string, after: number, before: number) => this.#fetchMissing(chatId, after, before) } : {}),
      onHole: (chatId, fromSeq, toSeq) => {
        const ref = msgIdOf(chatId, fromSeq);
        this.#error(new ParleyError('E_MESSAGE_GONE', `${chatId} seq ${fromSeq}${toSeq > fromSeq ? `..${toSeq}` : ''}`, ref));
      },
      requestSync: (chatId, afterSeq) => {
        this.sync(chatId, afterSeq).catch((err: unknown) => {
          if (!(err instanceof ParleyError && err.code === 'E_CLOSED')) this.#error(toParleyError(err, 'E_INTERNAL'));
        });
      },
      onError: (err) => this.#error(toParleyError(err, 'E_INTERNAL')),
    });
  }

  /** 'disconnected' | 'connecting' | 'connected' (subscribed) | 'closed'. */
  get state(): ConnectionState {
    return this.#state;
  }

  get deviceId(): string {
    return this.options.deviceId;
  }

  /**
   * Connects (and keeps reconnecting after drops) until `close()`. Resolves once connected and
   * subscribed to the inbox. Rejects with E_AUTH_TOKEN when the broker refuses the token (CONNACK 4;
   * the client then stops retrying until `connect()` is called again; CONNACK 5, too many failed
   * logins, is reported as an E_RATE_LIMITED error event and retried with back-off), with E_TIMEOUT after
   * `connectTimeoutMs` (the client keeps trying in the background), with E_ACL_DENIED when the
   * inbox subscription is refused, with E_CLOSED after `close()`.
   */
  connect(): Promise<void> {
    if (this.#closed) return Promise.reject(new ParleyError('E_CLOSED'));
    if (this.#ready) return Promise.resolve();
    const promise = new Promise<void>((resolve, reject) => {
      const waiter: Waiter<void> = { resolve, reject, timer: undefined };
      waiter.timer = setTimeout(() => {
        this.#connectWaiters.delete(waiter);
        reject(new ParleyError('E_TIMEOUT', `not connected within ${this.options.connectTimeoutMs} ms`));
      }, this.options.connectTimeoutMs);
      this.#connectWaiters.add(waiter);
    });
    if (this.#halted) {
      // Stopped after an auth failure (or a bad URL): try again (now, or once the refused
      // connection is down).
      this.#halted = false;
      if (this.#state === 'disconnected') this.#attemptNow();
    } else if (this.#state === 'disconnected') {
      // First call, or waiting out a back-off delay: try now.
      this.#attemptNow();
    }
    return promise;
  }

  /**
   * Sends a message. `to` is a userId (1:1 chat) or a chatId. Resolves on the PUBACK (the "sent"
   * tick: the server has it durably). Callable while disconnected: the message is queued and sent
   * after (re)connection; a message in flight when the connection drops is resent with the same
   * clientMsgId (the server stores it once). The seq follows as a `stored` event (`waitStored`).
   */
  send(to: string, body: Body, opts: { clientMsgId?: string; media?: string } = {}): Promise<{ clientMsgId: string }> {
    if (this.#closed) return Promise.reject(new ParleyError('E_CLOSED'));
    const clientMsgId = opts.clientMsgId ?? newClientMsgId();
    if (!isClientMsgId(clientMsgId)) return Promise.reject(new ParleyError('E_VALIDATION', 'clientMsgId'));
    if (!isId(to)) return Promise.reject(new ParleyError('E_VALIDATION', 'to must be a userId or chatId'));
    if (typeof body !== 'string' && !(body instanceof Uint8Array)) {
      return Promise.reject(new ParleyError('E_VALIDATION', 'body must be a string or Uint8Array'));
    }
    const e2ee = this.#e2ee;
    if (e2ee) {
      // An attachment uploaded by the app is in the clear on the server: sendMedia encrypts it.
      if (opts.media) return Promise.reject(new ParleyError('E_VALIDATION', 'with end-to-end encryption, send media with sendMedia'));
      const content: OutgoingContent = typeof body === 'string' ? { text: body } : { bytes: body };
      return this.#sendEncrypted(e2ee, to, content, clientMsgId, opts.media);
    }
    return this.#sendClear(to, body, clientMsgId, opts.media);
  }

  /** Encrypts for the chat's group (setting it up first if needed), then sends the ciphertext. */
  async #sendEncrypted(e2ee: E2eeEngine, to: string, content: OutgoingContent, clientMsgId: string, media?: string): Promise<{ clientMsgId: string }> {
    const chatId = await e2ee.chatIdOf(to);
    const sealed = await e2ee.encrypt(chatId, content);
    if (!sealed) throw new ParleyError('E_INTERNAL', 'not encrypted');
    const { body, epoch, groupId } = sealed;
    remember(this.#sentContent, clientMsgId, { content, epoch, groupId });
    return this.#sendClear(chatId, body, clientMsgId, media);
  }

  #sendClear(to: string, body: Body, clientMsgId: string, media?: string): Promise<{ clientMsgId: string }> {
    const payload = encode({ kind: 'send', clientMsgId, to, body, ...(media ? { media } : {}) });
    return this.#publish(this.#outbox, payload).then(() => {
      if (!this.#stored.has(clientMsgId) && !this.#errorsByRef.has(clientMsgId)) remember(this.#unstored, clientMsgId, payload);
      return { clientMsgId };
    });
  }

  /**
   * Sends a message and resolves with its message id once the server stored it (`send` resolves
   * earlier, at the sent tick, without the id). `to` is a userId (1:1) or a chatId. Rejects with
   * the server's refusal (E_NOT_MEMBER, E_CHAT_DELETED, E_RECIPIENT_UNKNOWN, ...), or E_TIMEOUT
   * after `timeoutMs` (the message may still be stored later: its status events tell).
   */
  async sendMessage(to: string, body: Body, opts: { clientMsgId?: string; timeoutMs?: number; media?: string } = {}): Promise<SentMessage> {
    const { clientMsgId } = await this.send(to, body, {
      ...(opts.clientMsgId !== undefined ? { clientMsgId: opts.clientMsgId } : {}), ...(opts.media ? { media: opts.media } : {}),
    });
    return this.waitStored(clientMsgId, opts.timeoutMs ?? DEFAULT_WAIT_STORED_MS);
  }

  /**
   * Uploads a file as an attachment (resumable: the same bytes sent again continue where they
   * stopped, even after a restart with a persistent `state`), waits until the server checked it
   * and made its thumbnail, then sends it to `to` with `caption`. Resolves with the message id.
   * `onProgress` reports bytes sent; `signal` pauses (rejects with E_CLOSED; call again to resume).
   */
  async sendMedia(
    to: string, data: MediaData, meta: MediaMeta & { caption?: string; thumbnail?: Uint8Array; preview?: string }, opts: TransferOptions = {},
  ): Promise<SentMessage> {
    const { caption, thumbnail, preview, ...rest } = meta;
    const e2ee = this.#e2ee;
    if (!e2ee) {
      const info = await this.uploadMedia(data, rest, opts);
      return this.sendMessage(to, caption ?? '', { media: info.attachmentId });
    }
    // End-to-end: the bytes are encrypted here with a fresh key that travels inside the MLS
    // message; the server can neither read nor thumbnail them, so the app's own thumbnail (if
    // any) goes the same way, as the attachment's poster.
    const plain = prepareMediaBytes(await mediaBytes(data), rest);
    let poster: { attachmentId: string; key: Uint8Array } | undefined;
    if (thumbnail) {
      const t = await encryptAttachment(thumbnail);
      const info = await this.uploadMedia(t.ciphertext, { kind: 'image', contentType: 'image/jpeg', encrypted: true }, opts);
      poster = { attachmentId: info.attachmentId, key: encodeAttachmentKey(t.key) };
    }
    const { ciphertext, key } = await encryptAttachment(plain);
    const info = await this.uploadMedia(ciphertext, { ...rest, encrypted: true, ...(poster ? { poster: poster.attachmentId } : {}) }, opts);
    const { clientMsgId } = await this.#sendEncrypted(e2ee, to, {
      text: caption ?? '', attachmentKey: encodeAttachmentKey(key), ...(poster ? { thumbnailKey: poster.key } : {}),
      ...(preview !== undefined ? { preview } : {}),
    }, newClientMsgId(), info.attachmentId);
    return this.waitStored(clientMsgId, DEFAULT_WAIT_STORED_MS);
  }

  /** The upload half of `sendMedia` (e.g. a video's poster, then the video with `poster`). */
  uploadMedia(data: MediaData, meta: MediaMeta, opts: TransferOptions = {}): Promise<AttachmentInfo> {
    return this.#http((api, t) => uploadMedia(api, t, this.options.state, data, meta, opts));
  }

  /**
   * Downloads a message's attachment (or its thumbnail), checked against the message's SHA-256.
   * Its preview needs no download: `message.media.preview` (a ThumbHash).
   */
  downloadMedia(media: ChatMessage | MediaRef, opts: TransferOptions & { thumbnail?: boolean } = {}): Promise<Uint8Array> {
    const ref = 'attachmentId' in media ? media : media.media;
    if (!ref) return Promise.reject(new ParleyError('E_VALIDATION', 'not a media message'));
    const msg = 'attachmentId' in media ? undefined : media;
    const key = opts.thumbnail ? msg?.thumbnailKey : msg?.mediaKey;
    // The key inside the (authenticated) message decides, not the server's `encrypted` flag.
    if (key) {
      // End-to-end encrypted by the SDK: the key came inside the message (the thumbnail is the
      // poster attachment). Without a key (an app that encrypts by itself) the bytes are returned as stored.
      const id = opts.thumbnail ? ref.poster : ref.attachmentId;
      if (!id) return Promise.reject(new ParleyError('E_VALIDATION', 'no thumbnail in this message'));
      const { thumbnail: _thumb, ...rest } = opts;
      return this.#http((api, t) => downloadMedia(api, t, opts.thumbnail ? id : ref, rest))
        .then((bytes) => decryptAttachment(bytes, decodeAttachmentKey(base64ToBytes(key))));
    }
    return this.#http((api, t) => downloadMedia(api, t, ref, opts));
  }

  // --- HTTP operations (need `apiUrl`) -------------------------------------------------------------

  /** createChat: a direct chat with a user (`createChat(userId)`), or a group with this user as admin. */
  createChat(input: string | CreateGroupInput): Promise<ChatInfo> {
    return this.#http((api, t) => api.createChat(typeof input === 'string' ? { userId: input } : input, t));
  }

  /** A chat's details and current members. */
  getChat(chatId: string): Promise<ChatInfo> {
    return this.#http((api, t) => api.getChat(chatId, t));
  }

  /** The chat list: last message, unread count, muted/archived flags; most recent first. */
  listChats(): Promise<ChatListItem[]> {
    return this.#http((api, t) => api.listChats(t));
  }

  /** Rename a group, set its description or avatar reference (admins). */
  updateChat(chatId: string, input: UpdateChatInput): Promise<ChatChange> {
    return this.#http((api, t) => api.updateChat(chatId, input, t));
  }

  /** Adds and removes members in one call (admins). */
  modifyChatParticipants(chatId: string, change: ParticipantsInput): Promise<ChatChange> {
    return this.#http((api, t) => api.modifyChatParticipants(chatId, change, t));
  }

  addUserToGroup(chatId: string, userId: string): Promise<ChatChange> {
    return this.modifyChatParticipants(chatId, { add: [userId] });
  }

  removeUserFromGroup(chatId: string, userId: string): Promise<ChatChange> {
    return this.modifyChatParticipants(chatId, { remove: [userId] });
  }

  promoteUserToAdmin(chatId: string, userId: string): Promise<ChatChange> {
    return this.#http((api, t) => api.promoteUserToAdmin(chatId, userId, t));
  }

  demoteAdmin(chatId: string, userId: string): Promise<ChatChange> {
    return this.#http((api, t) => api.demoteAdmin(chatId, userId, t));
  }

  /** Leaves a group (the last admin leaving makes the oldest member admin). */
  leaveGroup(chatId: string): Promise<ChatChange> {
    return this.#http((api, t) => api.leaveGroup(chatId, t));
  }

  /** deleteGroup (admins): every member gets a `deleted` chatUpdate; nothing more is delivered. */
  deleteGroup(chatId: string): Promise<ChatChange> {
    return this.#http((api, t) => api.deleteGroup(chatId, t));
  }

  /** This user's mute / archive flags of a chat. */
  setChatSettings(chatId: string, settings: ChatSettingsInput): Promise<ChatInfo> {
    return this.#http((api, t) => api.setChatSettings(chatId, settings, t));
  }

  /** An invitation link code (admins); `ttlSec` 60 s to 30 days, 7 days by default. */
  createInvite(chatId: string, ttlSec?: number): Promise<NewInvite> {
    return this.#http((api, t) => api.createInvite(chatId, ttlSec, t));
  }

  listInvites(chatId: string): Promise<InviteInfo[]> {
    return this.#http((api, t) => api.listInvites(chatId, t));
  }

  revokeInvite(chatId: string, inviteId: string): Promise<void> {
    return this.#http((api, t) => api.revokeInvite(chatId, inviteId, t));
  }

  /** Joins a group with an invitation code. */
  joinGroup(code: string): Promise<ChatChange> {
    return this.#http((api, t) => api.joinGroup(code, t));
  }

  /** getMessageStatus: per recipient user and device; delivered to all / read by all. */
  getMessageStatus(msgId: string): Promise<MessageStatusResponse> {
    return this.#http((api, t) => api.getMessageStatus(msgId, t));
  }

  /** readNewMessages: a chat's messages after `lastMsgId` (or a seq; from the start without it). */
  readNewMessages(chatId: string, lastMsgId?: string | number, limit?: number): Promise<HistoryPage> {
    return this.#http((api, t) => api.readNewMessages(chatId, lastMsgId ?? 0, t, limit));
  }

  /** The page of a chat's messages before `beforeMsgId` (or a seq; the latest without it), paging back. */
  readEarlierMessages(chatId: string, beforeMsgId?: string | number, limit?: number): Promise<HistoryPage> {
    return this.#http((api, t) => api.readEarlierMessages(chatId, beforeMsgId, t, limit));
  }

  /** A short-lived link code and its QR payload, for a new device to join this account (`ParleyApi.linkDevice`). */
  createLinkCode(): Promise<LinkCode> {
    return this.#http((api, t) => api.createLinkCode(t));
  }

  /** This user's active devices. */
  listDevices(): Promise<DeviceInfo[]> {
    return this.#http((api, t) => api.listDevices(t));
  }

  /** Deactivates one of this user's devices: disconnected at once on every broker node, its token refused. */
  revokeDevice(deviceId: string): Promise<void> {
    return this.#http((api, t) => api.revokeDevice(deviceId, t));
  }

  /**
   * The chats on screen: this device then receives their typing and the presence and last seen
   * of the other member of each direct chat (`presence` and `typing` events), as far as their
   * privacy allows. Replaces the earlier list; `[]` stops. Kept up by the SDK (repeated while set,
   * sent again after a reconnection); at most 64 chats.
   */
  watchChats(chatIds: readonly string[]): void {
    if (this.#closed) throw new ParleyError('E_CLOSED');
    this.#liveChannel.watch(chatIds);
  }

  /**
   * This user's typing state in a chat (`typing`, `recording` a voice message, or `stop`). Call
   * it on every keystroke: the SDK sends a repeat at most every 3 s, and watchers drop a state
   * that is not repeated within 6 s, so a lost `stop` never sticks. Dropped while disconnected.
   */
  setTyping(chatId: string, state: TypingState = 'typing'): void {
    if (this.#closed) throw new ParleyError('E_CLOSED');
    this.#liveChannel.setTyping(chatId, state, Date.now());
  }

  /**
   * Contacts discovery: which numbers of an address book are Parley users. Each number is
   * normalised to E.164 (`libphonenumber-js`; national numbers read with `defaultCountry`, e.g.
   * `'GB'`), hashed (SHA-256, `hashPhone`) and only the hashes are uploaded, 1,000 per request; the
   * server keeps none of them. With `save` (default true) the users found become this user's
   * contacts (what "contacts" means in privacy settings).
   *
   * Resolves with one entry per number given, in order: `e164` when it could be read as a possible
   * phone number (the others were not sent), `userId` when a user has it. Rejects with
   * E_RATE_LIMITED past the server's limits (hashes per user per day, requests per address per
   * hour; the error's detail says when to retry).
   */
  async lookupContacts(numbers: string[], opts: { defaultCountry?: CountryCode; save?: boolean } = {}): Promise<LookupEntry[]> {
    if (!Array.isArray(numbers)) throw new ParleyError('E_VALIDATION', 'numbers: an array of strings');
    const e164s = numbers.map((n) => normalizePhoneNumber(n, opts.defaultCountry));
    const unique = [...new Set(e164s.filter((e): e is string => e !== undefined))];
    const hashes = await Promise.all(unique.map((e) => hashPhone(e)));
    const userOf = new Map<string, string>();
    for (let i = 0; i < hashes.length; i += CONTACT_LIMITS.hashesPerRequest) {
      const chunk = hashes.slice(i, i + CONTACT_LIMITS.hashesPerRequest);
      for (const m of await this.#http((api, t) => api.lookupContactHashes(chunk, t, opts.save))) userOf.set(m.hash, m.userId);
    }
    const userByE164 = new Map(unique.map((e, i) => [e, userOf.get(hashes[i]!)]));
    return numbers.map((number, i) => {
      const e164 = e164s[i];
      const userId = e164 !== undefined ? userByE164.get(e164) : undefined;
      return { number, ...(e164 !== undefined ? { e164 } : {}), ...(userId !== undefined ? { userId } : {}) };
    });
  }

  /** Adds users (userIds) to this user's contacts; resolves with the contacts list. */
  addContacts(userIds: string[]): Promise<string[]> {
    return this.#http((api, t) => api.updateContacts({ add: userIds }, t));
  }

  /** Removes users from this user's contacts; resolves with the contacts list. */
  removeContacts(userIds: string[]): Promise<string[]> {
    return this.#http((api, t) => api.updateContacts({ remove: userIds }, t));
  }

  /** This user's contacts (userIds), oldest first. */
  listContacts(): Promise<string[]> {
    return this.#http((api, t) => api.listContacts(t));
  }

  /**
   * A profile: this user's own without `userId`; another user's as his privacy lets this user see
   * it (the name always; `about` and `avatar` null when hidden or unset; E_USER_NOT_FOUND for an
   * unknown user).
   */
  getProfile(userId?: string): Promise<ProfileInfo> {
    return this.#http((api, t) => api.getProfile(userId, t));
  }

  /**
   * Changes this user's profile: `name` (1 to 25 characters, trimmed), `about` (at most 139),
   * `avatar` (the attachmentId of an image uploaded with `uploadMedia`, once ready; null removes
   * the photo). The photo is kept on the server as long as it is the photo.
   */
  setProfile(input: ProfileInput): Promise<ProfileInfo> {
    return this.#http((api, t) => api.setProfile(input, t));
  }

  /** A short-lived download URL of a user's photo (or its thumbnail); E_NOT_FOUND when he has none this user may see. */
  getAvatarUrl(userId: string, opts: { thumbnail?: boolean } = {}): Promise<DownloadUrl> {
    return this.#http((api, t) => api.getAvatarUrl(userId, opts.thumbnail === true, t));
  }

  /** This user's privacy settings. */
  getPrivacy(): Promise<PrivacySettings> {
    return this.#http((api, t) => api.getPrivacy(t));
  }

  /**
   * Changes privacy settings (only those given): who sees last seen, photo and about, who may add
   * this user to groups (`everyone`, `contacts`, `nobody`), and read receipts (off: none sent or
   * received in 1:1 chats). Resolves with all the settings.
   */
  setPrivacy(patch: PrivacyInput): Promise<PrivacySettings> {
    return this.#http((api, t) => api.setPrivacy(patch, t));
  }

  /**
   * Blocks a user: 1:1 messages between the two are refused (E_BLOCKED to whichever sends), he
   * cannot add this user to groups, and sees none of this user's photo, about, last seen or
   * status. Resolves with the blocked list.
   */
  blockUser(userId: string): Promise<string[]> {
    return this.#http((api, t) => api.blockUser(userId, t));
  }

  /** Unblocks a user; resolves with the blocked list. */
  unblockUser(userId: string): Promise<string[]> {
    return this.#http((api, t) => api.unblockUser(userId, t));
  }

  /** The users this user blocked. */
  listBlocked(): Promise<string[]> {
    return this.#http((api, t) => api.listBlocked(t));
  }

  /**
   * Registers this device for push wake-ups, replacing its earlier registration. While the device
   * is connected nowhere, a message for it makes the server send a content-free wake-up
   * (`{ v: 1, chatId }`, collapsed per chat, no sender, no text); the app then connects and gets
   * the messages over MQTT as usual.
   *
   * - Web Push (browsers): `{ kind: 'webpush', ...subscription.toJSON() }` of a subscription made
   *   with `applicationServerKey` = `(await api.getPushConfig()).vapidPublicKey`.
   * - FCM: `{ kind: 'fcm', token }`, the app's registration token.
   * - APNs: `{ kind: 'apns', token }`, the device token in hex (optionally `environment`
   *   `'development'` for debug builds, and a `topic`).
   *
   * Refused with E_PUSH_UNSUPPORTED when the server does not send that kind, E_PUSH_ENDPOINT when
   * a Web Push endpoint is not an allowed push service. Register again whenever the token or
   * subscription changes; revoking the device removes its registration.
   */
  registerPush(registration: PushRegistrationInput): Promise<PushRegistrationInfo> {
    return this.#http((api, t) => api.registerPush(registration, t));
  }

  /** Stops push wake-ups for this device; resolves false when it had no registration. */
  unregisterPush(): Promise<boolean> {
    return this.#http((api, t) => api.unregisterPush(t));
  }

  /** This device's push registration as the server keeps it, or null. */
  getPushRegistration(): Promise<PushRegistrationInfo | null> {
    return this.#http((api, t) => api.getPushRegistration(t));
  }

  /** The server's VAPID public key and push kinds (`ParleyApi.getPushConfig`). */
  getPushConfig(): Promise<PushConfigInfo> {
    return this.#http((api) => api.getPushConfig());
  }

  // --- The MLS key directory (end-to-end encryption). The server stores and hands out these bytes
  // as they are: private keys never leave the device.

  /**
   * Publishes this device's MLS identity: its credential and signature public key, each encoded
   * and then base64url. Publishing other bytes than before is a change of identity
   * (`changed: true`): the device's contacts see its security code change.
   */
  publishIdentity(identity: PublishIdentityInput): Promise<IdentityPublished> {
    return this.#http((api, t) => api.publishIdentity(identity, t));
  }

  /**
   * Uploads MLS key packages (each with its KeyPackageRef) for others to add this device to
   * groups, and optionally a new last-resort package (handed out when the pool is empty). At most
   * 100 per call; the answer says which refs were stored, and whether the pool is still `low`.
   */
  uploadKeyPackages(upload: UploadKeyPackagesInput): Promise<KeyPackagesUploaded> {
    return this.#http((api, t) => api.uploadKeyPackages(upload, t));
  }

  /** How many key packages this device has on the server; upload `target - count` more when `low`. */
  countKeyPackages(): Promise<KeyPackageCount> {
    return this.#http((api, t) => api.countKeyPackages(t));
  }

  /**
   * Takes one key package of every active device of these users (at most 1,024 users; this
   * device left out), each with its identity. A device without one has `keyPackage: null`; a user
   * who blocked this one, or whom it blocked, is left out. Rejects with E_RATE_LIMITED past the
   * server's claim rate.
   */
  claimKeyPackages(userIds: string[]): Promise<ClaimedDeviceKeys[]> {
    return this.#http((api, t) => api.claimKeyPackages(userIds, t));
  }

  /** The published identities of a user's active devices (to compute and compare safety numbers). */
  getIdentities(userId: string): Promise<UserIdentities> {
    return this.#http((api, t) => api.getIdentities(userId, t));
  }

  /**
   * Posts a status for 24 hours: text with a background colour (0xRRGGBB) and a font (0-9), or an
   * image or video uploaded with {@link ParleyClient.uploadMedia} (`media`: its attachmentId) with
   * a caption. `audience`: the contacts (default), `only` some of them, or all `except` some; only
   * contacts who have this user in their own contacts see it, and never anyone blocked either way.
   * Rejects with E_VALIDATION (bad input, text over STATUS_TEXT_MAX characters), E_STATUS_LIMIT
   * (too many live posts), E_RATE_LIMITED.
   */
  postStatus(input: PostStatusInput): Promise<OwnStatusPost> {
    return this.#http((api, t) => api.postStatus(input, t));
  }

  /** The status feed: contacts' live posts by author (most recent first) with `viewed` flags, and this user's own posts with view counts. */
  listStatuses(): Promise<StatusFeed> {
    return this.#http((api, t) => api.listStatuses(t));
  }

  /** Records that this user viewed a post (idempotent). E_NOT_FOUND when it expired, was removed, or is not for this user. */
  viewStatus(statusId: string): Promise<void> {
    return this.#http((api, t) => api.viewStatus(statusId, t));
  }

  /** Who viewed one of this user's live posts, in the order they did (E_FORBIDDEN for another's post). */
  getStatusViewers(statusId: string): Promise<StatusViewer[]> {
    return this.#http((api, t) => api.getStatusViewers(statusId, t));
  }

  /** Removes one of this user's posts: out of every feed at once, and a removal `statusPost` event on the devices it reached. */
  removeStatus(statusId: string): Promise<void> {
    return this.#http((api, t) => api.removeStatus(statusId, t));
  }

  /**
   * Asks for account deletion: the server sends a fresh 6-digit code by SMS to the account's phone
   * (valid a few minutes; `expiresInSec` says how long). Give it to {@link ParleyClient.deleteAccount}.
   * Rejects with E_RATE_LIMITED when too many codes were asked for, E_UNAVAILABLE when the SMS
   * provider failed.
   */
  requestAccountDeletion(): Promise<DeletionCodeSent> {
    return this.#http((api, t) => api.requestAccountDeletion(t));
  }

  /**
   * Deletes the account, confirmed with the code from {@link ParleyClient.requestAccountDeletion}'s
   * SMS. Every device of the account is signed out and disconnected, the user leaves his groups
   * (their members get a `left` event), and his data is gone (docs/ARCHITECTURE.md, "Account
   * deletion"): the phone number can register again, as a new user. This client is closed once
   * the server confirms. Rejects with E_CODE_INVALID (wrong code), E_CODE_ATTEMPTS (too many wrong
   * codes: ask for a new one), E_CODE_EXPIRED (no code pending, or it expired).
   */
  async deleteAccount(code: string): Promise<AccountDeleted> {
    const done = await this.#http((api, t) => api.deleteAccount(code, t));
    await this.close();
    return done;
  }

  /**
   * Downloads this user's data (docs/EXPORT.md): profile and privacy, devices, contacts and
   * blocks, his chats with his membership windows, their messages (his and the others'), media
   * with fresh download URLs, live status posts. Resolves with every record in memory; for a
   * large account iterate {@link ParleyClient.exportAccountRecords} instead. Rejects with
   * E_RATE_LIMITED (a few exports per hour), E_UNAVAILABLE when the archive was cut off.
   */
  async exportAccount(): Promise<AccountExport> {
    const records: ExportRecord[] = [];
    for await (const r of this.exportAccountRecords()) records.push(r);
    const header = records[0] as Extract<ExportRecord, { type: 'header' }>;
    return { header, records };
  }

  /** The export archive record by record as it downloads (the first is the `header`, the last the `end`). */
  exportAccountRecords(): AsyncIterable<ExportRecord> {
    if (this.#closed) throw new ParleyError('E_CLOSED');
    if (!this.options.apiUrl) throw new ParleyError('E_CONFIG', 'apiUrl is not set');
    this.#httpApi ??= new ParleyApi(this.options.apiUrl);
    return this.#httpApi.exportAccountRecords(this.options.token);
  }


  #httpApi: ParleyApi | null = null;

  #http<T>(call: (api: ParleyApi, token: string) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new ParleyError('E_CLOSED'));
    if (!this.options.apiUrl) return Promise.reject(new ParleyError('E_CONFIG', 'apiUrl is not set'));
    this.#httpApi ??= new ParleyApi(this.options.apiUrl);
    return call(this.#httpApi, this.options.token);
  }

  /** A hole the server did not resend, from history: the messages it still has. */
  async #fetchMissing(chatId: string, afterSeq: number, beforeSeq: number): Promise<{ messages: MsgEnvelope[]; own: number[] }> {
    const messages: MsgEnvelope[] = [];
    const own: number[] = [];
    let after = afterSeq;
    while (after < beforeSeq - 1) {
      const page = await this.readNewMessages(chatId, after, Math.min(500, beforeSeq - 1 - after));
      for (const h of page.messages) {
        if (h.seq >= beforeSeq) break;
        if (h.fromDevice === this.options.deviceId) own.push(h.seq);
        else messages.push(historyToMsg(h));
      }
      const last = page.messages.at(-1);
      if (!page.more || !last || last.seq >= beforeSeq - 1) break;
      after = last.seq;
    }
    return { messages, own };
  }

  /** Marks everything in the message's chat up to that message as read. Resolves on the PUBACK. */
  markRead(msgId: string): Promise<void> {
    if (this.#closed) return Promise.reject(new ParleyError('E_CLOSED'));
    if (!isMsgId(msgId)) return Promise.reject(new ParleyError('E_VALIDATION', 'msgId'));
    return this.#publish(receiptTopic(msgId), new Uint8Array(0));
  }

  /**
   * Asks the server to resend what this device has not acknowledged: everything, or one chat
   * (after `afterSeq`). Resolves on the PUBACK; the messages follow, then a `synced` event.
   */
  sync(chatId?: string, afterSeq?: number): Promise<void> {
    if (this.#closed) return Promise.reject(new ParleyError('E_CLOSED'));
    if (chatId !== undefined && !isChatId(chatId)) return Promise.reject(new ParleyError('E_VALIDATION', 'chatId'));
    if (afterSeq !== undefined) {
      if (chatId === undefined) return Promise.reject(new ParleyError('E_VALIDATION', 'afterSeq needs a chatId'));
      if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) return Promise.reject(new ParleyError('E_VALIDATION', 'afterSeq'));
    }
    return this.#publish(this.#outbox, encode({ kind: 'sync', chatId, after: afterSeq }));
  }

  /**
   * Resolves with where the server stored a message sent from this device (immediately when
   * already known); rejects with the server's error when it refused that message, with E_TIMEOUT
   * after `timeoutMs`, with E_CLOSED on close.
   */
  waitStored(clientMsgId: string, timeoutMs: number = DEFAULT_WAIT_STORED_MS): Promise<StoredInfo> {
    const known = this.#stored.get(clientMsgId);
    if (known) return Promise.resolve(known);
    const refused = this.#errorsByRef.get(clientMsgId);
    if (refused) return Promise.reject(refused);
    if (this.#closed) return Promise.reject(new ParleyError('E_CLOSED'));
    return new Promise<StoredInfo>((resolve, reject) => {
      let set = this.#storedWaiters.get(clientMsgId);
      if (!set) {
        set = new Set();
        this.#storedWaiters.set(clientMsgId, set);
      }
      const waiters = set;
      const waiter: Waiter<StoredInfo> = { resolve, reject, timer: undefined };
      waiter.timer = setTimeout(() => {
        waiters.delete(waiter);
        if (waiters.size === 0) this.#storedWaiters.delete(clientMsgId);
        reject(new ParleyError('E_TIMEOUT', `no stored for ${clientMsgId} within ${timeoutMs} ms`, clientMsgId));
      }, timeoutMs);
      waiters.add(waiter);
    });
  }

  /**
   * Closes for good: state 'closed', no reconnection, pending operations reject with E_CLOSED.
   * Resolves once the connection is down and the last seqs are written to the StateStore.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.#ready = false;
    this.#connGen++;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const closedErr = (): ParleyError => new ParleyError('E_CLOSED');
    for (const w of this.#connectWaiters) settleWaiter(w, closedErr());
    this.#connectWaiters.clear();
    for (const set of this.#storedWaiters.values()) for (const w of set) settleWaiter(w, closedErr());
    this.#storedWaiters.clear();
    for (const op of this.#outbound.splice(0)) {
      op.settled = true;
      op.reject(closedErr());
    }
    this.#sequencer.dispose();
    this.#e2ee?.close();
    this.#setState('closed');
    this.#liveChannel.close();
    const m = this.#mqtt;
    const ended = m
      ? new Promise<void>((resolve) => {
          // Graceful DISCONNECT when possible; forced when down or with unacknowledged packets.
          const force = !m.connected || Object.keys(m.outgoing).length > 0;
          m.end(force, {}, () => resolve());
        })
      : Promise.resolve();
    this.#closing = Promise.all([ended, this.#sequencer.whenIdle()]).then(() => undefined);
    return this.#closing;
  }

  // --- connection ------------------------------------------------------------------------------

  #attemptNow(): void {
    if (this.#closed) return;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#setState('connecting');
    try {
      if (!this.#mqtt) this.#mqtt = this.#createMqtt();
      this.#mqtt.connect();
    } catch (err) {
      // A bad URL or mqtt option: retrying cannot help.
      this.#halt(new ParleyError('E_CONFIG', err instanceof Error ? err.message : String(err)));
      this.#setState('disconnected');
    }
  }

  /** Stops reconnecting until connect() is called again; fails the pending connect() calls. */
  #halt(err: ParleyError): void {
    this.#halted = true;
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    for (const w of this.#connectWaiters) settleWaiter(w, err);
    this.#connectWaiters.clear();
    this.#error(err);
  }

  #createMqtt(): MqttClient {
    const o = this.options;
    const m = mqtt.connect(o.url, {
      ...o.mqttOptions,
      clientId: o.deviceId,
      username: o.deviceId,
      password: o.token,
      clean: false,
      keepalive: o.keepalive,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: o.connectTimeoutMs,
      manualConnect: true,
      resubscribe: false,
    });
    m.on('connect', (packet) => this.#onConnack(packet));
    m.on('close', () => this.#onClose());
    m.on('error', (err) => this.#onMqttError(err));
    m.on('message', (topic, payload) => this.#onMessage(topic, payload));
    return m;
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#halted || this.#reconnectTimer !== undefined) return;
    const { reconnectPeriodMs: initial, maxReconnectPeriodMs: max } = this.options;
    const base = Math.min(max, initial * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    // "Equal jitter": half fixed, half random — grows on average, never bunches up.
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#attemptNow();
    }, delay);
  }

  #onConnack(packet: IConnackPacket): void {
    if (this.#closed) return;
    const m = this.#mqtt;
    if (!m) return;
    this.#attempt = 0;
    const gen = ++this.#connGen;
    const sessionPresent = packet.sessionPresent === true;

    m.subscribe(this.#inbox, { qos: 1 }, (err, _granted, suback) => {
      if (gen !== this.#connGen || this.#closed) return;
      if (err && !suback) return; // the connection went down; #onClose reconnects
      const code = firstGranted(suback?.granted);
      let refused: ParleyError | null = null;
      if (code === undefined || code >= 128) {
        refused = new ParleyError('E_ACL_DENIED', `subscribe ${this.#inbox} refused`, this.#inbox);
        this.#error(refused);
      } else if (!sessionPresent) {
        // The broker lost (or never had) our session: ask for everything undelivered, first,
        // and hold chats we know nothing of until it is done (older messages come after newer).
        this.#sequencer.holdUnknownChats(Math.max(10_000, this.options.gapTimeoutMs * 5));
        this.#publish(this.#outbox, encode({ kind: 'sync' }), true).catch((e: unknown) => {
          if (!(e instanceof ParleyError && e.code === 'E_CLOSED')) this.#error(toParleyError(e, 'E_INTERNAL'));
        });
        // A new device (or one whose session is gone): its chat list, without being asked.
        if (this.options.apiUrl) {
          this.listChats().then((chats) => this.emit('chatList', chats), (e: unknown) => {
            if (!(e instanceof ParleyError && e.code === 'E_CLOSED')) this.#error(toParleyError(e, 'E_UNAVAILABLE'));
          });
        }
      }
      this.#ready = true;
      this.#setState('connected');
      this.#dispatchQueued();
      this.#startE2ee();
      this.#liveChannel.connected();
      // The server does not keep `stored` answers for a device that is away: whatever was
      // PUBACKed but not answered is sent again (same clientMsgId, stored once) to be answered now.
      // After a full sync that happens when `synced` arrives instead.
      if (sessionPresent && !refused) this.#resendUnstored();
      for (const w of this.#connectWaiters) settleWaiter(w, refused);
      this.#connectWaiters.clear();
    });

    m.subscribe(this.#live, { qos: 0 }, (err, _granted, suback) => {
      if (gen !== this.#connGen || this.#closed) return;
      if (err && !suback) return;
      const code = firstGranted(suback?.granted);
      if (code === undefined || code >= 128) {
        this.#error(new ParleyError('E_ACL_DENIED', `subscribe ${this.#live} refused`, this.#live));
      }
    });
  }

  #onClose(): void {
    this.#connGen++;
    this.#ready = false;
    if (this.#closed) return;
    this.#setState('disconnected');
    this.#scheduleReconnect();
  }

  #onMqttError(err: Error & { code?: unknown }): void {
    if (this.#closed) return;
    const code = err.code;
    if (typeof code === 'number' && err.message.startsWith('Connection refused')) {
      if (code === RATE_LIMITED_CODE) {
        this.#error(new ParleyError('E_RATE_LIMITED', err.message));
        return;
      }
      if (AUTH_CODES.has(code)) {
        // Retrying with the same token cannot help: stop until connect() is called again.
        this.#halt(new ParleyError('E_AUTH_TOKEN', err.message));
        return;
      }
      this.#error(new ParleyError('E_UNAVAILABLE', err.message));
      return;
    }
    if (err.message === 'connack timeout') {
      this.#error(new ParleyError('E_TIMEOUT', 'no CONNACK'));
      return;
    }
    this.#error(new ParleyError('E_UNAVAILABLE', err.message));
  }

  // --- outgoing --------------------------------------------------------------------------------

  /** Queues a QoS 1 publish; sends it now when subscribed, else after the next (re)connection. */
  #publish(topic: string, payload: Uint8Array, first = false): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const op: Outbound = { topic, payload, resolve, reject, inFlight: false, settled: false };
      if (first) this.#outbound.unshift(op);
      else this.#outbound.push(op);
      if (this.#ready) this.#dispatch(op);
    });
  }

  #dispatchQueued(): void {
    for (const op of [...this.#outbound]) {
      if (!this.#ready) return;
      if (!op.inFlight && !op.settled) this.#dispatch(op);
    }
  }

  #dispatch(op: Outbound): void {
    const m = this.#mqtt;
    if (!m) return;
    op.inFlight = true;
    m.publish(op.topic, op.payload as unknown as MqttPayload, { qos: 1 }, (err) => {
      if (op.settled) return;
      if (err) {
        // Not in mqtt.js' store (e.g. dropped from its queue on close): ours to resend.
        op.inFlight = false;
        if (this.#ready && !this.#closed) {
          const gen = this.#connGen;
          setTimeout(() => {
            if (gen === this.#connGen && this.#ready && !op.inFlight && !op.settled) this.#dispatch(op);
          }, this.options.reconnectPeriodMs);
        }
        return;
      }
      op.settled = true;
      const i = this.#outbound.indexOf(op);
      if (i >= 0) this.#outbound.splice(i, 1);
      op.resolve();
    });
  }

  // --- incoming --------------------------------------------------------------------------------

  #onMessage(topic: string, payload: Uint8Array): void {
    // Never throw from here: mqtt.js would not PUBACK and its parser loop would break.
    try {
      if (topic !== this.#inbox && topic !== this.#live) return;
      let env: Envelope;
      try {
        env = decode(payload);
      } catch (err) {
        this.#error(toParleyError(err, 'E_BAD_ENVELOPE'));
        return;
      }
      if (topic === this.#live) {
        // Ephemeral: typing and presence only (anything else there is ignored).
        if (env.kind === 'typing') this.#liveChannel.onTyping(env);
        else if (env.kind === 'presence') this.#liveChannel.onPresence(env);
        else if (env.kind === 'keys' && env.low && this.#e2ee) {
          // Others claimed this device's key packages down to the low-water mark: upload more.
          this.#e2ee.replenish().catch((e: unknown) => this.#error(toParleyError(e, 'E_UNAVAILABLE')));
        }
        return;
      }
      this.#onEnvelope(env);
    } catch (err) {
      this.#error(toParleyError(err, 'E_INTERNAL'));
    }
  }

  #onEnvelope(env: Envelope): void {
    switch (env.kind) {
      case 'msg':
        // Added back to a group (or joined by invitation): the chat restarts at this message for
        // this device; what was sent while it was out is not its to receive.
        if (this.options.userId !== undefined && env.event
          && ((env.event.type === 'added' && env.event.users.includes(this.options.userId))
            || (env.event.type === 'joined' && env.from === this.options.userId))) {
          this.#sequencer.restartAt(env.chatId, env.seq);
        }
        this.#sequencer.onMsg(env);
        return;
      case 'stored': {
        this.#onStored(env);
        // A batch answered in one envelope: each further message as if it had its own.
        for (const m of env.more ?? []) this.#onStored({ kind: 'stored', clientMsgId: m.clientMsgId, chatId: env.chatId, seq: m.seq, ts: env.ts });
        return;
      }
      case 'receipt':
        this.emit('chatUpdate', { type: 'receipt', chatId: env.chatId, seq: env.seq, status: env.status, ts: env.ts, ...(env.by ? { by: env.by } : {}) });
        if (this.options.userId === undefined || env.by !== this.options.userId) {
          for (const tick of this.#ticks.receipt(env.chatId, env.seq, env.status)) this.emit('status', tick);
        }
        return;
      case 'tally':
        this.emit('chatUpdate', {
          type: 'tally', chatId: env.chatId, seq: env.seq, delivered: env.delivered, read: env.read, of: env.of,
          deliveredToAll: env.of > 0 && env.delivered >= env.of, readByAll: env.of > 0 && env.read >= env.of,
        });
        // A group message is delivered (read) once every other member has it (has read it).
        if (env.of > 0 && env.delivered >= env.of) {
          for (const tick of this.#ticks.receipt(env.chatId, env.seq, env.read >= env.of ? 'read' : 'delivered')) this.emit('status', tick);
        }
        return;
      case 'error': {
        const err = new ParleyError(env.code, env.detail, env.ref);
        if (env.ref !== undefined) {
          remember(this.#errorsByRef, env.ref, err);
          this.#unstored.delete(env.ref);
          const waiters = this.#storedWaiters.get(env.ref);
          if (waiters) {
            this.#storedWaiters.delete(env.ref);
            for (const w of waiters) settleWaiter(w, err);
          }
        }
        this.#error(err);
        return;
      }
      case 'synced':
        this.#sequencer.onSynced(env.chatId, env.count);
        if (env.chatId === undefined) this.#resendUnstored();
        this.emit('synced', env.chatId !== undefined ? { count: env.count, chatId: env.chatId } : { count: env.count });
        return;
      case 'status': {
        const post = this.#statusInbox.accept(env, Date.now(), this.options.userId);
        if (post) this.emit('statusPost', post);
        return;
      }
      default:
        this.#error(new ParleyError('E_BAD_ENVELOPE', `unexpected ${env.kind} envelope on the inbox`));
    }
  }

  /** One message of this device stored with its seq: resolves waiters, emits `stored` and its tick. */
  #onStored(env: StoredEnvelope): void {
    if (this.#stored.get(env.clientMsgId)?.seq === env.seq) return; // resent after a retry
    const info: StoredInfo = {
      clientMsgId: env.clientMsgId, msgId: msgIdOf(env.chatId, env.seq), chatId: env.chatId, seq: env.seq, ts: env.ts,
    };
    remember(this.#stored, env.clientMsgId, info);
    this.#unstored.delete(env.clientMsgId);
    const waiters = this.#storedWaiters.get(env.clientMsgId);
    if (waiters) {
      this.#storedWaiters.delete(env.clientMsgId);
      for (const w of waiters) {
        if (w.timer !== undefined) clearTimeout(w.timer);
        w.resolve(info);
      }
    }
    this.emit('stored', info);
    const tick = this.#ticks.track(env.chatId, env.seq, env.clientMsgId);
    if (tick) this.emit('status', tick);
    this.#sequencer.onStored(env);
    const e2ee = this.#e2ee;
    if (e2ee) {
      const sent = this.#sentContent.get(env.clientMsgId);
      if (sent) {
        this.#sentContent.delete(env.clientMsgId);
        e2ee.rememberSent(env.chatId, env.seq, sent.content, sent).catch((err: unknown) => this.#error(toParleyError(err, 'E_INTERNAL')));
      }
    }
  }

  /**
   * After a reconnect (or a full sync), a `stored` answer may have been lost with the connection:
   * the server sends `stored` live only. Resending those sends with the same clientMsgId is safe —
   * the server stores each once — and makes the server answer `stored` again.
   */
  #resendUnstored(): void {
    for (const payload of this.#unstored.values()) {
      this.#publish(this.#outbox, payload).catch((e: unknown) => {
        if (!(e instanceof ParleyError && e.code === 'E_CLOSED')) this.#error(toParleyError(e, 'E_INTERNAL'));
      });
    }
  }

  /** Called by the Sequencer, in order: through the end-to-end layer when it is on. */
  #deliver(m: MsgEnvelope): void {
    if (this.#e2ee) this.#e2ee.onMessage(m);
    else this.#emitMessage(m, { encrypted: false });
  }

  #emitMessage(m: MsgEnvelope, extra: DecryptedExtra): void {
    // A group change is nobody's own message (it has no ticks), even when this user made it.
    const own = !m.event && ((this.options.userId !== undefined && m.from === this.options.userId) || m.fromDevice === this.options.deviceId);
    const msg: ChatMessage = {
      msgId: msgIdOf(m.chatId, m.seq),
      chatId: m.chatId,
      seq: m.seq,
      from: m.from,
      fromDevice: m.fromDevice,
      ts: m.ts,
      body: m.body,
      ...(typeof m.body === 'string' && !m.event ? { text: m.body } : {}),
      own,
      ...(m.event ? { event: m.event } : {}),
      // An end-to-end attachment's preview comes inside the message (the server cannot make one).
      ...(m.media ? { media: extra.preview !== undefined ? { ...m.media, preview: extra.preview } : m.media } : {}),
      ...(this.#e2ee && !m.event ? { encrypted: extra.encrypted } : {}),
      ...(extra.attachmentKey ? { mediaKey: bytesToBase64(extra.attachmentKey) } : {}),
      ...(extra.thumbnailKey ? { thumbnailKey: bytesToBase64(extra.thumbnailKey) } : {}),
      ...(extra.replacesSeq !== undefined ? { replaces: msgIdOf(m.chatId, extra.replacesSeq) } : {}),
    };
    this.emit('newMessage', msg);
    if (m.event) this.emit('chatUpdate', { type: 'event', chatId: m.chatId, msgId: msg.msgId, seq: m.seq, by: m.from, ts: m.ts, event: m.event });
    if (own) {
      const tick = this.#ticks.track(m.chatId, m.seq);
      if (tick) this.emit('status', tick);
    }
  }

  #makeE2ee(storage: KeyStorage): E2eeEngine {
    const userId = this.options.userId as string;
    return new E2eeEngine({
      userId,
      deviceId: this.options.deviceId,
      api: {
        publishIdentity: (input) => this.publishIdentity(input),
        uploadKeyPackages: (input) => this.uploadKeyPackages(input),
        countKeyPackages: () => this.countKeyPackages(),
        claimKeyPackages: (users, devices) => this.#http((api, t) => api.claimKeyPackages(users, t, devices ? { devices } : {})),
        listIdentities: (users) => this.#http((api, t) => api.listIdentities(users, t)),
        getChat: (chatId) => this.getChat(chatId),
        createChat: (userId) => this.createChat(userId),
        history: async (chatId, beforeSeq, limit) => (await this.readEarlierMessages(chatId, beforeSeq, limit)).messages,
      },
      sendRaw: async (chatId, body, media) => {
        const { clientMsgId } = await this.#sendClear(chatId, body, newClientMsgId(), media);
        const stored = await this.waitStored(clientMsgId, DEFAULT_WAIT_STORED_MS);
        return { seq: stored.seq, msgId: stored.msgId };
      },
      // The envelope around a body: ids, kind, CBOR framing (a few dozen bytes), with room to spare.
      maxBodyBytes: this.options.maxPayloadBytes - 512,
      upload: async (bytes) => (await this.uploadMedia(bytes, { kind: 'document', contentType: 'application/octet-stream', encrypted: true })).attachmentId,
      download: (media) => this.#http((api, t) => downloadMedia(api, t, media)),
      deliver: (m, extra) => this.#emitMessage(m, extra),
      undecryptable: (u) => this.emit('undecryptable', u),
      error: (err) => this.#error(err),
    }, storage);
  }

  /**
   * The safety number of this user and `userId` (60 digits, the same on both sides, shown as 12
   * groups of 5) over both users' published device keys, and the QR payload the other side scans
   * (`verifySafetyQr`). Compare them in person or over another channel: a match means the server
   * handed out the keys the devices really have (docs/SECURITY.md).
   */
  async getSafetyNumber(userId: string): Promise<{ safetyNumber: string; formatted: string; qr: Uint8Array }> {
    const [mine, theirs] = await this.#identitySets(userId);
    const n = await safetyNumber(mine, theirs);
    return { safetyNumber: n, formatted: formatSafetyNumber(n), qr: await safetyQrPayload(mine, theirs) };
  }

  /** Whether a QR payload scanned from `userId`'s screen matches the keys this device sees for both users. */
  async verifySafetyQr(userId: string, payload: Uint8Array): Promise<boolean> {
    const [mine, theirs] = await this.#identitySets(userId);
    return verifySafetyQr(payload, mine, theirs);
  }

  /**
   * Both users' device keys: with end-to-end encryption, those of the direct chat's group after
   * bringing it in line with the directory (the keys messages really go to); else the directory's.
   */
  async #identitySets(userId: string): Promise<[IdentitySet, IdentitySet]> {
    const me = this.options.userId;
    if (me === undefined) throw new ParleyError('E_CONFIG', 'userId is not set');
    if (!isId(userId)) throw new ParleyError('E_VALIDATION', 'userId');
    const e2ee = this.#e2ee;
    if (e2ee) {
      const keys = await e2ee.groupKeys(await e2ee.chatIdOf(userId));
      return [{ userId: me, signatureKeys: keys.get(me) ?? [] }, { userId, signatureKeys: keys.get(userId) ?? [] }];
    }
    const users = await this.#http((api, t) => api.listIdentities([me, userId], t));
    const set = (u: string): IdentitySet => ({
      userId: u, signatureKeys: (users.find((x) => x.userId === u)?.devices ?? []).map((d) => base64UrlToBytes(d.signatureKey)),
    });
    return [set(me), set(userId)];
  }

  /**
   * End-to-end encryption: resolves once this device's identity and key packages are published
   * (the client does it by itself on its first connection; other devices can add this one to
   * their chats' groups from then on). Rejects with E_CONFIG when end-to-end encryption is off.
   */
  e2eeReady(): Promise<void> {
    if (!this.#e2ee) return Promise.reject(new ParleyError('E_CONFIG', 'end-to-end encryption is off'));
    return this.#e2ee.start();
  }

  /** Publishes this device's identity and key packages once per client (then on the server's request). */
  #startE2ee(): void {
    const e2ee = this.#e2ee;
    if (!e2ee || this.#e2eeStarted) return;
    this.#e2eeStarted = true;
    e2ee.start().catch((err: unknown) => {
      this.#e2eeStarted = false;
      if (!(err instanceof ParleyError && err.code === 'E_CLOSED')) this.#error(toParleyError(err, 'E_UNAVAILABLE'));
    });
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.emit('state', state);
  }

  #error(err: ParleyError): void {
    this.emit('error', err);
  }
}

function firstGranted(granted: ReadonlyArray<number | object> | undefined): number | undefined {
  const g = granted?.[0];
  if (typeof g === 'number') return g;
  if (g && typeof (g as { qos?: unknown }).qos === 'number') return (g as { qos: number }).qos;
  return undefined;
}

function settleWaiter<T>(w: Waiter<T>, err: ParleyError | null, value?: T): void {
  if (w.timer !== undefined) clearTimeout(w.timer);
  if (err) w.reject(err);
  else w.resolve(value as T);
}

function toParleyError(err: unknown, code: ErrorCode): ParleyError {
  if (err instanceof ParleyError) return err;
  return new ParleyError(code, err instanceof Error ? err.message : String(err));
}

/** A history message as the `msg` envelope it would have been. */
function historyToMsg(h: HistoryMessage): MsgEnvelope {
  return {
    kind: 'msg', chatId: h.chatId, seq: h.seq, from: h.from, ts: h.ts, fromDevice: h.fromDevice,
    body: h.text ?? (h.data !== undefined ? base64ToBytes(h.data) : ''),
    ...(h.event ? { event: h.event } : {}),
    ...(h.media ? { media: h.media } : {}),
  };
}
