/**
 * `@parley/client-sdk/protocol`: the wire level, shared by the SDK and the server: the envelope
 * codec, topics, ids, the error catalogue and the ordering logic. Not part of the application
 * API (its shape may change with the protocol); applications use the package root.
 */
export * from './errors.js';
export * from './ids.js';
export * from './topics.js';
export * from './codec.js';
export * from './sequencer.js';
export * from './emitter.js';
export { stripJpegGps } from './exif.js';
export { hashPhone, PHONE_HASH, CONTACT_LIMITS, PROFILE_LIMITS } from './social.js';
export { canDecrypt } from './e2ee/engine.js';
export { MlsGroup, newIdentity, newKeyPackage, CIPHERSUITE } from './e2ee/mls.js';
export { isE2eeBody, decodeE2ee, encodeE2ee } from './e2ee/wire.js';
