// live.js keeps a server-rendered iotdash page current over /ws.
//
// The page is complete without it. This module connects to /ws, subscribes
// to what the page shows, and updates values, statuses, counts and
// last-seen ages in place; overview.js, device.js and board.js add the
// page's own parts (filter and sparklines; range picker and charts; a
// board's panels and its editor). Updates are
// coalesced: each frame of the screen draws only the latest of each, and a
// hidden tab draws nothing. When the connection drops it says so in a
// banner, reconnects with backoff, and then has the page fill the gap from
// history and fetches a fresh copy of the page's changing parts.
//
// It finds what to update by data attributes the templates render:
// [data-device] per device (a board may show one device in several
// places), [data-metric] with [data-value] per metric,
// time[data-ms] for instants, [data-count] for the counts, [data-swap] with
// an id for the parts a fresh copy replaces. It says how the connection is
// on <body data-live-state="connected|disconnected"> and what the server
// confirmed it sends in <body data-subscribed="ids">. A fresh copy from
// another build of the server (<body data-build>) loads the whole page
// again.

import { formatValue, decimalsOf, relative, absolute, onFrame, hms } from '/static/chart.js';
import * as overview from '/static/overview.js';
import * as device from '/static/device.js';

const body = document.body;

// The server's clock minus ours, so that ages agree with the server.
let offset = 0;
function syncClock(doc) {
  const now = Number(doc.body.dataset.now);
  if (now > 0) offset = now - Date.now();
}
const serverNow = () => Date.now() + offset;

const statusWords = { online: ['●', 'Online'], stale: ['◐', 'Stale'], offline: ['○', 'Offline'] };

// What has arrived and is not drawn yet: only the latest of each.
const pending = {
  values: new Map(), // "device\nmetric" -> reading
  status: new Map(), // device -> status
  seen: new Map(), // device -> server time it was last heard from
};

const scheduleDraw = () => onFrame(draw);

const cards = new Map(); // device id -> its elements, reset when parts are swapped
function cardsFor(id) {
  let els = cards.get(id);
  if (!els || !els.every((el) => el.isConnected)) {
    els = [...document.querySelectorAll(`[data-device="${CSS.escape(id)}"]`)];
    cards.set(id, els);
  }
  return els;
}

function draw() {
  let missing = false;
  const changed = new Set(); // cards whose status or range changed
  for (const r of pending.values.values()) {
    let shown = false;
    for (const card of cardsFor(r.d)) {
      const el = card.querySelector(`[data-metric="${CSS.escape(r.m)}"]`);
      if (!el) continue;
      shown = true;
      if (drawValue(el, r)) changed.add(card);
    }
    if (!shown) missing = true;
  }
  for (const [id, ms] of pending.seen) {
    for (const card of cardsFor(id)) {
      const t = card.querySelector('time[data-testid="last-seen"]');
      if (t && ms > Number(t.dataset.ms)) setTime(t, ms);
    }
  }
  let statusChanged = false;
  for (const [id, s] of pending.status) {
    const els = cardsFor(id);
    if (!els.length) missing = true;
    for (const card of els) {
      if (card.dataset.status === s) continue;
      drawStatus(card, s);
      statusChanged = true;
      changed.add(card);
    }
  }
  pending.values.clear();
  pending.seen.clear();
  pending.status.clear();
  if (statusChanged || changed.size) recount();
  if (changed.size) resort();
  if (changed.size) page.changed?.(changed);
  // A device or metric the page does not show yet: the server renders it,
  // unless the page shows only some metrics of its devices by design.
  if (missing && !page.partial) refreshSoon();
}

// drawValue shows reading r in a metric's element; it reports whether the
// card's out-of-range state may have changed.
function drawValue(el, r) {
  if (r.t < Number(el.dataset.t || 0)) return false; // older than shown
  el.dataset.t = r.t;
  const v = el.querySelector('[data-value]');
  // The metric's decimals, from the server, raised for good by a value that
  // needs more.
  let decimals = Number(el.dataset.decimals) || 0;
  if (decimalsOf(r.v) > decimals) {
    decimals = decimalsOf(r.v);
    el.dataset.decimals = decimals;
  }
  const text = formatValue(r.v, decimals);
  if (v.textContent !== text) v.textContent = text;
  const t = el.querySelector('time[data-ms]');
  if (t) setTime(t, r.t);
  if (el.dataset.lo === undefined) return false;
  const out = r.v < Number(el.dataset.lo) || r.v > Number(el.dataset.hi);
  if (out === el.classList.contains('out')) return false;
  el.classList.toggle('out', out);
  const note = el.querySelector('.out-note');
  if (note) note.hidden = !out;
  const card = el.closest('[data-device]');
  if (card) card.toggleAttribute('data-out', !!card.querySelector('.metric.out'));
  return true;
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
  rel.textContent = relative(shownNow() - ms);
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

// attention is a card's place in the server's order of what needs
// attention first (the list's data-attention-order); past its end, none.
function attention(card, order) {
  const s = card.dataset.status;
  const key = s === 'offline' ? s : card.hasAttribute('data-out') ? 'out' : s;
  const i = order.indexOf(key);
  return i < 0 ? order.length : i;
}

function attentionOrder() {
  return (document.getElementById('device-list')?.dataset.attentionOrder || '').split(' ').filter(Boolean);
}

// itemKey is what an item of the overview's lists (a card's <li>, a
// table's row) is ordered by, as views.Filter.compareEntries orders it:
// the sort column (its value on the page; "status" is the place in what
// needs attention), then what needs attention, name and id. null for an
// item that holds no device (a group's heading row), which stays first.
function itemKey(item, col, order) {
  const card = item.matches('[data-device]') ? item : item.querySelector('[data-device]');
  if (!card) return null;
  const att = attention(card, order);
  const name = (card.dataset.name || '').toLowerCase();
  let k = att;
  if (col === 'seen') k = Number(card.querySelector('time[data-testid="last-seen"]')?.dataset.ms || 0);
  else if (col === 'name') k = name;
  else if (col && col !== 'status') k = (card.dataset[col] || '').toLowerCase();
  return [k, att, name, card.dataset.device];
}

// resort keeps the overview's devices in the server's order as statuses
// and limits change (#device-list's data-sort: a column, led by "-" for
// descending), each list (a group) by itself.
function resort() {
  const root = document.getElementById('device-list');
  if (!root) return;
  const order = attentionOrder();
  let col = root.dataset.sort || '';
  const desc = col.startsWith('-');
  if (desc) col = col.slice(1);
  for (const list of root.matches('[data-list]') ? [root] : root.querySelectorAll('[data-list]')) {
    const items = [...list.children];
    const keys = new Map(items.map((it) => [it, itemKey(it, col, order)]));
    const cmp = (a, b) => {
      const [x, y] = [keys.get(a), keys.get(b)];
      if (!x || !y) return x ? 1 : y ? -1 : 0;
      for (let i = 0; i < x.length; i++) {
        if (x[i] !== y[i]) return (x[i] < y[i] ? -1 : 1) * (i === 0 && desc ? -1 : 1);
      }
      return 0;
    };
    const sorted = [...items].sort(cmp);
    if (!sorted.every((it, i) => it === items[i])) list.append(...sorted); // moves them, in order
  }
}

function recount() {
  const section = document.querySelector('[data-testid="counts"]');
  if (!section) return;
  const order = attentionOrder();
  const n = { attention: 0, online: 0, stale: 0, offline: 0, unknown: 0 };
  for (const card of document.querySelectorAll('#device-list [data-device]')) {
    const s = card.dataset.status;
    n[s in n && s !== 'attention' ? s : 'unknown']++;
    if (attention(card, order) < order.length) n.attention++;
  }
  // Each group's count of what needs attention.
  for (const g of document.querySelectorAll('#device-list [data-group]')) {
    const el = g.querySelector('[data-group-attention]');
    const count = String([...g.querySelectorAll('[data-device]')].filter((c) => attention(c, order) < order.length).length);
    if (el && el.textContent !== count) el.textContent = count;
  }
  for (const [s, count] of Object.entries(n)) {
    let el = section.querySelector(`[data-count="${s}"]`);
    if (!el && count > 0) { // the server leaves out a zero of unknown
      el = section.querySelector('[data-count]').cloneNode(true);
      el.dataset.count = s;
      el.dataset.testid = `count-${s}`;
      el.className = `count count-${s}`;
      el.querySelector('.count-label').textContent = s;
      const a = el.querySelector('a');
      if (a) { a.search = `?status=${s}`; a.removeAttribute('aria-current'); }
      section.append(el);
    }
    if (el) el.querySelector('.count-n').textContent = String(count);
  }
}

// shownNow is what ages count from: now, or the moment a page shows (a
// board's replay: page.shownAt).
const shownNow = () => page.shownAt?.() ?? serverNow();

// Ages keep ticking between readings.
function tick() {
  if (document.hidden) return;
  const now = shownNow();
  for (const t of document.querySelectorAll('time[data-ms]')) {
    const ms = Number(t.dataset.ms);
    const rel = t.querySelector('.rel');
    if (ms > 0 && rel) {
      const text = relative(now - ms);
      if (rel.textContent !== text) rel.textContent = text;
    }
  }
  page.tick?.(now);
  if (retryAt) showBanner();
}

// Fetch the page again and swap in its changing parts ([data-swap] by id):
// at most one fetch at a time and one every few seconds, however often it
// is asked for.
let refreshTimer = 0;
let refreshing = false;
let lastRefresh = 0;
function refreshSoon() {
  if (refreshTimer || refreshing) return;
  const wait = Math.max(0, lastRefresh + 3000 - Date.now());
  refreshTimer = setTimeout(refresh, wait);
}

// refreshNow fetches a fresh copy at once: the page asks for another view
// of itself (its URL changed).
let refreshAgain = false;
function refreshNow() {
  clearTimeout(refreshTimer);
  refreshTimer = 0;
  if (refreshing) refreshAgain = true; else refresh();
}

async function refresh() {
  refreshTimer = 0;
  refreshing = true;
  lastRefresh = Date.now();
  try {
    const res = await fetch(location.href, { cache: 'no-store', headers: { Accept: 'text/html' } });
    if (!res.ok) return; // e.g. the device is gone; the page as shown stays
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    // Another build of the server (an upgrade) may render pages that
    // these scripts do not know: the whole page is loaded again, unless it
    // holds what someone is typing.
    const build = doc.body.dataset.build;
    if (build !== undefined && build !== body.dataset.build && !page.unsaved?.()) {
      location.reload();
      return;
    }
    syncClock(doc);
    const focused = document.activeElement;
    // The charts' alerts: their spans and their words.
    for (const next of doc.querySelectorAll('figure[data-chart][id]')) {
      const old = document.getElementById(next.id);
      if (!old) continue;
      if (next.dataset.alerts) old.dataset.alerts = next.dataset.alerts; else delete old.dataset.alerts;
      const list = next.querySelector('.chart-alerts');
      old.querySelector('.chart-alerts')?.remove();
      if (list) old.querySelector('.chart-summary')?.after(list);
    }
    for (const next of doc.querySelectorAll('[data-swap][id]')) {
      const old = document.getElementById(next.id);
      if (!old) continue;
      const href = old.contains(focused) ? focused.getAttribute('href') : null;
      old.replaceWith(next);
      if (href) next.querySelector(`a[href="${CSS.escape(href)}"]`)?.focus();
    }
    cards.clear();
    if (alerts) showAlerts(alerts);
    page.swapped?.();
    scheduleDraw(); // what arrived meanwhile, if newer than the page
  } catch (err) {
    console.warn('iotdash: refreshing the page failed', err);
  } finally {
    refreshing = false;
    if (refreshAgain) {
      refreshAgain = false;
      refresh();
    }
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
      page.reading?.(r);
    }
    scheduleDraw();
  }
  if (msg.status) {
    for (const s of msg.status) pending.status.set(s.d, s.s);
    scheduleDraw();
  }
  if (msg.notice !== undefined) {
    // A warning from the server for every page (the broker dropping
    // messages, say); "" clears it.
    const notice = document.getElementById('notice-banner');
    if (notice) {
      notice.textContent = msg.notice;
      notice.hidden = msg.notice === '';
    }
  }
  if (msg.alerts) showAlerts(msg.alerts);
  if (msg.gap) {
    // Some readings were dropped for us: the page refetches them.
    page.gap?.(msg.gap.from, msg.gap.to + 1);
    refreshSoon();
  }
}

// What fires, as the server says on every change: the count in the title
// (so a background tab shows it) and in the top bar, each device card's
// alert, and, on the alerts page, a fresh copy of its lists.
let alerts = null;
function showAlerts(a) {
  const changed = alerts !== null && JSON.stringify(alerts) !== JSON.stringify(a);
  const before = alerts;
  alerts = a;
  const title = document.title.replace(/^\(\d+\) /, '');
  document.title = a.firing > 0 ? `(${a.firing}) ${title}` : title;
  const link = document.querySelector('a[href="/alerts"]');
  let count = link?.querySelector('.nav-count');
  if (link && a.firing > 0) {
    if (!count) {
      count = document.createElement('span');
      count.className = 'nav-count';
      link.append(count);
    }
    count.textContent = String(a.firing);
    count.title = `${a.firing} firing`;
  } else count?.remove();
  for (const card of document.querySelectorAll('[data-testid="device-card"][data-device]')) {
    const d = a.devices[card.dataset.device];
    let line = card.querySelector('[data-testid="card-alert"]');
    if (!d) {
      line?.remove();
      continue;
    }
    if (!line) {
      line = document.createElement('p');
      line.className = 'card-alert';
      line.dataset.testid = 'card-alert';
      card.append(line);
    }
    const sev = document.createElement('span');
    sev.className = `sev sev-${d.severity}`;
    sev.textContent = d.severity;
    line.replaceChildren(sev, ` ${d.names.join(', ')}`);
  }
  if (changed && body.dataset.page === 'alerts') refreshSoon();
  if (changed) page.alerts?.(a, before);
  // A device page's charts band what fired: a fresh copy brings the spans.
  if (changed && body.dataset.page === 'device' && JSON.stringify(before?.devices[body.dataset.live]) !== JSON.stringify(a.devices[body.dataset.live])) refreshSoon();
}

// The connection, its backoff, and the banner that says how it is.
const banner = document.getElementById('conn-banner');
let ws = null;
// data-live: the devices, separated by spaces, or "-" for none: only what
// every page gets (alerts, notices).
let subscription = body.dataset.live === '-' ? [] : (body.dataset.live || '').split(' ').filter(Boolean);
let attempt = 0;
let everConnected = false;
let downSince = 0; // server time the connection dropped, 0 while connected
let retryAt = 0; // when the next attempt is due (our clock), 0 if none
let retryTimer = 0;

function showBanner() {
  if (!banner) return;
  const since = hms.format(downSince - offset);
  const wait = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
  const text = retryAt
    ? `Live updates are disconnected since ${since}. Reconnecting in ${wait} s…`
    : `Live updates are disconnected since ${since}. Reconnecting…`;
  let msg = banner.querySelector('.banner-text');
  if (!msg) {
    msg = document.createElement('span');
    msg.className = 'banner-text';
    const retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'banner-retry';
    retry.textContent = 'Reconnect now';
    retry.addEventListener('click', retryNow);
    banner.replaceChildren(msg, ' ', retry);
  }
  if (msg.textContent !== text) msg.textContent = text;
  banner.hidden = false;
}

function retryNow() {
  if (ws) return;
  clearTimeout(retryTimer);
  retryAt = 0;
  connect();
}

// subscribe changes what the server sends; the page calls it when what it
// shows changes.
function subscribe(ids) {
  subscription = ids;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(subscribeMessage(ids));
}

// subscribeMessage asks for ids' readings: every one, or, where the page
// says (data-live-latest), the latest of each at most so many times a
// second.
function subscribeMessage(ids) {
  const latest = Number(body.dataset.liveLatest) || 0;
  return JSON.stringify({ subscribe: latest > 0 ? { devices: ids, latest } : { devices: ids } });
}

function connect() {
  const sock = new WebSocket(`${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`);
  ws = sock;
  sock.onopen = () => sock.send(subscribeMessage(subscription));
  sock.onmessage = (ev) => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.subscribed) {
      body.dataset.subscribed = msg.subscribed.devices.join(' ');
      if (body.dataset.liveState === 'connected') return; // a new filter
      attempt = 0;
      body.dataset.liveState = 'connected';
      if (banner) banner.hidden = true;
      if (everConnected) {
        // Fill in what happened while away.
        page.reconnected?.(downSince);
        refreshSoon();
      }
      everConnected = true;
      downSince = 0;
      return;
    }
    receive(msg);
  };
  sock.onclose = () => {
    ws = null;
    if (!downSince) downSince = serverNow();
    // Back off exponentially to 30 s, with jitter so that a restarted
    // server is not met by every browser at once.
    const delay = Math.min(30000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt++;
    body.dataset.liveState = 'disconnected';
    retryAt = Date.now() + delay;
    showBanner();
    retryTimer = setTimeout(() => { retryAt = 0; connect(); }, delay);
  };
}

// The page's own part, given what it needs of the connection.
const live = {
  serverNow,
  subscribe,
  refreshSoon,
  refreshNow,
  resort,
  // show draws a reading learnt other than over /ws (a replay's, from
  // history), as one that came over it.
  show(r) {
    const key = `${r.d}\n${r.m}`;
    pending.values.set(key, r);
    scheduleDraw();
  },
  // seen shows when device d was last heard from, learnt other than over
  // /ws (a replay's moment), earlier than what it shows or not.
  seen(d, ms) {
    for (const card of cardsFor(d)) {
      const t = card.querySelector('time[data-testid="last-seen"]');
      if (t && Number(t.dataset.ms) !== ms) setTime(t, ms);
    }
  },
  // status shows statuses learnt other than over /ws.
  status(list) {
    for (const s of list) pending.status.set(s.d, s.s);
    scheduleDraw();
  },
};
let page = body.dataset.page === 'overview' ? overview.init(live)
  : body.dataset.page === 'device' ? device.init(live) : {};
// A board's part (and its editor) is loaded by board pages only; what
// arrives before it is there is drawn all the same.
if (body.dataset.page === 'board') {
  import('/static/board.js').then((board) => { page = board.init(live); });
}

if (body.dataset.live) {
  syncClock(document);
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) { tick(); scheduleDraw(); }
  });
  window.addEventListener('online', retryNow);
  setInterval(tick, 1000);
  connect();
}
