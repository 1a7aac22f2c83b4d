/** SmsSender port: the console adapter (development: the code goes to the log) and an HTTP webhook. */
import type { Logger } from 'pino';

export interface SmsSender {
  send(phone: string, text: string): Promise<void>;
}

export function consoleSms(log: Logger): SmsSender {
  return {
    async send(phone, text) {
      // Development adapter: printing the code is its whole purpose. Production uses the webhook.
      log.info({ sms: { to: phone, text } }, 'SMS (console adapter)');
    },
  };
}

/** POSTs `{ to, text }` as JSON to the URL; any non-2xx answer is a failure. */
export function webhookSms(url: string, timeoutMs = 5000): SmsSender {
  return {
    async send(phone, text) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ to: phone, text }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) throw new Error(`SMS webhook answered ${res.status}`);
    },
  };
}
