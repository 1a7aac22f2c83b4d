/**
 * Who may see what of a user, and who may add him to groups: the privacy rules, in one place, for
 * every part of the server that enforces them (profile routes, avatar downloads, group additions,
 * read receipts; presence uses the same ports). Batched: one query per port per question,
 * however many users it is about.
 *
 * A setting is `everyone`, `contacts` (the viewer is in the owner's contacts:
 * RelationStore.contactOf) or `nobody`. A user always sees his own. A user who blocked the viewer
 * shows him nothing a setting governs, whatever the setting (WhatsApp's rule).
 */
import type { Attachment, Privacy, ProfileStore, RelationStore } from '../store/types.js';

/** The settings that say who may see (or do) something: all but readReceipts. */
export type VisibilitySetting = 'lastSeen' | 'photo' | 'about' | 'groupAdd';

export type PrivacyPorts = Pick<ProfileStore, 'getPrivacies'> & Pick<RelationStore, 'contactOf' | 'blockedBy'>;

/**
 * Of `ownerIds`, those whose `setting` lets `viewerId` see (for groupAdd: add him). `privacies`
 * may be passed when the caller already has them.
 */
export async function allowedBy(
  store: PrivacyPorts, ownerIds: string[], viewerId: string, setting: VisibilitySetting, privacies?: Map<string, Privacy>,
): Promise<Set<string>> {
  const owners = [...new Set(ownerIds)].filter((o) => o !== viewerId);
  const out = new Set<string>(ownerIds.includes(viewerId) ? [viewerId] : []);
  if (owners.length === 0) return out;
  const settings = privacies ?? await store.getPrivacies(owners);
  const open = owners.filter((o) => settings.get(o)?.[setting] !== 'nobody');
  if (open.length === 0) return out;
  const needContact = open.filter((o) => settings.get(o)?.[setting] === 'contacts');
  const [contactOf, blockers] = await Promise.all([
    needContact.length ? store.contactOf(needContact, viewerId) : Promise.resolve(new Set<string>()),
    store.blockedBy(open, viewerId),
  ]);
  for (const o of open) {
    if (blockers.has(o)) continue;
    if (settings.get(o)?.[setting] === 'contacts' && !contactOf.has(o)) continue;
    out.add(o);
  }
  return out;
}

/**
 * The avatar authorisation path of media downloads (services/src/media/attachments.ts): the
 * attachment is its owner's current profile photo and his photo setting lets the viewer see it.
 */
export function avatarAccess(store: PrivacyPorts & Pick<ProfileStore, 'getProfile'>) {
  return async (viewerId: string, a: Attachment): Promise<boolean> => {
    if (a.kind !== 'image') return false;
    const profile = await store.getProfile(a.ownerUserId);
    if (profile?.avatar !== a.attachmentId) return false;
    return (await allowedBy(store, [a.ownerUserId], viewerId, 'photo')).has(a.ownerUserId);
  };
}
