/**
 * `@parley/client-sdk/node`: the parts of the SDK that need Node's modules (the file system), kept
 * out of the main entry so that it stays browser-safe.
 */
export { FileKeyStorage, MAX_FILE_KEY_BYTES } from './e2ee/file-storage.js';
export type { KeyStorage } from './e2ee/storage.js';
