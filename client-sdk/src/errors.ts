/**
 * The one error catalogue. Every error Parley reports — HTTP bodies, MQTT error envelopes on
 * `inbox/<clientId>`, SDK exceptions — carries one of these codes. Codes are stable: never rename
 * or reuse one; add new codes at the end. `docs/ERRORS.md` documents each and a test keeps the two
 * in step.
 */
export const ERRORS = {
  E_BAD_REQUEST: { status: 400, message: 'The request is malformed' },
  E_VALIDATION: { status: 400, message: 'A field is missing or has an invalid value' },
  E_PHONE_INVALID: { status: 400, message: 'The phone number is not a valid E.164 number' },
  E_CODE_INVALID: { status: 401, message: 'The verification code is wrong' },
  E_CODE_EXPIRED: { status: 410, message: 'The verification code expired or was never requested' },
  E_CODE_ATTEMPTS: { status: 429, message: 'Too many wrong codes: request a new one' },
  E_RATE_LIMITED: { status: 429, message: 'Too many requests: slow down and retry later' },
  E_AUTH_REQUIRED: { status: 401, message: 'Authentication is required' },
  E_AUTH_TOKEN: { status: 401, message: 'The device token is invalid or revoked' },
  E_FORBIDDEN: { status: 403, message: 'Not allowed' },
  E_NOT_FOUND: { status: 404, message: 'Not found' },
  E_USER_NOT_FOUND: { status: 404, message: 'No user has that phone number or id' },
  E_RECIPIENT_UNKNOWN: { status: 404, message: 'The recipient does not exist' },
  E_NOT_MEMBER: { status: 403, message: 'The device is not a member of that chat' },
  E_NOT_RECIPIENT: { status: 403, message: 'A receipt names a message this device never received' },
  E_DEVICE_LIMIT: { status: 409, message: 'The user already has the maximum number of devices' },
  E_PAYLOAD_TOO_LARGE: { status: 413, message: 'The payload is larger than the configured maximum' },
  E_BAD_ENVELOPE: { status: 400, message: 'The MQTT payload is not a valid Parley envelope' },
  E_BAD_TOPIC: { status: 400, message: 'The topic is not one Parley knows' },
  E_ACL_DENIED: { status: 403, message: 'The ACL does not allow this publish or subscribe' },
  E_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be application/json' },
  E_INTERNAL: { status: 500, message: 'An internal error occurred; the request may be retried' },
  E_UNAVAILABLE: { status: 503, message: 'A dependency is unavailable; retry later' },
  E_CONFIG: { status: 500, message: 'The configuration is invalid' },
  E_TIMEOUT: { status: 504, message: 'The operation timed out' },
  E_CLOSED: { status: 499, message: 'The client was closed' },
  E_CHAT_NOT_FOUND: { status: 404, message: 'No such chat' },
  E_NOT_ADMIN: { status: 403, message: 'Only an admin of the group may do this' },
  E_GROUP_FULL: { status: 409, message: 'The group would have more members than allowed' },
  E_CHAT_DELETED: { status: 410, message: 'The group was deleted' },
  E_ALREADY_MEMBER: { status: 409, message: 'The user is already a member of the group' },
  E_LINK_CODE: { status: 410, message: 'The link or invitation code is wrong, expired, used or revoked' },
  E_CONFLICT: { status: 409, message: 'The chat changed at the same time; retry' },
  E_MESSAGE_GONE: { status: 410, message: 'The server no longer has that message (retention)' },
  E_URL_SIGNATURE: { status: 403, message: 'The signed URL is not valid (tampered or for something else)' },
  E_URL_EXPIRED: { status: 410, message: 'The signed URL has expired' },
  E_MEDIA_TOO_LARGE: { status: 413, message: 'The media file is larger than allowed for its kind' },
  E_MEDIA_CHECKSUM: { status: 422, message: 'The uploaded bytes do not match the declared size or SHA-256' },
  E_MEDIA_TYPE: { status: 415, message: 'The media type is not allowed for its kind, or the bytes are of another type' },
  E_MEDIA_CORRUPT: { status: 422, message: 'The media file cannot be decoded (corrupt, or too many pixels)' },
  E_MEDIA_STATE: { status: 409, message: 'The attachment is not in a state that allows this' },
  E_BLOCKED: { status: 403, message: 'The recipient cannot receive messages from you (one of you blocked the other)' },
  E_ADD_NOT_ALLOWED: { status: 403, message: 'These users\' privacy settings do not let you add them to groups: send them an invitation link' },
  E_PUSH_UNSUPPORTED: { status: 422, message: 'This server does not send that kind of push notification' },
  E_PUSH_ENDPOINT: { status: 422, message: 'The Web Push endpoint is not one of the allowed push services' },
  E_NO_KEYS: { status: 409, message: 'The recipient has no end-to-end encryption keys yet (no device connected with encryption on): nothing was sent' },
  E_STATUS_LIMIT: { status: 409, message: 'Too many status posts are live: remove one or wait until one expires' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERRORS, value);
}

/** An error with a catalogue code. `detail` is human-readable extra context, never a secret. */
export class ParleyError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string | undefined;
  /** The client message id (or other reference) the error answers, when there is one. */
  readonly ref: string | undefined;

  constructor(code: ErrorCode, detail?: string, ref?: string) {
    super(detail ? `${ERRORS[code].message}: ${detail}` : ERRORS[code].message);
    this.name = 'ParleyError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.detail = detail;
    this.ref = ref;
  }

  toJSON(): { error: { code: ErrorCode; message: string; detail?: string } } {
    return {
      error: {
        code: this.code,
        message: ERRORS[this.code].message,
        ...(this.detail ? { detail: this.detail } : {}),
      },
    };
  }
}
