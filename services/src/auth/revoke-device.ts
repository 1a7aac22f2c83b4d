/**
 * What revoking a device means, whoever asks (its own user, a new verification of the phone, the
 * admin dashboard): its token stops working (the store), it is woken no more (its push
 * registration goes), nobody can add it to a group any more (its MLS identity and key packages
 * go, and when it had published an identity its user's chats are told: a `removed` identity
 * event, so their MLS groups drop it), and its connection is closed on whichever broker node holds it.
 *
 * Account deletion revokes its devices in the store directly: its `left` messages are what the
 * chats hear, not one identity event per device and chat.
 */
import type { Store } from '../store/types.js';
import type { IdentityEventsJob } from '../queues.js';

export interface RevokeDeps {
  store: Pick<Store, 'revokeDevice' | 'deletePushRegistration' | 'deleteDeviceKeys' | 'getIdentities'>;
  /** Closes the device's connection on every broker node (the revocation channel). */
  disconnect(deviceId: string): Promise<void>;
  /** Queues the identity events of the device's chats (services/src/workers/identity-events.ts). */
  identityEvents(job: IdentityEventsJob): Promise<void>;
}

export async function revokeDevice(deps: RevokeDeps, deviceId: string, at: number): Promise<void> {
  await deps.store.revokeDevice(deviceId, at);
  await deps.store.deletePushRegistration(deviceId);
  // Only a device that had published an identity was in anyone's MLS group. Queued before its
  // keys go, so that a revocation interrupted in between and run again still finds it.
  const [identity] = await deps.store.getIdentities([deviceId]);
  if (identity) await deps.identityEvents({ userId: identity.userId, deviceId, change: 'removed', changedAt: at });
  await deps.store.deleteDeviceKeys(deviceId);
  await deps.disconnect(deviceId);
}
