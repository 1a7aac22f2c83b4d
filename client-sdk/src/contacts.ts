/**
 * Contacts discovery on the device: an address book's numbers, in whatever form people type them,
 * normalised to E.164 with `libphonenumber-js` (national numbers read with a default country),
 * then hashed (`hashPhone`): only hashes leave the device.
 *
 * A number counts when it is *possible* for its country (the right length), not only when it is
 * in a range known to be assigned: the library's range metadata ages, and a number nobody has
 * registered simply matches nobody. What cannot be read as a possible number is dropped (and
 * reported: its entry has no `e164`).
 */
import { parsePhoneNumberFromString, type CountryCode } from 'libphonenumber-js';

export type { CountryCode } from 'libphonenumber-js';

/**
 * The E.164 form of a number as typed (`+44 7700 900123`, `07700 900123` with `GB`,
 * `(555) 010-1234` with `US`), or undefined when it is not a possible phone number (or national
 * without a default country).
 */
export function normalizePhoneNumber(number: string, defaultCountry?: CountryCode): string | undefined {
  if (typeof number !== 'string' || number.length > 64) return undefined;
  try {
    const p = parsePhoneNumberFromString(number, defaultCountry ? { defaultCountry } : {});
    return p?.isPossible() ? p.number : undefined;
  } catch {
    return undefined;
  }
}
