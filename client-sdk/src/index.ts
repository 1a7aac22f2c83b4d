/**
 * @parley/client-sdk: the public API. Everything an application needs, and nothing else: the
 * wire codec, topics and id helpers used by the server are in `@parley/client-sdk/protocol`.
 *
 * @packageDocumentation
 */
export { ParleyClient, DEFAULT_CLIENT_OPTIONS, DEFAULT_WAIT_STORED_MS } from './client.js';
export type {
  ParleyClientOptions, ParleyClientInit, ParleyClientEvents, ConnectionState, ChatMessage, ChatUpdate, SentMessage,
  StoredInfo, SyncedInfo, StatusUpdate,
} from './client.js';
export { ParleyApi, DEFAULT_API_TIMEOUT_MS } from './http.js';
export type { ParleyApiOptions } from './http.js';
export type {
  VerifyResult, LookupEntry, DeviceInfo, LinkCode, MessageFields, HistoryMessage, HistoryPage, ChatMemberInfo, ChatInfo, ChatListItem,
  ChatChange, InviteInfo, NewInvite, MessageStatusResponse, AttachmentInfo, CreateAttachmentInput, NewAttachment, PartUrl, DownloadUrl, CreateGroupInput, UpdateChatInput, ParticipantsInput,
  ChatSettingsInput,
} from './api-types.js';
export { ParleyError, ERRORS, isErrorCode } from './errors.js';
export type { ErrorCode } from './errors.js';
export type { Body, ChatEvent, ChatEventType, MediaKind, MediaRef } from './codec.js';
export type { MediaData, MediaMeta, TransferOptions } from './media.js';
export { GROUP_LIMITS } from './codec.js';
export { MemoryStateStore } from './sequencer.js';
export type { StateStore, OwnStatus } from './sequencer.js';
export type { EventName, Listener } from './emitter.js';
export { msgIdOf, parseMsgId, isMsgId } from './ids.js';
// [presence] exports above this line
// [social] exports above this line
// [push] exports above this line
// [status] exports above this line
// [account] exports above this line
