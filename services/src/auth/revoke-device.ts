/**
 * What revoking a device means, whoever asks (its own user, a new verification of the phone, the
 * admin dashboard): its token stops working (the store), it is woken no more (its push
 * registration goes), nobody can add it to a group any more (its MLS identity and key packages
 * go), and its connection is closed on whichever broker node holds it.
 */
import type { Store } from '../store/types.js';

export interface RevokeDeps {
  store: Pick<Store, 'revokeDevice' | 'deletePushRegistration' | 'deleteDeviceKeys'>;
  /** Closes the device's connection on every broker node (the revocation channel). */
  disconnect(deviceId: string): Promise<void>;
}

export async function revokeDevice(deps: RevokeDeps, deviceId: string, at: number): Promise<void> {
  await deps.store.revokeDevice(deviceId, at);
  await deps.store.deletePushRegistration(deviceId);
  await deps.store.deleteDeviceKeys(deviceId);
  await deps.disconnect(deviceId);
}
