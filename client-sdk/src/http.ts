/**
 * ParleyApi: a tiny fetch-based client of the Parley HTTP API (registration, contacts discovery,
 * message status, history). Runs in Node 20+ and browsers (global `fetch`).
 *
 * Errors: a non-2xx response carries `{ error: { code, message, detail? } }` and becomes
 * `ParleyError(code, detail)`; a body of any other shape (or an unknown code) becomes E_INTERNAL.
 * Network failures become E_UNAVAILABLE, timeouts E_TIMEOUT.
 */
import { ParleyError, isErrorCode } from './errors.js';
import type { ChatMessage } from './client.js';

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

export interface VerifyResult {
  userId: string;
  deviceId: string;
  /** The device token: the MQTT password and the HTTP bearer token. Keep it secret. */
  token: string;
}

export interface LookupEntry {
  phone: string;
  userId: string;
}

/** `GET /v1/messages/:msgId/status` (the caller must be a member of the chat). */
export interface MessageStatusResponse {
  msgId: string;
  /** `read` once any recipient read it, `delivered` once any device got it. */
  status: 'sent' | 'delivered' | 'read';
  sentAt: number;
  /** When the last recipient device got it (null until all have). */
  deliveredAt: number | null;
  recipients: Array<{ userId: string; deviceId: string; deliveredAt: number | null; readAt: number | null }>;
}

/** One message of `GET /v1/chats/:chatId/messages`. */
export interface HistoryMessage extends Pick<ChatMessage, 'msgId' | 'chatId' | 'seq' | 'from' | 'fromDevice' | 'ts' | 'text'> {
  /** The body, when it is bytes: base64. */
  data?: string;
}

export interface HistoryPage<T = HistoryMessage> {
  messages: T[];
}

interface RequestInit2 {
  method: 'GET' | 'POST';
  path: string;
  body?: unknown;
  token?: string;
}

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
    this.#fetch = f;
    this.#headers = { ...o.headers };
  }

  /** Asks for a verification code by SMS. `POST /v1/register {phone}`. */
  requestCode(phone: string): Promise<{ expiresInSec: number }> {
    return this.#request({ method: 'POST', path: '/v1/register', body: { phone } });
  }

  /** Alias of {@link ParleyApi.requestCode}. */
  registerAccount(phone: string): Promise<{ expiresInSec: number }> {
    return this.requestCode(phone);
  }

  /** Checks the code and registers this device. `POST /v1/verify {phone, code, deviceName}`. */
  verify(phone: string, code: string, deviceName?: string): Promise<VerifyResult> {
    return this.#request({ method: 'POST', path: '/v1/verify', body: { phone, code, deviceName } });
  }

  /** Alias of {@link ParleyApi.verify}. */
  validateAccount(phone: string, code: string, deviceName?: string): Promise<VerifyResult> {
    return this.verify(phone, code, deviceName);
  }

  /** Which of these phones are Parley users. `POST /v1/users/lookup {phones}`. */
  async lookup(phones: string[], token: string): Promise<LookupEntry[]> {
    const res = await this.#request<{ users: LookupEntry[] }>({ method: 'POST', path: '/v1/users/lookup', body: { phones }, token });
    return Array.isArray(res?.users) ? res.users : [];
  }

  /** Per-recipient delivery and read state of a message. `GET /v1/messages/:msgId/status`. */
  messageStatus<T = MessageStatusResponse>(msgId: string, token: string): Promise<T> {
    return this.#request<T>({ method: 'GET', path: `/v1/messages/${encodeURIComponent(msgId)}/status`, token });
  }

  /** Alias of {@link ParleyApi.messageStatus}. */
  getMessageStatus<T = MessageStatusResponse>(msgId: string, token: string): Promise<T> {
    return this.messageStatus<T>(msgId, token);
  }

  /** Messages of a chat after a seq. `GET /v1/chats/:chatId/messages?after=&limit=`. */
  history<T = HistoryMessage>(chatId: string, afterSeq: number, token: string, limit?: number): Promise<HistoryPage<T>> {
    const q = new URLSearchParams({ after: String(afterSeq) });
    if (limit !== undefined) q.set('limit', String(limit));
    return this.#request<HistoryPage<T>>({
      method: 'GET', path: `/v1/chats/${encodeURIComponent(chatId)}/messages?${q.toString()}`, token,
    });
  }

  /** Alias of {@link ParleyApi.history}. */
  readNewMessages<T = HistoryMessage>(chatId: string, afterSeq: number, token: string, limit?: number): Promise<HistoryPage<T>> {
    return this.history<T>(chatId, afterSeq, token, limit);
  }

  async #request<T>(req: RequestInit2): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', ...this.#headers };
    if (req.body !== undefined) headers['content-type'] = 'application/json';
    if (req.token !== undefined) headers.authorization = `Bearer ${req.token}`;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.#timeoutMs);
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
        throw new ParleyError('E_TIMEOUT', `${req.method} ${req.path.split('?')[0]} took over ${this.#timeoutMs} ms`);
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
