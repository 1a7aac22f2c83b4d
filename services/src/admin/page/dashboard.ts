/**
 * The dashboard page's module (browser, no framework): sign-in with the admin token (kept in this
 * tab's sessionStorage, sent as a bearer token), the overview polled every 2 s without reloading
 * (not while the tab is hidden),
 * ten minutes of history kept here for the uPlot charts, and the client look-up with its actions.
 * Everything shown is set as text (never HTML): node ids, job names and errors come from Redis.
 * Its types are the admin API's own (../admin-types.ts), imported as types only.
 */
import type UPlot from 'uplot';
import type { ActionResult, ClientView, NodeView, Overview, QueueView } from '../admin-types.js';

/** uPlot's browser build (served at /admin/assets/uPlot.iife.min.js) is a global. */
const uPlot = (globalThis as unknown as { uPlot: typeof UPlot }).uPlot;

const TOKEN_KEY = 'parley.admin.token';
const POLL_MS = 2000;
const HISTORY_MS = 10 * 60_000;
const CHART_HEIGHT = 170;

// --- DOM helpers -------------------------------------------------------------------------------

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`the page has no #${id}`);
  return e as T;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, props: { class?: string; text?: string; title?: string; colSpan?: number } = {}, ...children: Node[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (props.class) e.className = props.class;
  if (props.text !== undefined) e.textContent = props.text;
  if (props.title) e.title = props.title;
  if (props.colSpan && e instanceof HTMLTableCellElement) e.colSpan = props.colSpan;
  for (const c of children) e.append(c);
  return e;
}

const td = (text: string, cls?: string): HTMLTableCellElement => el('td', { text, ...(cls ? { class: cls } : {}) });

// --- formatting --------------------------------------------------------------------------------

const int = new Intl.NumberFormat('en', { maximumFractionDigits: 0 });
const dec = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

const count = (n: number): string => int.format(n);
const perSec = (n: number): string => (n > 0 && n < 10 ? dec.format(n) : int.format(n));

/** Seconds as a latency: "—" without samples, ms below a second, s above, min above two minutes. */
function latency(s: number | null): string {
  if (s === null) return '—';
  if (s < 1) return `${s < 0.01 ? dec.format(s * 1000) : int.format(s * 1000)} ms`;
  if (s < 120) return `${dec.format(s)} s`;
  return `${dec.format(s / 60)} min`;
}

function duration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

const clock = (ms: number): string => new Date(ms).toLocaleTimeString('en-GB');
const dateTime = (ms: number): string => new Date(ms).toLocaleString('en-GB');

// --- the API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, detail: string) {
    super(detail);
  }
}

async function api<T>(path: string, method: 'GET' | 'POST' = 'GET'): Promise<T> {
  const token = sessionStorage.getItem(TOKEN_KEY) ?? '';
  let res: Response;
  try {
    res = await fetch(path, { method, headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'E_NETWORK', 'the server did not answer');
  }
  const body = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string; detail?: string } } | null;
  if (!res.ok) {
    const e = body?.error;
    throw new ApiError(res.status, e?.code ?? `HTTP ${res.status}`, e?.detail ?? e?.message ?? res.statusText);
  }
  return body as T;
}

// --- state -------------------------------------------------------------------------------------

const status = byId('status');
const updated = byId('updated');
let pollTimer: number | undefined;
let signedIn = false;

function say(text: string): void {
  status.textContent = text;
}

function showLogin(error = ''): void {
  signedIn = false;
  window.clearTimeout(pollTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  byId('dash').hidden = true;
  byId('signout').hidden = true;
  byId('login').hidden = false;
  byId('login-error').textContent = error;
  updated.textContent = '';
  say('Sign in with the admin token.');
  byId<HTMLInputElement>('token').focus();
}

function showDashboard(): void {
  signedIn = true;
  byId('login').hidden = true;
  byId('dash').hidden = false;
  byId('signout').hidden = false;
  byId('login-error').textContent = '';
  say('Signed in. The figures update every 2 seconds.');
  charts.resize();
}

/** An API failure while signed in: a refused token signs out; anything else is reported. */
function failed(err: unknown, what: string): void {
  if (err instanceof ApiError && err.status === 401) return showLogin('The admin token was refused. Sign in again.');
  const text = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err);
  say(`Could not ${what} (${text}).`);
}

// --- charts ------------------------------------------------------------------------------------

interface SeriesSpec {
  label: string;
  stroke: string;
  /** Besides colour, a dash pattern tells the lines apart. */
  dash?: number[];
  pick: (o: Overview) => number | null;
}

interface ChartSpec {
  id: string;
  series: SeriesSpec[];
  format: (v: number) => string;
  /** Counts: whole-number ticks only. */
  integer?: boolean;
}

const WHOLE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 1_000_000];

/** A sum over the persist shards or the other queues; null (a gap, "—") when they could not be read. */
const sumQueues = (qs: Overview['queues'], f: (q: QueueView) => number, which: 'persist' | 'others'): number | null =>
  qs ? qs[which].reduce((s, q) => s + f(q), 0) : null;

const CHARTS: ChartSpec[] = [
  {
    id: 'c-rates',
    format: perSec,
    series: [
      { label: 'accepted / s', stroke: '#0b57d0', pick: (o) => o.cluster.rates.accepted },
      { label: 'delivered / s', stroke: '#137333', dash: [6, 3], pick: (o) => o.cluster.rates.delivered },
      { label: 'publishes / s', stroke: '#8e24aa', dash: [2, 3], pick: (o) => o.cluster.rates.publishes },
    ],
  },
  {
    id: 'c-latency',
    format: (ms) => latency(ms / 1000),
    series: [
      { label: 'p50', stroke: '#137333', pick: (o) => ms(o.cluster.latency.p50) },
      { label: 'p95', stroke: '#b06000', dash: [6, 3], pick: (o) => ms(o.cluster.latency.p95) },
      { label: 'p99', stroke: '#b3261e', dash: [2, 3], pick: (o) => ms(o.cluster.latency.p99) },
    ],
  },
  {
    id: 'c-queues',
    format: count,
    integer: true,
    series: [
      { label: 'persist backlog', stroke: '#0b57d0', pick: (o) => o.cluster.persistBacklog },
      // Delayed jobs are not a backlog there: the cleanup job always waits for its next hour.
      { label: 'other queues waiting', stroke: '#b06000', dash: [6, 3], pick: (o) => sumQueues(o.queues, (q) => q.waiting + q.prioritized, 'others') },
      { label: 'pending (in flight)', stroke: '#137333', dash: [2, 3], pick: (o) => o.cluster.pending },
    ],
  },
];

function ms(s: number | null): number | null {
  return s === null ? null : s * 1000;
}

const charts = (() => {
  const times: number[] = [];
  const values: Array<Array<Array<number | null>>> = CHARTS.map((c) => c.series.map(() => []));
  const plots: Array<UPlot | null> = CHARTS.map(() => null);
  const xRange = (): [number, number] => {
    const last = times.at(-1) ?? Date.now() / 1000;
    return [Math.min(times[0] ?? last, last - 20), last];
  };

  const make = (i: number): UPlot | null => {
    const spec = CHARTS[i]!;
    const target = byId(spec.id);
    if (typeof uPlot !== 'function' || target.clientWidth === 0) return null;
    const opts: UPlot.Options = {
      width: target.clientWidth,
      height: CHART_HEIGHT,
      scales: {
        // From the oldest point kept to the newest, at least 20 s wide (uPlot would show a
        // lone first point on a scale of years).
        x: { time: true, range: () => xRange() },
        y: { range: (_u, min, max) => [0, Math.max(max, min, 1) * 1.1] },
      },
      axes: [
        { stroke: '#4d5560', grid: { stroke: '#e3e6ea' } },
        {
          stroke: '#4d5560', grid: { stroke: '#e3e6ea' }, size: 64, values: (_u, vals) => vals.map((v) => spec.format(v)),
          ...(spec.integer ? { incrs: WHOLE_STEPS } : {}),
        },
      ],
      series: [
        { value: (_u, v) => (v === null ? '—' : clock(v * 1000)) },
        ...spec.series.map((s) => ({
          label: s.label, stroke: s.stroke, width: 2, ...(s.dash ? { dash: s.dash } : {}),
          value: (_u: UPlot, v: number | null) => (v === null || v === undefined ? '—' : spec.format(v)),
        })),
      ],
      cursor: { drag: { x: false, y: false } },
      // Labels only: the latest values are the text under each chart (read by screen readers too).
      legend: { live: false },
    };
    return new uPlot(opts, [times, ...values[i]!] as UPlot.AlignedData, target);
  };

  return {
    add(o: Overview): void {
      times.push(o.now / 1000);
      CHARTS.forEach((c, i) => c.series.forEach((s, j) => values[i]![j]!.push(s.pick(o))));
      while (times.length > 0 && (o.now / 1000 - times[0]!) * 1000 > HISTORY_MS) {
        times.shift();
        for (const v of values) for (const series of v) series.shift();
      }
      CHARTS.forEach((c, i) => {
        plots[i] ??= make(i);
        plots[i]?.setData([times, ...values[i]!] as UPlot.AlignedData);
        const now = c.series.map((s, j) => `${s.label} ${(() => { const v = values[i]![j]!.at(-1); return v === null || v === undefined ? '—' : c.format(v); })()}`);
        byId(`${c.id}-now`).textContent = `Now: ${now.join(', ')}`;
      });
    },
    resize(): void {
      CHARTS.forEach((c, i) => {
        const w = byId(c.id).clientWidth;
        if (w > 0) plots[i]?.setSize({ width: w, height: CHART_HEIGHT });
      });
    },
  };
})();

window.addEventListener('resize', () => charts.resize());

// --- the overview ------------------------------------------------------------------------------

function setText(id: string, text: string): void {
  byId(id).textContent = text;
}

function nodeRow(n: NodeView, now: number): HTMLTableRowElement {
  const r = n.report;
  const tr = el('tr', { class: n.state });
  const ago = `last report ${duration(n.ageMs)} ago`;
  tr.append(el('td', {}, el('span', { class: 'id', text: n.nodeId }), el('span', { class: 'host', text: r ? `${r.host} · pid ${r.pid} · v${r.version}` : '' })));
  if (!r) {
    tr.append(td('—'), el('td', { colSpan: 10, class: 'empty', text: 'No report: the process stopped or cannot reach Redis.' }));
  } else {
    tr.append(
      td(r.roles.join(', ')),
      td(duration(now - r.startedAt)),
      td(count(r.connections), 'num'),
      td(perSec(r.rates.publishes), 'num'),
      td(perSec(r.rates.deliveries), 'num'),
      td(count(r.totals.accepted), 'num'),
      td(count(r.totals.delivered), 'num'),
      td(count(r.pending), 'num'),
      td(latency(r.latency.p50), 'num'),
      td(latency(r.latency.p95), 'num'),
      td(latency(r.latency.p99), 'num'),
    );
  }
  const label = n.state === 'live' ? 'live' : `${n.state}: ${ago}`;
  tr.append(el('td', {}, el('span', { class: `state-${n.state}`, text: label })));
  return tr;
}

function renderNodes(o: Overview): void {
  const body = byId('nodes-body');
  const rows = o.nodes.map((n) => nodeRow(n, o.now));
  if (rows.length === 0) rows.push(el('tr', {}, el('td', { colSpan: 13, class: 'empty', text: 'No node has reported yet.' })));
  body.replaceChildren(...rows);
}

function renderQueues(o: Overview): void {
  const body = byId('queues-body');
  if (!o.queues) {
    body.replaceChildren(el('tr', {}, el('td', { colSpan: 5, class: 'empty', text: 'Redis did not answer in time.' })));
    return;
  }
  const { persist, others } = o.queues;
  const sum = (f: (q: QueueView) => number): number => persist.reduce((s, q) => s + f(q), 0);
  const rows: Array<[string, QueueView]> = [];
  if (persist.length) {
    rows.push([`persist (${persist.length} shards)`, {
      name: 'persist', waiting: sum((q) => q.waiting + q.prioritized), active: sum((q) => q.active), delayed: sum((q) => q.delayed), prioritized: 0, failed: sum((q) => q.failed),
    }]);
  }
  for (const q of others) rows.push([q.name, { ...q, waiting: q.waiting + q.prioritized }]);
  body.replaceChildren(...rows.map(([name, q]) => el('tr', {}, td(name), td(count(q.waiting), 'num'), td(count(q.active), 'num'), td(count(q.delayed), 'num'), td(count(q.failed), 'num'))));
}

function renderFailed(o: Overview): void {
  const body = byId('failed-body');
  const recent = o.failedJobs?.recent ?? [];
  if (!o.failedJobs) body.replaceChildren(el('tr', {}, el('td', { colSpan: 5, class: 'empty', text: 'Redis did not answer in time.' })));
  else if (recent.length === 0) body.replaceChildren(el('tr', {}, el('td', { colSpan: 5, class: 'empty', text: 'No failed jobs.' })));
  else {
    body.replaceChildren(...recent.map((j) => el('tr', {},
      td(j.at ? dateTime(j.at) : '—'), td(j.queue), el('td', {}, el('span', { class: 'id', text: `${j.name} #${j.id}` })), td(count(j.attempts), 'num'), td(j.reason, 'reason'))));
  }
}

function render(o: Overview): void {
  const c = o.cluster;
  const live = o.nodes.filter((n) => n.state === 'live').length;
  setText('k-nodes', o.nodes.length === live ? count(live) : `${count(live)} of ${count(o.nodes.length)}`);
  setText('k-connections', count(c.connections));
  setText('k-accepted', perSec(c.rates.accepted));
  setText('k-delivered', perSec(c.rates.delivered));
  setText('k-pending', count(c.pending));
  // Null when the queues could not be read: unknown, not zero.
  setText('k-backlog', c.persistBacklog === null ? '—' : count(c.persistBacklog));
  setText('k-p99', latency(c.latency.p99));
  setText('k-failed', o.failedJobs ? count(o.failedJobs.total) : '—');
  renderNodes(o);
  renderQueues(o);
  renderFailed(o);
  charts.add(o);
  updated.textContent = `Updated ${clock(o.now)}`;
}

async function poll(): Promise<void> {
  // A hidden tab does not poll (no requests, no load on Redis); it polls again once shown.
  if (!signedIn || document.hidden) return;
  try {
    render(await api<Overview>('/admin/api/overview'));
    if (status.textContent?.startsWith('Could not')) say('Updating again.');
  } catch (err) {
    failed(err, 'update the figures');
  } finally {
    window.clearTimeout(pollTimer);
    if (signedIn && !document.hidden) pollTimer = window.setTimeout(() => void poll(), POLL_MS);
  }
}

document.addEventListener('visibilitychange', () => {
  window.clearTimeout(pollTimer);
  // Shown again: at once, then every 2 s.
  if (signedIn && !document.hidden) void poll();
});

// --- sign-in -----------------------------------------------------------------------------------

byId<HTMLFormElement>('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = byId<HTMLInputElement>('token');
  const token = input.value.trim();
  if (token.length < 32) {
    byId('login-error').textContent = 'The admin token has at least 32 characters.';
    input.focus();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  input.value = '';
  void signIn();
});

async function signIn(): Promise<void> {
  try {
    const first = await api<Overview>('/admin/api/overview');
    showDashboard();
    render(first);
    window.clearTimeout(pollTimer);
    if (!document.hidden) pollTimer = window.setTimeout(() => void poll(), POLL_MS);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showLogin('That is not the admin token.');
    else if (err instanceof ApiError && err.status === 429) showLogin('Too many failed sign-ins from this address: wait a few minutes and try again.');
    else showLogin(`The server did not answer (${err instanceof Error ? err.message : String(err)}).`);
  }
}

byId('signout').addEventListener('click', () => showLogin());

// --- client look-up ----------------------------------------------------------------------------

let current: ClientView | null = null;

function field(dl: HTMLElement, name: string, value: string): void {
  dl.append(el('dt', { text: name }), el('dd', { text: value }));
}

function renderClient(c: ClientView): void {
  current = c;
  byId('client-title').textContent = `Device ${c.deviceId}`;
  const dl = byId('client-fields');
  dl.replaceChildren();
  field(dl, 'User', c.userId);
  field(dl, 'Name', c.name);
  field(dl, 'Added', dateTime(c.createdAt));
  field(dl, 'Token', c.revokedAt === null ? 'valid' : `revoked ${dateTime(c.revokedAt)}`);
  field(dl, 'Connection', c.connection
    ? `connected to ${c.connection.nodeId}${c.connection.since ? ` since ${dateTime(c.connection.since)}` : ''}`
    : 'not connected');
  field(dl, 'Queued messages', `${count(c.queued.count)}${c.queued.more ? '+' : ''}`);
  field(dl, 'Last error', c.lastError ? `${c.lastError.code} at ${dateTime(c.lastError.at)}` : 'none');
  byId<HTMLButtonElement>('disconnect').disabled = c.connection === null;
  byId<HTMLButtonElement>('revoke').disabled = c.revokedAt !== null;
  byId('client-result').hidden = false;
}

async function lookUp(deviceId: string): Promise<boolean> {
  try {
    renderClient(await api<ClientView>(`/admin/api/clients/${encodeURIComponent(deviceId)}`));
    return true;
  } catch (err) {
    current = null;
    byId('client-result').hidden = true;
    if (err instanceof ApiError && err.status === 404) setText('client-message', `No device ${deviceId}.`);
    else if (err instanceof ApiError && err.code === 'E_VALIDATION') setText('client-message', 'That is not a device id (d and 12 characters).');
    else if (err instanceof ApiError && err.status === 401) failed(err, 'look up the device');
    else setText('client-message', `Could not look up the device (${err instanceof Error ? err.message : String(err)}).`);
    return false;
  }
}

byId<HTMLFormElement>('client-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const id = byId<HTMLInputElement>('device').value.trim();
  setText('client-message', '');
  void lookUp(id).then((ok) => { if (ok) setText('client-message', `Found ${id}.`); });
});

byId('disconnect').addEventListener('click', () => {
  const c = current;
  if (!c) return;
  void api<ActionResult>(`/admin/api/clients/${encodeURIComponent(c.deviceId)}/disconnect`, 'POST').then(
    async (r) => {
      setText('client-message', r.done ? `Disconnected ${c.deviceId}. It may connect again at once.` : `${c.deviceId} was not connected.`);
      await lookUp(c.deviceId);
    },
    (err: unknown) => failed(err, 'disconnect the device'),
  );
});

const dialog = byId<HTMLDialogElement>('confirm-revoke');
byId('revoke').addEventListener('click', () => { if (current) dialog.showModal(); });
byId('confirm-cancel').addEventListener('click', () => dialog.close());
byId('confirm-ok').addEventListener('click', () => {
  dialog.close();
  const c = current;
  if (!c) return;
  void api<ActionResult>(`/admin/api/clients/${encodeURIComponent(c.deviceId)}/revoke`, 'POST').then(
    async () => {
      setText('client-message', `Revoked ${c.deviceId}: its token no longer works and it was disconnected.`);
      await lookUp(c.deviceId);
    },
    (err: unknown) => failed(err, 'revoke the device'),
  );
});

// --- start -------------------------------------------------------------------------------------

if (sessionStorage.getItem(TOKEN_KEY)) void signIn();
else showLogin();
