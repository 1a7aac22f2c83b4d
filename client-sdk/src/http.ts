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
  LookupEntry, MessageStatusResponse, NewInvite, ParticipantsInput, UpdateChatInput, VerifyResult,
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

  /** Which of these phones are Parley users. `POST /v1/users/lookup {phones}`. */
  async lookupContacts(phones: string[], token: string): Promise<LookupEntry[]> {
    const res = await this.#request<{ users: LookupEntry[] }>({ method: 'POST', path: '/v1/users/lookup', body: { phones }, token });
    return Array.isArray(res?.users) ? res.users : [];
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

  // [presence] methods above this line
  // [social] methods above this line
  // [push] methods above this line
  // [status] methods above this line
  // [account] methods above this line

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
