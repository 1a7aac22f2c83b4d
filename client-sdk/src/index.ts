/**
 * @parley/client-sdk: the public API. Everything an application needs, and nothing else: the
 * wire codec, topics and id helpers used by the server are in `@parley/client-sdk/protocol`.
 *
 * @packageDocumentation
 */
export { ParleyClient, DEFAULT_CLIENT_OPTIONS, DEFAULT_WAIT_STORED_MS } from './client.js';
export type {
  ParleyClientOptions, ParleyClientInit, ParleyClientEvents, ConnectionState, ChatMessage, ChatUpdate, SentMessage,
  StoredInfo, SyncedInfo, StatusUpdate, UndecryptableMessage,
} from './client.js';
export { MemoryKeyStorage, IndexedDbKeyStorage } from './e2ee/storage.js';
export type { KeyStorage } from './e2ee/storage.js';
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
export type { PresenceInfo, TypingInfo } from './live.js';
export type { TypingState, IdentityChange } from './codec.js';
export type { ContactMatch, Visibility, PrivacySettings, PrivacyInput, ProfileInfo, ProfileInput } from './api-types.js';
export { hashPhone, CONTACT_LIMITS, PROFILE_LIMITS } from './social.js';
export { normalizePhoneNumber } from './contacts.js';
export type { CountryCode } from './contacts.js';
export type { PushKind, PushRegistrationInput, PushRegistrationInfo, PushConfigInfo } from './api-types.js';
export type { StatusPostEvent } from './status.js';
export type { PostStatusInput, StatusAudience, StatusPostInfo, FeedStatusPost, OwnStatusPost, StatusAuthor, StatusFeed, StatusViewer } from './api-types.js';
export { STATUS_TEXT_MAX } from './codec.js';
export type { DeletionCodeSent, AccountDeleted, AccountExport, ExportRecord } from './api-types.js';
export type {
  PublishIdentityInput, UploadKeyPackagesInput, KeyPackageInfo, DeviceIdentityInfo, IdentityPublished, KeyPackageCount, KeyPackagesUploaded,
  ClaimedDeviceKeys, UserIdentities,
} from './api-types.js';
