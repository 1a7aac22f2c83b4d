/**
 * The store contracts: one suite per port (types.ts), run against every adapter
 * (test/store.sqlite.test.ts, test/store.mongo.test.ts). They go through the ports only, so
 * whatever passes here is interchangeable for the services.
 */
import { describe } from 'vitest';
import { accountStoreContract } from './account-store.contract.js';
import { accountDeletionContract } from './account-deletion.contract.js';
import { chatStoreContract } from './chat-store.contract.js';
import { lifecycleContract } from './lifecycle.contract.js';
import { mediaStoreContract } from './media-store.contract.js';
import { messageStoreContract } from './message-store.contract.js';
import { progressStoreContract } from './progress-store.contract.js';
import { pushStoreContract } from './push-store.contract.js';
import { keyStoreContract } from './key-store.contract.js';
import { statusStoreContract } from './status-store.contract.js';
import type { StoreFactory } from './helpers.js';
import { profileStoreContract } from './profile-store.contract.js';
import { relationStoreContract } from './relation-store.contract.js';

export type { StoreFactory } from './helpers.js';
export { accountStoreContract, chatStoreContract, lifecycleContract, mediaStoreContract, messageStoreContract, progressStoreContract };

/** Registers every port's contract suite under `name`; each test gets a fresh store from `factory`. */
export function storeContracts(name: string, factory: StoreFactory): void {
  describe(name, () => {
    lifecycleContract(factory);
    accountStoreContract(factory);
    chatStoreContract(factory);
    messageStoreContract(factory);
    progressStoreContract(factory);
    mediaStoreContract(factory);
    profileStoreContract(factory);
    relationStoreContract(factory);
    pushStoreContract(factory);
    statusStoreContract(factory);
    keyStoreContract(factory);
    accountDeletionContract(factory);
  });
}
