// live.js keeps a server-rendered iotdash page current over /ws.
//
// The page is complete without it. This module connects to /ws, subscribes
// to what the page shows (<body data-live="*"> or one device id), and
// updates values, statuses, counts and last-seen ages in place. Updates are
// coalesced: each frame of the screen draws only the latest of each, and a
// hidden tab draws nothing. A device the page does not show yet, a gap in
// the stream, or a reconnection makes it fetch the page again and swap in
// its <main>. When the connection drops it says so in a banner and
// reconnects with backoff.
//
// It finds what to update by data attributes the templates render:
// [data-device] per device, [data-metric] with [data-value] per metric,
// time[data-ms] for instants, [data-count] for the counts. It says how the
// connection is on <body data-live-state="connected|disconnected">.

const live = document.body.dataset.live;

// The server's clock minus ours, so that ages agree with the server.
let offset = 0;
function syncClock(doc) {
  const now = Number(doc.body.dataset.now);
  if (now > 0) offset = now - Date.now();
}
const serverNow = () => Date.now() + offset;

// Values formatted as the server formats them (views.formatValue).
export function formatValue(v) {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  const decimals = a < 100 ? 2 : a < 1000 ? 1 : 0;
  let s = v.toFixed(decimals);
  if (decimals > 0) s = s.replace(/\.?0+$/, '');
  return s === '-0' ? '0' : s;
}

// Ages said as the server says them (views.relative).
export function relative(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

const absolute = (ms) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';

const statusWords = { online: ['●', 'Online'], stale: ['◐', 'Stale'], offline: ['○', 'Offline'] };

// What has arrived and is not drawn yet: only the latest of each.
const pending = {
  values: new Map(), // "device\nmetric" -> reading
  status: new Map(), // device -> status
  seen: new Map(), // device -> server time it was last heard from
};

let drawScheduled = false;
function scheduleDraw() {
  if (drawScheduled || document.hidden) return;
  drawScheduled = true;
  requestAnimationFrame(draw);
}

const cards = new Map(); // device id -> element, reset when <main> is swapped
function cardFor(id) {
  let el = cards.get(id);
  if (!el || !el.isConnected) {
    el = document.querySelector(`[data-device="${CSS.escape(id)}"]`);
    if (el) cards.set(id, el);
  }
  return el;
}

function draw() {
  drawScheduled = false;
  if (document.hidden) return; // visibilitychange draws when it is shown again
  let missing = false;
  let statusChanged = false;
  for (const r of pending.values.values()) {
    const card = cardFor(r.d);
    if (!card) { missing = true; continue; }
    const el = card.querySelector(`[data-metric="${CSS.escape(r.m)}"]`);
    if (!el) { missing = true; continue; }
    drawValue(el, r);
  }
  for (const [id, ms] of pending.seen) {
    const t = cardFor(id)?.querySelector('time[data-testid="last-seen"]');
    if (t && ms > Number(t.dataset.ms)) setTime(t, ms);
  }
  for (const [id, s] of pending.status) {
    const card = cardFor(id);
    if (!card) { missing = true; continue; }
    if (card.dataset.status !== s) {
      drawStatus(card, s);
      statusChanged = true;
    }
  }
  pending.values.clear();
  pending.seen.clear();
  pending.status.clear();
  if (statusChanged) recount();
  // A device or metric the page does not show yet: the server renders it.
  if (missing) refreshSoon();
}

function drawValue(el, r) {
  if (r.t < Number(el.dataset.t || 0)) return; // an older reading than shown
  el.dataset.t = r.t;
  const v = el.querySelector('[data-value]');
  const text = formatValue(r.v);
  if (v.textContent !== text) v.textContent = text;
  if (el.dataset.lo !== undefined) {
    const out = r.v < Number(el.dataset.lo) || r.v > Number(el.dataset.hi);
    el.classList.toggle('out', out);
    const note = el.querySelector('.out-note');
    if (note) note.hidden = !out;
  }
  const t = el.querySelector('time[data-ms]');
  if (t) setTime(t, r.t);
}

function setTime(t, ms) {
  t.dataset.ms = ms;
  t.setAttribute('datetime', new Date(ms).toISOString());
  t.title = absolute(ms);
  let rel = t.querySelector('.rel');
  let abs = t.querySelector('.abs');
  if (!rel || !abs) { // it said "never"
    rel = document.createElement('span');
    rel.className = 'rel';
    abs = document.createElement('span');
    abs.className = 'abs';
    t.replaceChildren(rel, ' ', abs);
  }
  rel.textContent = relative(serverNow() - ms);
  abs.textContent = `(${absolute(ms)})`;
}

function drawStatus(card, s) {
  card.dataset.status = s;
  const badge = card.querySelector('[data-testid="status-badge"]');
  if (!badge) return;
  const [icon, word] = statusWords[s] || ['?', 'Unknown'];
  badge.className = `badge badge-${s}`;
  badge.dataset.status = s;
  badge.querySelector('.badge-icon').textContent = icon;
  badge.querySelector('.badge-text').textContent = word;
}

function recount() {
  const section = document.querySelector('[data-testid="counts"]');
  if (!section) return;
  const n = { online: 0, stale: 0, offline: 0, unknown: 0 };
  for (const card of document.querySelectorAll('[data-testid="device-card"]')) {
    const s = card.dataset.status;
    n[s in n ? s : 'unknown']++;
  }
  for (const [s, count] of Object.entries(n)) {
    let el = section.querySelector(`[data-count="${s}"]`);
    if (!el && count > 0) { // the server leaves out a zero of unknown
      el = section.querySelector('[data-count]').cloneNode(true);
      el.dataset.count = s;
      el.dataset.testid = `count-${s}`;
      el.className = `count count-${s}`;
      el.querySelector('.count-label').textContent = s;
      section.append(el);
    }
    if (el) el.querySelector('.count-n').textContent = String(count);
  }
}

// Ages keep ticking between readings.
function tick() {
  if (document.hidden) return;
  const now = serverNow();
  for (const t of document.querySelectorAll('time[data-ms]')) {
    const ms = Number(t.dataset.ms);
    const rel = t.querySelector('.rel');
    if (ms > 0 && rel) {
      const text = relative(now - ms);
      if (rel.textContent !== text) rel.textContent = text;
    }
  }
}

// Refetch the page and swap in its <main>: at most one fetch at a time and
// one every few seconds, however often it is asked for.
let refreshTimer = 0;
let refreshing = false;
let lastRefresh = 0;
function refreshSoon() {
  if (refreshTimer || refreshing) return;
  const wait = Math.max(0, lastRefresh + 3000 - Date.now());
  refreshTimer = setTimeout(refresh, wait);
}

async function refresh() {
  refreshTimer = 0;
  refreshing = true;
  lastRefresh = Date.now();
  try {
    const res = await fetch(location.href, { cache: 'no-store', headers: { Accept: 'text/html' } });
    if (!res.ok) return; // e.g. the device is gone; the page as shown stays
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    const next = doc.getElementById('main');
    const main = document.getElementById('main');
    if (!next || !main) return;
    syncClock(doc);
    const focused = document.activeElement;
    const href = main.contains(focused) ? focused.getAttribute('href') : null;
    main.replaceWith(next);
    cards.clear();
    if (href) next.querySelector(`a[href="${CSS.escape(href)}"]`)?.focus();
    scheduleDraw(); // what arrived meanwhile, if newer than the page
  } catch (err) {
    console.warn('iotdash: refreshing the page failed', err);
  } finally {
    refreshing = false;
  }
}

function receive(msg) {
  if (msg.readings) {
    const now = serverNow();
    for (const r of msg.readings) {
      const key = `${r.d}\n${r.m}`;
      const had = pending.values.get(key);
      if (!had || r.t >= had.t) pending.values.set(key, r);
      pending.seen.set(r.d, now);
    }
    scheduleDraw();
  }
  if (msg.status) {
    for (const s of msg.status) pending.status.set(s.d, s.s);
    scheduleDraw();
  }
  if (msg.gap) refreshSoon(); // some readings were dropped for us
}

const banner = document.getElementById('conn-banner');
function showBanner(text) {
  if (!banner) return;
  banner.textContent = text;
  banner.hidden = false;
}

let attempt = 0;
let everConnected = false;
function connect() {
  const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`);
  ws.onopen = () => {
    ws.send(JSON.stringify({ subscribe: { devices: [live] } }));
  };
  ws.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.subscribed) {
      attempt = 0;
      document.body.dataset.liveState = 'connected';
      if (banner) banner.hidden = true;
      if (everConnected) refreshSoon(); // fill in what changed while away
      everConnected = true;
      return;
    }
    receive(msg);
  };
  ws.onclose = () => {
    // Back off exponentially to 30 s, with jitter so that a restarted
    // server is not met by every browser at once.
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt++;
    document.body.dataset.liveState = 'disconnected';
    showBanner(`Live updates are disconnected. Reconnecting in ${Math.ceil(delay / 1000)} s…`);
    setTimeout(connect, delay);
  };
}

if (live) {
  syncClock(document);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) { tick(); scheduleDraw(); }
  });
  setInterval(tick, 1000);
  connect();
}
