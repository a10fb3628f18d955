// The dashboard page (issue 32). Everything that came from outside (model ids, reasons, process names,
// other agents' answers) is set with textContent, never as HTML. Live: one event stream (/api/events).
/* global uPlot */

const $ = (id) => document.getElementById(id);

/**
 * The status token: `usepod-agent dashboard` prints `http://HOST:PORT/#token=...`. A fragment never
 * reaches a server; it is read once, kept for this tab while the agent proves itself (`keep`;
 * sessionStorage is per origin: a page on another port cannot read it) and dropped from the address bar
 * and the history. It is sent as a header, never
 * as a cookie (a browser sends cookies to every port of a host).
 */
const STORE = 'usepod-token';
let token = (() => {
  // An old address's ?token= reached the agent once (which ignores it now): out of the address bar too.
  const query = new URLSearchParams(location.search);
  if (query.has('token')) {
    query.delete('token');
    history.replaceState(
      null,
      '',
      `${location.pathname}${query.size > 0 ? `?${query}` : ''}${location.hash}`,
    );
  }
  const fromHash = new URLSearchParams(location.hash.slice(1)).get('token');
  if (fromHash) {
    history.replaceState(null, '', location.pathname + location.search);
    return fromHash;
  }
  try {
    return sessionStorage.getItem(STORE);
  } catch {
    return null;
  }
})();

/**
 * The tab keeps the token only while the agent is proven to answer: a reload while another program
 * holds the port would run that program's script in this origin, which could read sessionStorage.
 */
function keep(on) {
  try {
    if (on) sessionStorage.setItem(STORE, token);
    else sessionStorage.removeItem(STORE);
  } catch {
    // Storage off: the token lasts as long as this page.
  }
}

/**
 * Whoever holds the port gets what the page sends, and while the agent restarts (an update, a crash)
 * another local user may hold it. So before the token goes anywhere (first load, every reconnect) the
 * page asks `/api/proof` with a fresh nonce and checks the answer is HMAC-SHA256(token, context + nonce),
 * which only the agent can make. Without crypto.subtle (plain http to another machine: not a secure
 * context) nothing can be checked: the token goes on the first load only, the one the owner just opened.
 */
const subtle = globalThis.crypto?.subtle;
const PROOF_CONTEXT = 'usepod-agent status proof v1\n';
/** The agent that answers now proved it holds the token; any failure clears it. */
let proven = false;
/**
 * The page is being left (a reload, the tab closed): the browser aborts its stream and requests before
 * `pagehide`, which is no lost agent, and the token stays for the reloaded page. A navigation that does
 * not happen after all (a download) leaves the page here: it counts again a few seconds on.
 */
let leaving = false;
addEventListener('beforeunload', () => {
  leaving = true;
  setTimeout(() => {
    leaving = false;
  }, 3000);
});
addEventListener('pageshow', (ev) => {
  leaving = false;
  // Back from the browser's page cache: its stream was closed meanwhile, and the port may be another's.
  if (ev.persisted) lost();
});
/** The first load sent the token unproven (no crypto.subtle): never again. */
let sentUnproven = false;
/** The agent said the token is not its own (401): the page stops. */
let refused = false;

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const utf8 = (text) => new TextEncoder().encode(text);

/** 'ok', 'away' (nothing answers: the agent restarts) or 'other' (an answer that proves nothing). */
async function prove() {
  const nonce = hex(crypto.getRandomValues(new Uint8Array(32)));
  let answer;
  try {
    const r = await fetch(`/api/proof?nonce=${nonce}`, { signal: AbortSignal.timeout(10_000) });
    answer = r.ok ? await r.json() : undefined;
  } catch (err) {
    return err instanceof SyntaxError ? 'other' : 'away';
  }
  const proof = answer?.proof;
  if (typeof proof !== 'string' || !/^[0-9a-f]{64}$/.test(proof)) return 'other';
  try {
    const key = await subtle.importKey('raw', utf8(token), { name: 'HMAC', hash: 'SHA-256' }, false, [
      'verify',
    ]);
    const mac = Uint8Array.from(proof.match(/../g), (h) => Number.parseInt(h, 16));
    return (await subtle.verify('HMAC', key, mac, utf8(PROOF_CONTEXT + nonce))) ? 'ok' : 'other';
  } catch {
    return 'other';
  }
}

/** A request carrying the token, made only while the agent is proven; a network failure is a loss. */
async function authed(path, init = {}) {
  if (!proven) return undefined;
  try {
    const r = await fetch(path, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } });
    if (r.status === 401) needToken();
    return r;
  } catch {
    lost();
    return undefined;
  }
}

/** Without a (valid) token the page says how to get one, once, and sends nothing more. */
function needToken() {
  refused = true;
  proven = false;
  closeStream();
  $('need-token').hidden = false;
  $('not-agent').hidden = true;
  $('live').textContent = 'no token';
}

/** An element with text (never HTML) and an optional class. */
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function rows(tableId, items, cells, empty) {
  const body = $(tableId).tBodies[0];
  const out = [];
  if (items.length === 0) {
    const tr = el('tr');
    const td = el('td', empty, 'muted');
    td.colSpan = $(tableId).tHead.rows[0].cells.length;
    tr.append(td);
    out.push(tr);
  }
  for (const item of items) {
    const tr = el('tr');
    for (const c of cells(item)) {
      const td = typeof c === 'object' && c !== null && 'text' in c ? el('td', c.text, c.cls) : el('td', c);
      tr.append(td);
    }
    out.push(tr);
  }
  body.replaceChildren(...out);
}

const usdc = (n) => (typeof n === 'number' ? `${n.toFixed(n >= 100 ? 2 : 4)} USDC` : '–');
const num = (n, d = 0) => (typeof n === 'number' ? n.toFixed(d) : '–');
const ago = (iso) => {
  if (!iso) return '–';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
};
const secs = (ms) => (ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms / 1000)} s`);

function renderState(s) {
  if (!s.ready) return;
  $('agent-name').textContent = `${s.agent.version}${s.agent.provider_id ? ` · ${s.agent.provider_id}` : ''}`;
  const card = $('state-card');
  card.dataset.state = s.state.code;
  $('state-title').textContent = s.state.title;
  $('state-detail').textContent = s.state.detail;
  $('holds').replaceChildren(
    ...s.holds.map((h) =>
      el('li', `${h.by}: ${h.reason}${h.until ? ` (until ${new Date(h.until).toLocaleString()})` : ''}`),
    ),
  );
  const ownerHold = s.holds.some((h) => h.by === 'owner');
  $('pause').disabled = ownerHold;
  $('resume').disabled = s.holds.length === 0;

  const facts = [
    ['state', s.session.state],
    ['coordinator', s.session.coordinator],
    [
      'connected',
      s.session.connected
        ? `yes, since ${s.session.since ? new Date(s.session.since).toLocaleString() : '–'}`
        : 'no',
    ],
    ['provider', s.agent.provider_id ?? '–'],
    ['fingerprint', s.agent.fingerprint ?? '–'],
    ['uptime', `${Math.round(s.agent.uptime_s / 60)} min`],
  ];
  if (s.session.last_disconnect)
    facts.push([
      'last disconnect',
      `${s.session.last_disconnect.why} (${ago(s.session.last_disconnect.at)})`,
    ]);
  $('session').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', k), el('dd', v)]));

  const models = s.backends.flatMap((b) =>
    b.models.length === 0 ? [{ b, m: undefined }] : b.models.map((m) => ({ b, m })),
  );
  rows(
    'models',
    models,
    ({ b, m }) => [
      `${b.label} (${b.kind})`,
      m ? m.id : '–',
      m
        ? m.advertised
          ? { text: 'advertised', cls: 'ok' }
          : { text: m.why ?? 'not advertised', cls: 'warn' }
        : { text: b.healthy ? 'up, no model' : `down: ${b.detail ?? ''}`, cls: b.healthy ? 'warn' : 'bad' },
      { text: m?.context_window ?? '–', cls: 'num' },
      { text: m?.capacity ?? '–', cls: 'num' },
      { text: m?.ttft_ms != null ? `${num(m.ttft_ms)} ms` : '–', cls: 'num' },
      { text: m?.tokens_per_second != null ? num(m.tokens_per_second, 1) : '–', cls: 'num' },
    ],
    'no backend configured',
  );
  rows(
    'in-flight',
    s.jobs.in_flight,
    (j) => [
      j.model,
      j.backend ?? '(routing)',
      { text: j.tokens, cls: 'num' },
      { text: secs(j.age_ms), cls: 'num' },
    ],
    'none now',
  );
  rows(
    'last-jobs',
    s.jobs.last,
    (j) => [
      ago(j.at),
      j.model,
      j.backend ?? '–',
      j.outcome === 'done'
        ? { text: 'served', cls: 'ok' }
        : {
            text: j.refusal
              ? `missed: ${j.refusal}`
              : `${j.outcome}${j.error_code ? `: ${j.error_code}` : ''}`,
            cls: j.outcome === 'cancelled' ? 'warn' : 'bad',
          },
      { text: j.output_tokens, cls: 'num' },
      { text: secs(j.duration_ms), cls: 'num' },
    ],
    'no job since the agent started',
  );
  $('earn-start').textContent = usdc(s.earnings.since_start_usdc);
  if (s.earnings.today) $('earn-today').textContent = usdc(s.earnings.today.earnings_usdc);
  if (s.earnings.last_7_days) $('earn-7d').textContent = usdc(s.earnings.last_7_days.earnings_usdc);
  $('alerts-card').hidden = s.alerts.length === 0;
  $('alerts').replaceChildren(
    ...s.alerts.map((a) => {
      const li = el('li', `${a.title}: ${a.message}`, a.severity === 'critical' ? 'bad' : 'warn');
      return li;
    }),
  );
  const lastId = s.jobs.last[0]?.at ?? '';
  if (lastId !== lastJobSeen) {
    lastJobSeen = lastId;
    loadEarnings();
  }
}
let lastJobSeen = '';

// Charts.
const charts = {};
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

const pad = (n) => String(n).padStart(2, '0');
/** The ledger's group names are local days (`2026-12-06`) and hours (`2026-12-06 13:00`). */
const dayKey = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
const hourKey = (d) => `${dayKey(d)} ${pad(d.getHours())}:00`;

/** Every day (or hour) of the window, with 0 where the ledger has no row: gaps read as idle, not missing. */
function buckets(groups, count, step) {
  const by = new Map(groups.map((g) => [g.group, g.earnings_usdc]));
  const xs = [];
  const ys = [];
  const now = new Date();
  for (let i = count - 1; i >= 0; i--) {
    const d = new Date(now);
    if (step === 'day') {
      d.setHours(0, 0, 0, 0);
      d.setDate(d.getDate() - i);
    } else {
      d.setMinutes(0, 0, 0);
      d.setHours(d.getHours() - i);
    }
    xs.push(d.getTime() / 1000);
    ys.push(by.get(step === 'day' ? dayKey(d) : hourKey(d)) ?? 0);
  }
  return [xs, ys];
}

/** USDC on an axis: small amounts keep their digits. */
const usdcTick = (_u, splits) =>
  splits.map((v) => (v === 0 ? '0' : v >= 1 ? v.toFixed(2) : v.toPrecision(2)));

function chart(id, xs, ys, bars) {
  const host = $(id);
  const data = [xs, ys];
  const width = Math.max(240, host.clientWidth);
  const halfStep = xs.length > 1 ? (xs[1] - xs[0]) / 2 : 1800;
  if (charts[id]) {
    charts[id].setData(data);
    return;
  }
  const opts = {
    width,
    height: 160,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      // Half a step either side: the first and last bars are drawn whole.
      x: { time: true, range: (_u, min, max) => [min - halfStep, max + halfStep] },
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
    },
    axes: [
      { stroke: css('--muted'), grid: { stroke: css('--line') }, ticks: { stroke: css('--line') } },
      {
        stroke: css('--muted'),
        grid: { stroke: css('--line') },
        ticks: { stroke: css('--line') },
        size: 72,
        values: usdcTick,
      },
    ],
    series: [
      {},
      {
        label: 'USDC',
        stroke: css('--accent'),
        fill: `${css('--accent')}55`,
        width: 2,
        points: { show: !bars, size: 4 },
        ...(bars ? { paths: uPlot.paths.bars({ size: [0.6, 40] }) } : {}),
      },
    ],
  };
  charts[id] = new uPlot(opts, data, host);
}

window.addEventListener('resize', () => {
  for (const [id, c] of Object.entries(charts))
    c.setSize({ width: Math.max(240, $(id).clientWidth), height: 160 });
});

let earningsTimer;
function loadEarnings() {
  clearTimeout(earningsTimer);
  earningsTimer = setTimeout(async () => {
    const r = await authed('/api/earnings');
    if (r?.ok) renderEarnings(await r.json().catch(() => ({ error: 'the agent sent no earnings' })));
  }, 300);
}

function renderEarnings(e) {
  const note = $('earn-note');
  if (e.error) {
    note.textContent = e.error;
    return;
  }
  note.textContent = '';
  $('earn-today').textContent = usdc(e.totals.today);
  $('earn-7d').textContent = usdc(e.totals.d7);
  $('earn-30d').textContent = usdc(e.totals.d30);
  const days = e.by_day;
  chart('chart-day', ...buckets(days, 30, 'day'), true);
  const hours = e.by_hour;
  chart('chart-hour', ...buckets(hours, 48, 'hour'), false);
  $('chart-day').dataset.points = String(days.length);
  $('chart-hour').dataset.points = String(hours.length);
  rows(
    'by-model',
    e.by_model,
    (m) => [
      m.group,
      { text: m.served, cls: 'num' },
      { text: m.output_tokens, cls: 'num' },
      { text: num(m.earnings_usdc, 6), cls: 'num' },
    ],
    'no job in 30 days',
  );
  $('missed').replaceChildren(
    ...(e.missed.length === 0
      ? [el('li', 'none', 'ok')]
      : e.missed.map((m) => {
          const li = el('li', m.detail, m.level === 'ok' ? 'ok' : 'warn');
          if (m.fix) li.append(el('span', `fix: ${m.fix}`, 'fix'));
          return li;
        })),
  );
}

async function loadFleet() {
  const r = await authed('/api/fleet');
  const agents = r?.ok ? (await r.json().catch(() => ({}))).rows : undefined;
  if (!Array.isArray(agents)) return;
  $('fleet-card').hidden = agents.length < 2;
  rows(
    'fleet',
    agents,
    (a) => [
      a.url && a.url !== '(this agent)' ? `${a.name} (${a.url})` : a.name,
      a.reachable
        ? { text: a.title ?? a.state, cls: a.state === 'online' ? 'ok' : 'warn' }
        : { text: a.error ?? 'unreachable', cls: 'bad' },
      a.models.join(', ') || '–',
      { text: a.in_flight ?? '–', cls: 'num' },
      { text: a.today_usdc == null ? '–' : usdc(a.today_usdc), cls: 'num' },
      a.last_job ? `${a.last_job.model}, ${a.last_job.outcome}, ${ago(a.last_job.at)}` : '–',
      a.alerts.join('; ') || '–',
    ],
    'no agent',
  );
}

async function act(path, body) {
  const out = $('action-result');
  out.textContent = '…';
  const r = await authed(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  if (!r) {
    out.textContent = 'not connected to the agent: nothing was sent';
    return undefined;
  }
  const j = await r.json().catch(() => ({}));
  if (!r.ok) {
    out.textContent = j.error ?? `refused (HTTP ${r.status})`;
    return undefined;
  }
  out.textContent = '';
  return j;
}

$('pause').addEventListener('click', async () => {
  const minutes = $('pause-for').value;
  await act('/api/pause', minutes ? { minutes: Number(minutes) } : {});
});
$('resume').addEventListener('click', () => act('/api/resume'));
$('selftest').addEventListener('click', async () => {
  $('selftest').disabled = true;
  $('action-result').textContent = 'self-tests running…';
  const j = await act('/api/selftest');
  $('selftest').disabled = false;
  if (j?.results) {
    const bad = j.results.filter((r) => !r.ok).length;
    $('action-result').textContent = `${j.results.length} self-test(s), ${bad} failed`;
  }
});

/**
 * Live updates. An EventSource cannot send a header, so its URL carries the token (`?token=`, taken on
 * this one route): it goes to this origin only, is no page's address (no history, no Referer). The
 * browser's own reconnecting would send that URL to whoever holds the port by then: the page closes the
 * stream at its first error and reconnects itself, after a new proof.
 */
let source;
let retryTimer;
/** The wait before the next proof: doubles while the port does not answer as the agent, from 1 to 10 s. */
let backoff = 1000;

function closeStream() {
  clearTimeout(retryTimer);
  source?.close();
  source = undefined;
}

/** First load and every reconnect: the proof (or the one unproven first load), then the token. */
async function start() {
  if (refused) return;
  if (!subtle) {
    if (sentUnproven) {
      gone();
      return;
    }
    sentUnproven = true;
  } else {
    const found = await prove();
    if (refused) return;
    if (found !== 'ok') {
      keep(false);
      $('not-agent').hidden = found !== 'other';
      $('live').textContent = found === 'other' ? 'not the agent: token not sent' : 'reconnecting…';
      retryTimer = setTimeout(start, backoff);
      backoff = Math.min(backoff * 2, 10_000);
      return;
    }
  }
  proven = true;
  keep(true);
  $('not-agent').hidden = true;
  connect();
  loadEarnings();
  loadFleet();
}

/** The agent went away (or a request failed): nothing more is sent until it is proven again. */
function lost() {
  if (!proven) return;
  proven = false;
  closeStream();
  if (leaving) {
    retryTimer = setTimeout(start, backoff);
    return;
  }
  keep(false);
  if (!subtle) {
    gone();
    return;
  }
  $('live').textContent = 'reconnecting…';
  retryTimer = setTimeout(start, backoff);
  backoff = Math.min(backoff * 2, 10_000);
}

/** Lost without crypto.subtle: nothing can prove the next answer is the agent's, so the page stops. */
function gone() {
  token = null;
  keep(false);
  $('lost').hidden = false;
  $('live').textContent = 'connection lost';
}

function connect() {
  const live = $('live');
  const stream = new EventSource(`/api/events?token=${encodeURIComponent(token)}`);
  source = stream;
  stream.addEventListener('state', (ev) => {
    backoff = 1000;
    live.textContent = `live · ${new Date().toLocaleTimeString()}`;
    renderState(JSON.parse(ev.data));
  });
  // Closed at once, before the browser retries by itself (an answer other than the stream: 401, too
  // many pages, or the agent gone): the next try starts with a proof.
  stream.addEventListener('error', () => {
    if (source !== stream) return;
    stream.close();
    lost();
  });
}

if (token) {
  start();
  // Jobs that ended within the server's few seconds of caching are summed at the next of these.
  setInterval(loadEarnings, 10_000);
  setInterval(loadFleet, 5000);
} else {
  needToken();
}
