/**
 * Account export (issue 12, item 8): the user's own data as a stream of records, one NDJSON line
 * each (docs/EXPORT.md). Produced as an async generator, a store page at a time, so that a large
 * account never sits in memory: the route writes each line as it comes.
 *
 * What a user gets, WhatsApp's "export chat" being the model: his account, profile, privacy,
 * devices (never a token or a token hash) and the MLS identities they published (public keys),
 * contacts and blocks, every chat he is or was in with his membership window, the messages of
 * that window (his and the others': a conversation is both sides), the media of his uploads and
 * of the messages he received with fresh download URLs, and his live status posts. No code
 * hashes, no other user's phone, no key packages.
 */
import type { ExportRecord, HistoryMessage } from '@parley/client-sdk/api-types';
import type { MediaRef } from '@parley/client-sdk/protocol';
import type { Attachment, Store } from '../store/types.js';
import { mediaRefOf, type Attachments } from '../media/attachments.js';
import { messageJson } from '../api/chats.js';

export const EXPORT_FORMAT = 'parley-account-export';
export const EXPORT_VERSION = 1;

export interface ExportDeps {
  store: Store;
  attachments: Pick<Attachments, 'downloadUrl'>;
  now(): number;
}

/** Messages (and attachments) read per store query. */
const PAGE = 500;

type MediaRecord = Extract<ExportRecord, { type: 'media' }>;

/** Key bytes as the key directory hands them out (base64url without padding). */
const base64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');

export async function* exportRecords(deps: ExportDeps, userId: string): AsyncGenerator<ExportRecord> {
  const { store } = deps;
  const counts: Record<string, number> = {};
  const count = (type: string): void => { counts[type] = (counts[type] ?? 0) + 1; };
  const now = deps.now();
  yield { type: 'header', format: EXPORT_FORMAT, version: EXPORT_VERSION, userId, exportedAt: now };

  const user = await store.getUser(userId);
  if (user) yield { type: 'account', userId, phone: user.phone, createdAt: user.createdAt };
  const profile = await store.getProfile(userId);
  yield { type: 'profile', name: profile?.name ?? '', about: profile?.about ?? '', avatar: profile?.avatar ?? null, updatedAt: profile?.updatedAt ?? null };
  yield { type: 'privacy', ...(await store.getPrivacy(userId)) };
  const devices = await store.listAllDevices(userId);
  for (const d of devices) {
    count('device');
    yield { type: 'device', deviceId: d.deviceId, name: d.name, createdAt: d.createdAt, revokedAt: d.revokedAt };
  }
  // The MLS identities his devices published (public keys: the private ones never left the
  // devices), in device order. A revoked device has none: its keys went with it.
  const identities = new Map((await store.getIdentities(devices.map((d) => d.deviceId))).map((i) => [i.deviceId, i]));
  for (const d of devices) {
    const i = identities.get(d.deviceId);
    if (!i) continue;
    count('identity');
    yield {
      type: 'identity', deviceId: i.deviceId, credential: base64url(i.credential), signatureKey: base64url(i.signatureKey), changedAt: i.changedAt,
    };
  }
  for (const c of await store.listContacts(userId)) {
    count('contact');
    yield { type: 'contact', userId: c };
  }
  for (const b of await store.listBlocked(userId)) {
    count('block');
    yield { type: 'block', userId: b };
  }

  const url = async (attachmentId: string, thumbnail: boolean): Promise<{ url: string; expiresAt: number } | null> =>
    deps.attachments.downloadUrl(userId, attachmentId, thumbnail).catch(() => null);
  const mediaRecord = async (ref: MediaRef, a: Attachment | null): Promise<MediaRecord> => {
    const original = a === null || a.state === 'ready' || a.state === 'processing' ? await url(ref.attachmentId, false) : null;
    const thumb = a === null || a.thumbKey ? await url(ref.attachmentId, true) : null;
    count('media');
    return {
      type: 'media', attachmentId: ref.attachmentId, owner: a?.ownerUserId ?? null, kind: ref.kind, contentType: ref.contentType,
      size: ref.size, sha256: ref.sha256, filename: ref.filename ?? null, state: a?.state ?? null, createdAt: a?.createdAt ?? null,
      url: original?.url ?? null, thumbnailUrl: thumb?.url ?? null, urlExpiresAt: original?.expiresAt ?? thumb?.expiresAt ?? null,
    };
  };

  // The media of messages he received follow the first message naming them (ids kept to list
  // each once; the records themselves are not kept). His own uploads come after the chats.
  const listed = new Set<string>();
  for (const { chat, member } of await store.listChats(userId, Number.MAX_SAFE_INTEGER)) {
    count('chat');
    const members = member.leftSeq === null ? await store.getMembers(chat.chatId) : [];
    yield {
      type: 'chat', chatId: chat.chatId, kind: chat.kind, name: chat.name, description: chat.description, createdAt: chat.createdAt,
      deleted: chat.deletedAt !== null, lastSeq: chat.lastSeq, members: members.map((m) => m.userId),
      membership: {
        role: member.role, joinedAt: member.joinedAt, sinceSeq: member.sinceSeq, leftSeq: member.leftSeq,
        mutedUntil: member.mutedUntil, archived: member.archived,
      },
    };
    const end = member.leftSeq ?? chat.lastSeq;
    for (let after = member.sinceSeq; after < end;) {
      const page = await store.history(chat.chatId, after, PAGE);
      for (const m of page) {
        if (m.seq > end) break;
        const sent = m.senderUserId === userId && !m.event;
        count('message');
        const json: HistoryMessage = messageJson(m);
        yield { type: 'message', direction: sent ? 'sent' : 'received', ...json };
        if (!sent && m.media && !listed.has(m.media.attachmentId)) {
          listed.add(m.media.attachmentId);
          const a = await store.getAttachment(m.media.attachmentId);
          // His own upload (forwarded back to him) is listed with the others below.
          if (a?.ownerUserId !== userId) yield await mediaRecord(m.media, a);
        }
      }
      if (page.length < PAGE) break;
      after = page[page.length - 1]!.seq;
    }
  }

  for (let after = ''; ;) {
    const page = await store.attachmentsOf(userId, after, PAGE);
    for (const a of page) yield await mediaRecord({ ...mediaRefOf(a) }, a);
    if (page.length < PAGE) break;
    after = page[page.length - 1]!.attachmentId;
  }

  for (const p of await store.ownStatuses(userId, now)) {
    count('status');
    yield { type: 'status', statusId: p.statusId, ts: p.ts, expiresAt: p.expiresAt, text: p.text, background: p.background, font: p.font, media: p.media };
  }
  yield { type: 'end', counts };
}
