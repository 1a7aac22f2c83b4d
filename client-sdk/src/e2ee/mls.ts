/**
 * The one place the SDK touches ts-mls (RFC 9420). Everything above this file speaks bytes and
 * small plain objects, so a faster MIT implementation of MLS can replace ts-mls here without
 * changing the wire (MLS is the standard; see docs/E2EE-CHOICE.md for why ts-mls 1.6.4 and its
 * pitfalls, which this file works around: positional 1.6 API, commits applied at creation,
 * encrypted commits and accept-all credentials by default).
 *
 * States are immutable (ts-mls returns a new state from every operation), which is what lets the
 * engine keep the state before its own commit until the server has ordered that commit.
 */
import {
  createApplicationMessage, createCommit, createGroup, decodeGroupState, decodeMlsMessage, defaultCapabilities,
  defaultLifetime, emptyPskIndex, encodeGroupState, encodeMlsMessage, generateKeyPackageWithKey, getCiphersuiteFromName, getCiphersuiteImpl,
  joinGroup, processMessage,
  type CiphersuiteImpl, type ClientConfig, type ClientState, type KeyPackage, type MLSMessage, type PrivateKeyPackage, type Proposal,
} from 'ts-mls';
import { makeKeyPackageRef } from 'ts-mls/keyPackage.js';
import { defaultClientConfig } from 'ts-mls/clientConfig.js';
// Decrypting through the lower-level call gives the sender's leaf, which `processMessage` drops.
import { unprotectPrivateMessage } from 'ts-mls/messageProtection.js';
import type { IncomingMessageCallback } from 'ts-mls';
import { Decoder, Encoder } from 'cbor-x';
import { ParleyError } from '../errors.js';

export const CIPHERSUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519' as const;

let impl: Promise<CiphersuiteImpl> | undefined;
/** The ciphersuite's primitives (WebCrypto, @hpke/core, @noble/*), made once per process. */
export function cipherSuite(): Promise<CiphersuiteImpl> {
  impl ??= getCiphersuiteImpl(getCiphersuiteFromName(CIPHERSUITE));
  return impl;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });
const cbor = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const uncbor = new Decoder({ useRecords: false, mapsAsObjects: true });

/** A device in MLS: its basic credential names it `<userId>/<deviceId>`. */
export interface DeviceName { userId: string; deviceId: string }
export const credentialName = (d: DeviceName): string => `${d.userId}/${d.deviceId}`;

export function parseCredentialName(identity: Uint8Array): DeviceName | null {
  let s: string;
  try {
    s = fromUtf8.decode(identity);
  } catch {
    return null;
  }
  const i = s.indexOf('/');
  if (i <= 0 || i === s.length - 1 || s.indexOf('/', i + 1) >= 0) return null;
  return { userId: s.slice(0, i), deviceId: s.slice(i + 1) };
}

/** A device's long-term identity: its credential and Ed25519 signature key pair. */
export interface Identity extends DeviceName {
  credential: Uint8Array;
  signaturePublicKey: Uint8Array;
  signaturePrivateKey: Uint8Array;
}

export async function newIdentity(d: DeviceName): Promise<Identity> {
  const cs = await cipherSuite();
  const { publicKey, signKey } = await cs.signature.keygen();
  return { ...d, credential: utf8.encode(credentialName(d)), signaturePublicKey: publicKey, signaturePrivateKey: signKey };
}

export function encodeIdentity(i: Identity): Uint8Array {
  return cbor.encode([i.userId, i.deviceId, i.credential, i.signaturePublicKey, i.signaturePrivateKey]) as Uint8Array;
}
export function decodeIdentity(b: Uint8Array): Identity {
  const [userId, deviceId, credential, signaturePublicKey, signaturePrivateKey] = uncbor.decode(b) as [string, string, Uint8Array, Uint8Array, Uint8Array];
  return { userId, deviceId, credential, signaturePublicKey, signaturePrivateKey };
}

/** A key package: `ref` (its KeyPackageRef), `data` (the MLS KeyPackage message), and its private half. */
export interface OwnKeyPackage { ref: Uint8Array; data: Uint8Array; secret: Uint8Array }

export async function newKeyPackage(id: Identity): Promise<OwnKeyPackage> {
  const cs = await cipherSuite();
  const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
    { credentialType: 'basic', identity: id.credential }, defaultCapabilities(), defaultLifetime, [],
    { signKey: id.signaturePrivateKey, publicKey: id.signaturePublicKey }, cs,
  );
  const ref = await makeKeyPackageRef(publicPackage, cs.hash);
  const data = encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: publicPackage });
  const secret = cbor.encode([privatePackage.initPrivateKey, privatePackage.hpkePrivateKey, privatePackage.signaturePrivateKey]) as Uint8Array;
  return { ref, data, secret };
}

function decodeMessage(bytes: Uint8Array): MLSMessage {
  let decoded: [MLSMessage, number] | undefined;
  try {
    decoded = decodeMlsMessage(bytes, 0);
  } catch {
    decoded = undefined;
  }
  if (!decoded) throw new ParleyError('E_BAD_ENVELOPE', 'not an MLS message');
  return decoded[0];
}

/** Decodes a key package's bytes (as the key directory hands them out). */
export function decodeKeyPackage(data: Uint8Array): KeyPackage {
  const m = decodeMessage(data);
  if (m.wireformat !== 'mls_key_package') throw new ParleyError('E_BAD_ENVELOPE', 'not an MLS key package');
  return m.keyPackage;
}

function privatePackage(secret: Uint8Array): PrivateKeyPackage {
  const [initPrivateKey, hpkePrivateKey, signaturePrivateKey] = uncbor.decode(secret) as [Uint8Array, Uint8Array, Uint8Array];
  return { initPrivateKey, hpkePrivateKey, signaturePrivateKey };
}

/** What a key package claims to be: its credential's device and its signature key. */
export function keyPackageIdentity(data: Uint8Array): { device: DeviceName | null; signatureKey: Uint8Array; encryptionKey: Uint8Array } {
  const kp = decodeKeyPackage(data);
  const cred = kp.leafNode.credential;
  return {
    device: cred.credentialType === 'basic' ? parseCredentialName(cred.identity) : null,
    signatureKey: kp.leafNode.signaturePublicKey,
    encryptionKey: kp.leafNode.hpkePublicKey,
  };
}

/**
 * Which credentials a group accepts: a basic credential naming a device, nothing else. Whether the
 * key is that device's published one is checked by the committer against the key directory before
 * adding it, and by users comparing safety numbers (docs/SECURITY.md).
 */
const clientConfig: ClientConfig = {
  ...defaultClientConfig,
  // Out-of-order and late messages: keys of skipped generations and of the last epochs are kept.
  keyRetentionConfig: { retainKeysForGenerations: 1000, retainKeysForEpochs: 8, maximumForwardRatchetSteps: 5000 },
  authService: {
    validateCredential: (credential) => Promise.resolve(credential.credentialType === 'basic' && parseCredentialName(credential.identity) !== null),
  },
};

/** One member of a group: its leaf, device and signature key. */
export interface Member extends DeviceName { leaf: number; signatureKey: Uint8Array; encryptionKey: Uint8Array }

/** The result of processing a handshake: the next state, or a note that it did not apply. */
export type Processed = { applied: true; group: MlsGroup } | { applied: false; reason: string };

/** An MLS group state (immutable). */
export class MlsGroup {
  private constructor(readonly state: ClientState) {}

  static async create(groupId: Uint8Array, own: OwnKeyPackage): Promise<MlsGroup> {
    const cs = await cipherSuite();
    return new MlsGroup(await createGroup(groupId, decodeKeyPackage(own.data), privatePackage(own.secret), [], cs, clientConfig));
  }

  /** Joins from a Welcome (with the ratchet tree in it) meant for `own`. */
  static async join(welcome: Uint8Array, own: OwnKeyPackage): Promise<MlsGroup> {
    const cs = await cipherSuite();
    const m = decodeMessage(welcome);
    if (m.wireformat !== 'mls_welcome') throw new ParleyError('E_BAD_ENVELOPE', 'not an MLS Welcome');
    return new MlsGroup(await joinGroup(m.welcome, decodeKeyPackage(own.data), privatePackage(own.secret), emptyPskIndex, cs, undefined, undefined, clientConfig));
  }

  /** The KeyPackageRefs a Welcome is for (to find whether one of ours is among them). */
  static welcomeRefs(welcome: Uint8Array): Uint8Array[] {
    const m = decodeMessage(welcome);
    if (m.wireformat !== 'mls_welcome') throw new ParleyError('E_BAD_ENVELOPE', 'not an MLS Welcome');
    return m.welcome.secrets.map((s) => s.newMember);
  }

  static decode(bytes: Uint8Array): MlsGroup {
    const decoded = decodeGroupState(bytes, 0);
    if (!decoded) throw new ParleyError('E_INTERNAL', 'stored MLS group state is unreadable');
    return new MlsGroup({ ...decoded[0], clientConfig });
  }

  encode(): Uint8Array {
    return encodeGroupState(this.state);
  }

  get epoch(): bigint {
    return this.state.groupContext.epoch;
  }

  get groupId(): Uint8Array {
    return this.state.groupContext.groupId;
  }

  get active(): boolean {
    return this.state.groupActiveState.kind === 'active';
  }

  /** This device's leaf. */
  get ownLeaf(): number {
    return this.state.privatePath.leafIndex;
  }

  members(): Member[] {
    const out: Member[] = [];
    this.state.ratchetTree.forEach((node, i) => {
      if (i % 2 !== 0 || node?.nodeType !== 'leaf') return;
      const cred = node.leaf.credential;
      const name = cred.credentialType === 'basic' ? parseCredentialName(cred.identity) : null;
      if (name) out.push({ ...name, leaf: i / 2, signatureKey: node.leaf.signaturePublicKey, encryptionKey: node.leaf.hpkePublicKey });
    });
    return out;
  }

  /**
   * A commit adding these key packages and removing these leaves, as a PublicMessage (the server
   * can see who joins and leaves, never a secret) with a Welcome that carries the ratchet tree.
   * The returned group is the state *after* the commit: adopt it only once the commit is ordered.
   */
  async commit(change: { add?: Uint8Array[]; remove?: number[] }): Promise<{ group: MlsGroup; commit: Uint8Array; welcome: Uint8Array | null }> {
    const cs = await cipherSuite();
    const proposals: Proposal[] = [
      ...(change.remove ?? []).map((leaf): Proposal => ({ proposalType: 'remove', remove: { removed: leaf } })),
      ...(change.add ?? []).map((data): Proposal => ({ proposalType: 'add', add: { keyPackage: decodeKeyPackage(data) } })),
    ];
    const r = await createCommit({ state: this.state, cipherSuite: cs }, {
      extraProposals: proposals, wireAsPublicMessage: true, ratchetTreeExtension: true,
    });
    return {
      group: new MlsGroup(r.newState),
      commit: encodeMlsMessage(r.commit),
      welcome: r.welcome ? encodeMlsMessage({ version: 'mls10', wireformat: 'mls_welcome', welcome: r.welcome }) : null,
    };
  }

  /** The epoch a commit was made in (its group id too), without processing it. */
  static commitEpoch(commit: Uint8Array): { groupId: Uint8Array; epoch: bigint } {
    const m = decodeMessage(commit);
    if (m.wireformat !== 'mls_public_message' || m.publicMessage.content.contentType !== 'commit') {
      throw new ParleyError('E_BAD_ENVELOPE', 'a handshake must be an MLS commit in a PublicMessage');
    }
    return { groupId: m.publicMessage.content.groupId, epoch: m.publicMessage.content.epoch };
  }

  /**
   * Applies another member's commit (made in this epoch). Only adds and removes are accepted
   * (what Parley's devices commit): a re-init, PSK or extension change from a member is refused.
   */
  async process(commit: Uint8Array): Promise<MlsGroup> {
    const cs = await cipherSuite();
    MlsGroup.commitEpoch(commit);
    const m = decodeMessage(commit);
    if (m.wireformat !== 'mls_public_message') throw new ParleyError('E_BAD_ENVELOPE', 'a commit must be an MLS PublicMessage');
    const r = await processMessage(m, this.state, emptyPskIndex, onlyAddsAndRemoves, cs);
    if (r.kind !== 'newState' || r.actionTaken !== 'accept') throw new ParleyError('E_BAD_ENVELOPE', 'a commit with proposals other than add and remove');
    return new MlsGroup(r.newState);
  }

  /**
   * This group after our own commit (`this`), made while `before` went on receiving: the keys of
   * the epochs before keep what was used since the commit was made (a message decrypted in
   * between cannot be decrypted again).
   */
  adoptAfter(before: MlsGroup): MlsGroup {
    const old = before.state;
    const history = new Map(this.state.historicalReceiverData);
    for (const [epoch, data] of old.historicalReceiverData) if (history.has(epoch)) history.set(epoch, data);
    const prev = history.get(old.groupContext.epoch);
    if (prev) history.set(old.groupContext.epoch, { ...prev, secretTree: old.secretTree });
    return new MlsGroup({ ...this.state, historicalReceiverData: history });
  }

  async encrypt(plaintext: Uint8Array): Promise<{ group: MlsGroup; message: Uint8Array }> {
    const cs = await cipherSuite();
    const r = await createApplicationMessage(this.state, plaintext, cs);
    return { group: new MlsGroup(r.newState), message: encodeMlsMessage({ version: 'mls10', wireformat: 'mls_private_message', privateMessage: r.privateMessage }) };
  }

  /** The epoch and group an application message was sent in (readable without keys). */
  static messageEpoch(message: Uint8Array): { groupId: Uint8Array; epoch: bigint } {
    const m = decodeMessage(message);
    if (m.wireformat !== 'mls_private_message') throw new ParleyError('E_BAD_ENVELOPE', 'not an MLS PrivateMessage');
    return { groupId: m.privateMessage.groupId, epoch: m.privateMessage.epoch };
  }

  /**
   * Decrypts an application message of this epoch or a retained earlier one. `sender` is the
   * device of the leaf that signed it (in the tree of the message's epoch): the caller checks it
   * against who the server says sent it, and whether that device is still a member.
   */
  async decrypt(message: Uint8Array): Promise<{ group: MlsGroup; plaintext: Uint8Array; sender: DeviceName | null }> {
    const cs = await cipherSuite();
    const m = decodeMessage(message);
    if (m.wireformat !== 'mls_private_message') throw new ParleyError('E_BAD_ENVELOPE', 'not an MLS PrivateMessage');
    const pm = m.privateMessage;
    const st = this.state;
    const past = pm.epoch < st.groupContext.epoch;
    if (pm.epoch > st.groupContext.epoch) throw new ParleyError('E_BAD_ENVELOPE', 'a message of a later epoch');
    const data = past ? st.historicalReceiverData.get(pm.epoch) : {
      senderDataSecret: st.keySchedule.senderDataSecret, secretTree: st.secretTree, ratchetTree: st.ratchetTree, groupContext: st.groupContext,
    };
    if (!data) throw new ParleyError('E_BAD_ENVELOPE', 'a message of an epoch whose keys are gone');
    const r = await unprotectPrivateMessage(data.senderDataSecret, pm, data.secretTree, data.ratchetTree, data.groupContext, st.clientConfig.keyRetentionConfig, cs);
    const content = r.content.content;
    if (content.contentType !== 'application' || content.sender.senderType !== 'member') throw new ParleyError('E_BAD_ENVELOPE', 'not an application message from a member');
    const node = data.ratchetTree[content.sender.leafIndex * 2];
    const cred = node?.nodeType === 'leaf' ? node.leaf.credential : undefined;
    const sender = cred?.credentialType === 'basic' ? parseCredentialName(cred.identity) : null;
    let next: ClientState;
    if (past) {
      const history = new Map(st.historicalReceiverData);
      history.set(pm.epoch, { ...st.historicalReceiverData.get(pm.epoch)!, secretTree: r.tree });
      next = { ...st, historicalReceiverData: history };
    } else {
      next = { ...st, secretTree: r.tree };
    }
    return { group: new MlsGroup(next), plaintext: content.applicationData, sender };
  }
}

/** Commits from other members: adds and removes only. */
const onlyAddsAndRemoves: IncomingMessageCallback = (incoming) => {
  if (incoming.kind !== 'commit') return 'reject';
  return incoming.proposals.every((p) => p.proposal.proposalType === 'add' || p.proposal.proposalType === 'remove') ? 'accept' : 'reject';
};

export const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((v, i) => v === b[i]);
