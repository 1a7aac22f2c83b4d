/**
 * ParleyApi: a small fetch-based client of the Parley HTTP API. Runs in Node 20+ and browsers
 * (global `fetch`). Request and response types come from api-types.ts, the server's own schemas.
 *
 * Errors: a non-2xx response carries `{ error: { code, message, detail? } }` and becomes
 * `ParleyError(code, detail)`; a body of any other shape (or an unknown code) becomes E_INTERNAL.
 * Network failures become E_UNAVAILABLE, timeouts E_TIMEOUT.
 */
import { ParleyError, isErrorCode } from './errors.js';
import { parseMsgId } from './ids.js';
import type {
  AttachmentInfo, ChatChange, ChatInfo, ChatListItem, ChatSettingsInput, CreateAttachmentInput, CreateGroupInput, DeviceInfo,
  DownloadUrl, HistoryPage, InviteInfo, LinkCode, NewAttachment, PartUrl,
  MessageStatusResponse, NewInvite, ParticipantsInput, UpdateChatInput, VerifyResult,
  ContactMatch, PrivacyInput, PrivacySettings, ProfileInfo, ProfileInput,
} from './api-types.js';
import type { AccountDeleted, DeletionCodeSent, ExportRecord } from './api-types.js';
import type { OwnStatusPost, PostStatusInput, StatusFeed, StatusViewer } from './api-types.js';
import type { PushConfigInfo, PushRegistrationInfo, PushRegistrationInput } from './api-types.js';
import type {
  ClaimedDeviceKeys, IdentityPublished, KeyPackageCount, KeyPackagesUploaded, PublishIdentityInput, UploadKeyPackagesInput, UserIdentities,
} from './api-types.js';

export interface ParleyApiOptions {
  /** Base URL of the API, e.g. `http://localhost:8080` (paths start with `/v1`). Required. */
  baseUrl: string;
  /** Per-request timeout in ms. @defaultValue 15000 */
  timeoutMs?: number;
  /** The fetch implementation. @defaultValue globalThis.fetch */
  fetch?: typeof fetch;
  /** Headers added to every request. @defaultValue \{\} */
  headers?: Record<string, string>;
}

export const DEFAULT_API_TIMEOUT_MS = 15_000;

interface RequestInit2 {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  path: string;
  body?: unknown;
  token?: string;
  /** This request's timeout, when it may take longer than usual. */
  timeoutMs?: number;
}

const enc = encodeURIComponent;

/** A msgId or a seq, as the history routes take it. */
function position(key: 'after' | 'before', at: string | number): [string, string] {
  if (typeof at === 'number') return [key, String(at)];
  return key === 'after' ? ['afterMsgId', at] : ['before', String(parseMsgId(at)?.seq ?? at)];
}

/**
 * The HTTP API. Account operations without a session (`registerAccount`, `validateAccount`,
 * `linkDevice`) are used directly; the rest take the device token, and `ParleyClient` calls them
 * with its own (set its `apiUrl`).
 */
export class ParleyApi {
  readonly baseUrl: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;
  readonly #headers: Record<string, string>;

  constructor(options: ParleyApiOptions | string) {
    const o: ParleyApiOptions = typeof options === 'string' ? { baseUrl: options } : options;
    if (typeof o.baseUrl !== 'string' || o.baseUrl === '') throw new ParleyError('E_CONFIG', 'baseUrl is required');
    this.baseUrl = o.baseUrl.replace(/\/+$/, '');
    this.#timeoutMs = o.timeoutMs ?? DEFAULT_API_TIMEOUT_MS;
    const f = o.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new ParleyError('E_CONFIG', 'no fetch implementation');
    // Called as a plain function: browsers refuse fetch with another `this` (Illegal invocation).
    this.#fetch = (input, init) => f(input, init);
    this.#headers = { ...o.headers };
  }

  /** registerAccount: sends a one-time code by SMS. `POST /v1/register {phone}`. */
  registerAccount(phone: string): Promise<{ expiresInSec: number }> {
    return this.#request({ method: 'POST', path: '/v1/register', body: { phone } });
  }

  /** validateAccount: checks the code and registers this device as the primary. `POST /v1/verify`. */
  validateAccount(phone: string, code: string, deviceName?: string): Promise<VerifyResult> {
    return this.#request({ method: 'POST', path: '/v1/verify', body: { phone, code, deviceName } });
  }

  /** A new device joins an account with a link code (or the QR payload) from one of its devices. `POST /v1/devices/link`. */
  linkDevice(code: string, deviceName?: string): Promise<VerifyResult> {
    return this.#request({ method: 'POST', path: '/v1/devices/link', body: { code, ...(deviceName ? { deviceName } : {}) } });
  }

  createLinkCode(token: string): Promise<LinkCode> {
    return this.#request({ method: 'POST', path: '/v1/devices/link-codes', body: {}, token });
  }

  async listDevices(token: string): Promise<DeviceInfo[]> {
    return (await this.#request<{ devices: DeviceInfo[] }>({ method: 'GET', path: '/v1/devices', token })).devices;
  }

  async revokeDevice(deviceId: string, token: string): Promise<void> {
    await this.#request({ method: 'DELETE', path: `/v1/devices/${enc(deviceId)}`, token });
  }

  createChat(input: { userId: string } | CreateGroupInput, token: string): Promise<ChatInfo> {
    return this.#request({ method: 'POST', path: '/v1/chats', body: input, token });
  }

  getChat(chatId: string, token: string): Promise<ChatInfo> {
    return this.#request({ method: 'GET', path: `/v1/chats/${enc(chatId)}`, token });
  }

  async listChats(token: string): Promise<ChatListItem[]> {
    return (await this.#request<{ chats: ChatListItem[] }>({ method: 'GET', path: '/v1/chats', token })).chats;
  }

  updateChat(chatId: string, input: UpdateChatInput, token: string): Promise<ChatChange> {
    return this.#request({ method: 'PATCH', path: `/v1/chats/${enc(chatId)}`, body: input, token });
  }

  modifyChatParticipants(chatId: string, change: ParticipantsInput, token: string): Promise<ChatChange> {
    return this.#request({ method: 'POST', path: `/v1/chats/${enc(chatId)}/participants`, body: change, token });
  }

  promoteUserToAdmin(chatId: string, userId: string, token: string): Promise<ChatChange> {
    return this.#request({ method: 'POST', path: `/v1/chats/${enc(chatId)}/admins`, body: { users: [userId] }, token });
  }

  demoteAdmin(chatId: string, userId: string, token: string): Promise<ChatChange> {
    return this.#request({ method: 'POST', path: `/v1/chats/${enc(chatId)}/admins/remove`, body: { users: [userId] }, token });
  }

  leaveGroup(chatId: string, token: string): Promise<ChatChange> {
    return this.#request({ method: 'POST', path: `/v1/chats/${enc(chatId)}/leave`, body: {}, token });
  }

  deleteGroup(chatId: string, token: string): Promise<ChatChange> {
    return this.#request({ method: 'DELETE', path: `/v1/chats/${enc(chatId)}`, token });
  }

  setChatSettings(chatId: string, settings: ChatSettingsInput, token: string): Promise<ChatInfo> {
    return this.#request({ method: 'PUT', path: `/v1/chats/${enc(chatId)}/settings`, body: settings, token });
  }

  createInvite(chatId: string, ttlSec: number | undefined, token: string): Promise<NewInvite> {
    return this.#request({ method: 'POST', path: `/v1/chats/${enc(chatId)}/invites`, body: ttlSec !== undefined ? { ttlSec } : {}, token });
  }

  async listInvites(chatId: string, token: string): Promise<InviteInfo[]> {
    return (await this.#request<{ invites: InviteInfo[] }>({ method: 'GET', path: `/v1/chats/${enc(chatId)}/invites`, token })).invites;
  }

  async revokeInvite(chatId: string, inviteId: string, token: string): Promise<void> {
    await this.#request({ method: 'DELETE', path: `/v1/chats/${enc(chatId)}/invites/${enc(inviteId)}`, token });
  }

  joinGroup(code: string, token: string): Promise<ChatChange> {
    return this.#request({ method: 'POST', path: `/v1/invites/${enc(code)}`, body: {}, token });
  }

  /** createAttachment: declares a file and gets its part upload URLs. `POST /v1/attachments`. */
  createAttachment(input: CreateAttachmentInput, token: string): Promise<NewAttachment> {
    return this.#request({ method: 'POST', path: '/v1/attachments', body: input, token });
  }

  /** Fresh upload URLs for some parts (resuming). `POST /v1/attachments/:id/parts`. */
  attachmentParts(attachmentId: string, parts: number[], token: string): Promise<{ parts: PartUrl[]; urlsExpireAt: number }> {
    return this.#request({ method: 'POST', path: `/v1/attachments/${enc(attachmentId)}/parts`, body: { parts }, token });
  }

  /** Joins the uploaded parts; the server checks size, SHA-256 and type. `POST /v1/attachments/:id/complete`. */
  completeAttachment(attachmentId: string, parts: Array<{ partNumber: number; etag: string }>, token: string, timeoutMs?: number): Promise<AttachmentInfo> {
    return this.#request({ method: 'POST', path: `/v1/attachments/${enc(attachmentId)}/complete`, body: { parts }, token, ...(timeoutMs ? { timeoutMs } : {}) });
  }

  getAttachment(attachmentId: string, token: string): Promise<AttachmentInfo> {
    return this.#request({ method: 'GET', path: `/v1/attachments/${enc(attachmentId)}`, token });
  }

  /** A short-lived download URL of the original or its thumbnail. */
  attachmentDownloadUrl(attachmentId: string, thumbnail: boolean, token: string): Promise<DownloadUrl> {
    return this.#request({ method: 'GET', path: `/v1/attachments/${enc(attachmentId)}/download${thumbnail ? '?thumbnail=1' : ''}`, token });
  }

  /** getMessageStatus. `GET /v1/messages/:msgId/status`. */
  getMessageStatus(msgId: string, token: string): Promise<MessageStatusResponse> {
    return this.#request({ method: 'GET', path: `/v1/messages/${enc(msgId)}/status`, token });
  }

  /** readNewMessages: messages after a msgId or seq. `GET /v1/chats/:chatId/messages?after=|afterMsgId=&limit=`. */
  readNewMessages(chatId: string, after: string | number, token: string, limit?: number): Promise<HistoryPage> {
    const q = new URLSearchParams([position('after', after)]);
    if (limit !== undefined) q.set('limit', String(limit));
    return this.#request({ method: 'GET', path: `/v1/chats/${enc(chatId)}/messages?${q.toString()}`, token });
  }

  /** The page before a msgId or seq (the latest page without one). `GET ...?before=&limit=`. */
  readEarlierMessages(chatId: string, before: string | number | undefined, token: string, limit?: number): Promise<HistoryPage> {
    const q = new URLSearchParams([position('before', before ?? Number.MAX_SAFE_INTEGER)]);
    if (limit !== undefined) q.set('limit', String(limit));
    return this.#request({ method: 'GET', path: `/v1/chats/${enc(chatId)}/messages?${q.toString()}`, token });
  }

  /**
   * Contacts discovery: which of these phone hashes (`hashPhone` of E.164 numbers, at most 1,000)
   * are registered users; with `save` (default true) they become the caller's contacts.
   * `ParleyClient.lookupContacts` normalises and hashes an address book and calls this.
   * `POST /v1/contacts/lookup {hashes, save}`.
   */
  async lookupContactHashes(hashes: string[], token: string, save?: boolean): Promise<ContactMatch[]> {
    const res = await this.#request<{ matches: ContactMatch[] }>({
      method: 'POST', path: '/v1/contacts/lookup', body: { hashes, ...(save !== undefined ? { save } : {}) }, token,
    });
    return Array.isArray(res?.matches) ? res.matches : [];
  }

  /** Adds and removes contacts (userIds); answers the contacts list. `POST /v1/contacts {add, remove}`. */
  async updateContacts(change: { add?: string[]; remove?: string[] }, token: string): Promise<string[]> {
    return (await this.#request<{ contacts: string[] }>({ method: 'POST', path: '/v1/contacts', body: change, token })).contacts;
  }

  /** The caller's contacts (userIds). `GET /v1/contacts`. */
  async listContacts(token: string): Promise<string[]> {
    return (await this.#request<{ contacts: string[] }>({ method: 'GET', path: '/v1/contacts', token })).contacts;
  }

  /** The caller's own profile (`GET /v1/profile`), or another user's as his privacy lets the caller see it (`GET /v1/users/:userId/profile`). */
  getProfile(userId: string | undefined, token: string): Promise<ProfileInfo> {
    return this.#request({ method: 'GET', path: userId === undefined ? '/v1/profile' : `/v1/users/${enc(userId)}/profile`, token });
  }

  /** Changes the caller's name, about text or photo (an image attachmentId; null removes it). `PATCH /v1/profile`. */
  setProfile(input: ProfileInput, token: string): Promise<ProfileInfo> {
    return this.#request({ method: 'PATCH', path: '/v1/profile', body: input, token });
  }

  /** A short-lived download URL of a user's photo (or its thumbnail), if he has one the caller may see. `GET /v1/users/:userId/avatar`. */
  getAvatarUrl(userId: string, thumbnail: boolean, token: string): Promise<DownloadUrl> {
    return this.#request({ method: 'GET', path: `/v1/users/${enc(userId)}/avatar${thumbnail ? '?thumbnail=1' : ''}`, token });
  }

  /** The caller's privacy settings. `GET /v1/privacy`. */
  getPrivacy(token: string): Promise<PrivacySettings> {
    return this.#request({ method: 'GET', path: '/v1/privacy', token });
  }

  /** Changes some privacy settings; answers all of them. `PATCH /v1/privacy`. */
  setPrivacy(patch: PrivacyInput, token: string): Promise<PrivacySettings> {
    return this.#request({ method: 'PATCH', path: '/v1/privacy', body: patch, token });
  }

  /** Blocks a user; answers the blocked list. `POST /v1/blocks {userId}`. */
  async blockUser(userId: string, token: string): Promise<string[]> {
    return (await this.#request<{ blocked: string[] }>({ method: 'POST', path: '/v1/blocks', body: { userId }, token })).blocked;
  }

  /** Unblocks a user (nothing happens if he was not blocked); answers the blocked list. `DELETE /v1/blocks/:userId`. */
  async unblockUser(userId: string, token: string): Promise<string[]> {
    return (await this.#request<{ blocked: string[] }>({ method: 'DELETE', path: `/v1/blocks/${enc(userId)}`, token })).blocked;
  }

  /** The users the caller blocked. `GET /v1/blocks`. */
  async listBlocked(token: string): Promise<string[]> {
    return (await this.#request<{ blocked: string[] }>({ method: 'GET', path: '/v1/blocks', token })).blocked;
  }

  /**
   * What a device needs to register for push: the VAPID public key (a browser's
   * `applicationServerKey`) and the kinds this server sends. No token needed. `GET /v1/push/config`.
   */
  getPushConfig(): Promise<PushConfigInfo> {
    return this.#request({ method: 'GET', path: '/v1/push/config' });
  }

  /** Registers (or replaces) the calling device's push registration. `PUT /v1/push`. */
  async registerPush(registration: PushRegistrationInput, token: string): Promise<PushRegistrationInfo> {
    return (await this.#request<{ registration: PushRegistrationInfo }>({ method: 'PUT', path: '/v1/push', body: registration, token })).registration;
  }

  /** The calling device's push registration, or null. `GET /v1/push`. */
  async getPushRegistration(token: string): Promise<PushRegistrationInfo | null> {
    return (await this.#request<{ registration: PushRegistrationInfo | null }>({ method: 'GET', path: '/v1/push', token })).registration;
  }

  /** Removes the calling device's push registration; false when it had none. `DELETE /v1/push`. */
  async unregisterPush(token: string): Promise<boolean> {
    return (await this.#request<{ removed: boolean }>({ method: 'DELETE', path: '/v1/push', token })).removed;
  }

  /** Publishes (or replaces) the calling device's MLS identity. `PUT /v1/keys/identity`. */
  publishIdentity(identity: PublishIdentityInput, token: string): Promise<IdentityPublished> {
    return this.#request({ method: 'PUT', path: '/v1/keys/identity', body: identity, token });
  }

  /** Adds key packages (and optionally a last-resort one) to the calling device's pool. `POST /v1/keys/packages`. */
  uploadKeyPackages(upload: UploadKeyPackagesInput, token: string): Promise<KeyPackagesUploaded> {
    return this.#request({ method: 'POST', path: '/v1/keys/packages', body: upload, token });
  }

  /** How many key packages the calling device holds, and whether it should upload more. `GET /v1/keys/packages/count`. */
  countKeyPackages(token: string): Promise<KeyPackageCount> {
    return this.#request({ method: 'GET', path: '/v1/keys/packages/count', token });
  }

  /**
   * One key package of every active device of these users; with `options.devices`, of those
   * devices only (of these users: the others keep their packages). `POST /v1/keys/claim`.
   */
  async claimKeyPackages(userIds: string[], token: string, options: { devices?: string[] } = {}): Promise<ClaimedDeviceKeys[]> {
    const body = { users: userIds, ...(options.devices ? { devices: options.devices } : {}) };
    return (await this.#request<{ devices: ClaimedDeviceKeys[] }>({ method: 'POST', path: '/v1/keys/claim', body, token })).devices;
  }

  /**
   * The published identities of the active devices of up to 1,024 users in one call, in the order
   * asked (each once); a user unknown, blocked either way or without identities has an empty
   * list. Takes nothing from anyone's pool. `POST /v1/keys/identities`.
   */
  async listIdentities(userIds: string[], token: string): Promise<UserIdentities[]> {
    return (await this.#request<{ users: UserIdentities[] }>({ method: 'POST', path: '/v1/keys/identities', body: { users: userIds }, token })).users;
  }

  /** The published identities of a user's active devices. `GET /v1/users/:userId/identities`. */
  getIdentities(userId: string, token: string): Promise<UserIdentities> {
    return this.#request({ method: 'GET', path: `/v1/users/${enc(userId)}/identities`, token });
  }

  /** postStatus: a text or media status post for 24 hours. `POST /v1/status`. */
  postStatus(input: PostStatusInput, token: string): Promise<OwnStatusPost> {
    return this.#request({ method: 'POST', path: '/v1/status', body: input, token });
  }

  /** The status feed: what the caller may see now, by author, and his own posts. `GET /v1/status`. */
  listStatuses(token: string): Promise<StatusFeed> {
    return this.#request({ method: 'GET', path: '/v1/status', token });
  }

  /** viewStatus: records the caller's view (idempotent). `POST /v1/status/:statusId/views`. */
  async viewStatus(statusId: string, token: string): Promise<void> {
    await this.#request({ method: 'POST', path: `/v1/status/${enc(statusId)}/views`, body: {}, token });
  }

  /** Who viewed one of the caller's posts. `GET /v1/status/:statusId/viewers`. */
  async getStatusViewers(statusId: string, token: string): Promise<StatusViewer[]> {
    return (await this.#request<{ viewers: StatusViewer[] }>({ method: 'GET', path: `/v1/status/${enc(statusId)}/viewers`, token })).viewers;
  }

  /** removeStatus: the caller's post, everywhere. `DELETE /v1/status/:statusId`. */
  async removeStatus(statusId: string, token: string): Promise<void> {
    await this.#request({ method: 'DELETE', path: `/v1/status/${enc(statusId)}`, token });
  }

  /** requestAccountDeletion: sends a fresh deletion code by SMS to the account's phone. `POST /v1/account/deletion-code`. */
  requestAccountDeletion(token: string): Promise<DeletionCodeSent> {
    return this.#request({ method: 'POST', path: '/v1/account/deletion-code', body: {}, token });
  }

  /** deleteAccount: with the code from that SMS, deletes the account and everything of it. `POST /v1/account/delete {code}`. */
  deleteAccount(code: string, token: string): Promise<AccountDeleted> {
    return this.#request({ method: 'POST', path: '/v1/account/delete', body: { code }, token, timeoutMs: Math.max(this.#timeoutMs, 60_000) });
  }

  /**
   * The account's export archive (`GET /v1/account/export`, docs/EXPORT.md), record by record as
   * the lines arrive: nothing but the current line is held. Throws E_VALIDATION when the first
   * record is not a header of a format this SDK reads, E_UNAVAILABLE when the archive is cut off
   * (no `end` record), E_TIMEOUT when nothing arrives for the request timeout.
   */
  async *exportAccountRecords(token: string): AsyncGenerator<ExportRecord> {
    const controller = new AbortController();
    let timer = setTimeout(() => controller.abort(), this.#timeoutMs);
    const idle = (): void => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), this.#timeoutMs);
    };
    try {
      let res: Response;
      try {
        res = await this.#fetch(`${this.baseUrl}/v1/account/export`, {
          method: 'GET', headers: { ...this.#headers, accept: 'application/x-ndjson', authorization: `Bearer ${token}` }, signal: controller.signal,
        });
      } catch (err) {
        if (controller.signal.aborted) throw new ParleyError('E_TIMEOUT', `GET /v1/account/export took over ${this.#timeoutMs} ms`);
        throw new ParleyError('E_UNAVAILABLE', err instanceof Error ? err.message : String(err));
      }
      if (!res.ok || !res.body) {
        const text = await res.text().catch(() => '');
        let json: unknown;
        try { json = JSON.parse(text); } catch { json = undefined; }
        throw errorFromBody(res.status, json);
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buffered = '';
      let first = true;
      let ended = false;
      const parse = (line: string): ExportRecord => {
        let r: ExportRecord;
        try {
          r = JSON.parse(line) as ExportRecord;
        } catch {
          throw new ParleyError('E_INTERNAL', 'the archive has a line that is not JSON');
        }
        if (first && (r.type !== 'header' || r.format !== 'parley-account-export' || r.version !== 1)) {
          throw new ParleyError('E_VALIDATION', 'not a parley-account-export archive of version 1');
        }
        first = false;
        if (r.type === 'end') ended = true;
        return r;
      };
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (err) {
          if (controller.signal.aborted) throw new ParleyError('E_TIMEOUT', 'the export stalled');
          throw new ParleyError('E_UNAVAILABLE', err instanceof Error ? err.message : String(err));
        }
        idle();
        if (chunk.done) break;
        buffered += decoder.decode(chunk.value, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line.trim() !== '') yield parse(line);
        }
      }
      buffered += decoder.decode();
      if (buffered.trim() !== '') yield parse(buffered);
      if (!ended) throw new ParleyError('E_UNAVAILABLE', 'the export archive was cut off (no end record)');
    } finally {
      clearTimeout(timer);
    }
  }


  async #request<T>(req: RequestInit2): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', ...this.#headers };
    if (req.body !== undefined) headers['content-type'] = 'application/json';
    if (req.token !== undefined) headers.authorization = `Bearer ${req.token}`;
    const controller = new AbortController();
    const timeoutMs = req.timeoutMs ?? this.#timeoutMs;
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(this.baseUrl + req.path, {
        method: req.method,
        headers,
        ...(req.body !== undefined ? { body: JSON.stringify(req.body) } : {}),
        signal: controller.signal,
      });
      text = await res.text();
    } catch (err) {
      if (controller.signal.aborted) {
        // Never the invitation code of a path in a message.
        const path = req.path.split('?')[0]!.replace(/^\/v1\/invites\/.*/, '/v1/invites/:code');
        throw new ParleyError('E_TIMEOUT', `${req.method} ${path} took over ${timeoutMs} ms`);
      }
      throw new ParleyError('E_UNAVAILABLE', err instanceof Error ? err.message : String(err));
    } finally {
      clearTimeout(timer);
    }
    let json: unknown = undefined;
    let parsed = true;
    if (text !== '') {
      try {
        json = JSON.parse(text);
      } catch {
        parsed = false;
      }
    }
    if (!res.ok) throw errorFromBody(res.status, parsed ? json : undefined);
    if (!parsed) throw new ParleyError('E_INTERNAL', `HTTP ${res.status}: the response is not JSON`);
    return json as T;
  }
}

function errorFromBody(status: number, body: unknown): ParleyError {
  const e = typeof body === 'object' && body !== null ? (body as { error?: unknown }).error : undefined;
  if (typeof e === 'object' && e !== null) {
    const { code, detail } = e as { code?: unknown; detail?: unknown };
    if (isErrorCode(code)) return new ParleyError(code, typeof detail === 'string' ? detail : undefined);
  }
  return new ParleyError('E_INTERNAL', `HTTP ${status}`);
}
