// The dashboard page (issue 32). Everything that came from outside (model ids, reasons, process names,
// other agents' answers) is set with textContent, never as HTML. Live: one event stream (/api/events).
/* global uPlot */

const $ = (id) => document.getElementById(id);

/**
 * The status token: `usepod-agent dashboard` prints `http://HOST:PORT/#token=...`. A fragment never
 * reaches a server; it is read once, kept for this tab (sessionStorage is per origin: a page on another
 * port cannot read it) and dropped from the address bar and the history. It is sent as a header, never
 * as a cookie (a browser sends cookies to every port of a host).
 */
const token = (() => {
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
    try {
      sessionStorage.setItem('usepod-token', fromHash);
    } catch {
      // Storage off: the token lasts as long as this page.
    }
    history.replaceState(null, '', location.pathname + location.search);
    return fromHash;
  }
  try {
    return sessionStorage.getItem('usepod-token');
  } catch {
    return null;
  }
})();
const auth = { authorization: `Bearer ${token}` };

/** Without a (valid) token the page says how to get one, once. */
function needToken() {
  $('need-token').hidden = false;
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
    try {
      const r = await fetch('/api/earnings', { headers: auth });
      if (r.status === 401) needToken();
      if (r.ok) renderEarnings(await r.json());
    } catch {
      // The agent is away; the event stream says so and reconnects.
    }
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
  let agents;
  try {
    const r = await fetch('/api/fleet', { headers: auth });
    if (r.status === 401) needToken();
    if (!r.ok) return;
    agents = (await r.json()).rows;
  } catch {
    return;
  }
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
  try {
    const r = await fetch(path, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify(body ?? {}),
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) {
      out.textContent = j.error ?? `refused (HTTP ${r.status})`;
      return undefined;
    }
    out.textContent = '';
    return j;
  } catch (err) {
    out.textContent = String(err);
    return undefined;
  }
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
 * browser reconnects by itself while the agent is away; an answer other than the stream (401, too many
 * pages) closes it, and the page asks once whether the token is the reason.
 */
function connect() {
  const live = $('live');
  const source = new EventSource(`/api/events?token=${encodeURIComponent(token)}`);
  source.addEventListener('state', (ev) => {
    live.textContent = `live · ${new Date().toLocaleTimeString()}`;
    renderState(JSON.parse(ev.data));
  });
  source.addEventListener('error', async () => {
    live.textContent = 'reconnecting…';
    if (source.readyState !== EventSource.CLOSED) return;
    const r = await fetch('/api/state', { headers: auth }).catch(() => undefined);
    if (r?.status === 401) needToken();
    else setTimeout(connect, 5000);
  });
}

if (token) {
  connect();
  loadEarnings();
  // Jobs that ended within the server's few seconds of caching are summed at the next of these.
  setInterval(loadEarnings, 10_000);
  loadFleet();
  setInterval(loadFleet, 5000);
} else {
  needToken();
}
