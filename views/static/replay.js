// replay.js plays a board from history. The server rendered the board as
// of a past moment (the replay bar's data-replay) and subscribed it to no
// live readings; this moves the moment on a clock at the bar's speed
// (data-speed, one of data-speeds), or a step (data-step) at a time, and
// shows every panel as it was then through the board's own drawing: each
// chart's window ends at the moment, each stat, gauge and table cell shows
// the latest reading at or before it, each sparkline the minutes up to it,
// each device the presence the event log held for it then.
//
// History comes from the history API in chunks ahead of the moment
// (data-chunk ms of it, at each series' step), each chunk starting at a
// multiple of its length, so that every viewer asks for the same URLs and
// a chunk that cannot change any more (older than the late-data window)
// is cached. The moment and speed are kept in the URL when it stops or
// steps, so a link shows the same.

import { Series, invalidate, absolute, isoAt } from '/static/chart.js';
import { fetchAt } from '/static/device.js';

const TICK = 250; // ms between the clock's moves while playing
const AHEAD = 2; // chunks read ahead of the moment
const FETCHES = 4; // history requests at once
const PRESENCE_SPAN = 24 * 60 * 60 * 1000; // presence read before the first moment

// start plays the board whose replay bar is bar; board gives what the
// board draws (see board.js): its charts, sparklines, values, statuses
// and the span of a sparkline. It returns what board.js asks of it: bound,
// after the grid was fetched again, and at, the moment shown.
export function start(bar, board) {
  let at = Number(bar.dataset.replay);
  let speed = Number(bar.dataset.speed) || 1;
  const step = Number(bar.dataset.step);
  const chunk = Number(bar.dataset.chunk);
  let timer = 0;
  let last = 0;

  // One buffer of history for each device × metric × step: what has been
  // read of it, and which chunks. A chunk is data-chunk long, or half the
  // span of the chart that reads it if longer (a week's chart reads its
  // hours in a few requests), a whole number of steps.
  const buffers = new Map();
  function buffer(d, m, step, span, series) {
    const k = `${d}\n${m}\n${step}\n${span}`;
    let b = buffers.get(k);
    if (!b) {
      const least = Math.max(chunk, span / 2);
      const size = step ? step * Math.max(1, Math.round(least / step)) : least;
      b = { d, m, step, size, series: series || new Series(step), chunks: new Set() };
      buffers.set(k, b);
    }
    return b;
  }

  // ensure reads the chunks of b over [from, to) it has not read.
  function ensure(b, from, to) {
    const size = b.size;
    for (let c = Math.floor(from / size) * size; c < to; c += size) {
      if (b.chunks.has(c)) continue;
      b.chunks.add(c);
      queue.push(() => fetchAt(b.d, b.m, c, c + size, b.step).then((s) => {
        if (s) { b.series.merge(s); return; }
        // More readings than the API gives at once: minutes instead.
        b.step = 60000;
        b.size = Math.max(b.size, b.step);
        b.series = new Series(b.step);
        b.chunks.clear();
      }).catch((err) => {
        b.chunks.delete(c);
        console.warn('iotdash: reading history for the replay failed', err);
      }).finally(show));
    }
    pump();
  }
  const queue = [];
  let running = 0;
  function pump() {
    while (running < FETCHES && queue.length) {
      running++;
      queue.shift()().finally(() => { running--; pump(); });
    }
  }

  // What the board shows, bound to the buffers: each chart's lines, and
  // each value (a stat's, a gauge's, a table cell's) with its sparklines.
  let lines = [];
  let values = [];
  function bind() {
    lines = [];
    for (const { chart, line } of board.lines()) {
      const b = buffer(line.device, line.metric, line.series.step, chart.span, line.known ? line.series : null);
      lines.push({ chart, line, b });
    }
    const seen = new Map();
    for (const el of document.querySelectorAll('#board-grid [data-device] [data-metric]')) {
      const d = el.closest('[data-device]').dataset.device;
      const m = el.dataset.metric;
      const k = `${d}\n${m}`;
      if (!seen.has(k)) seen.set(k, { d, m, b: buffer(d, m, 0, 0), shown: null, sparks: board.sparks(d, m) });
    }
    values = [...seen.values()];
    show();
  }

  // Each device's presence episodes over the day before the first moment
  // up to now, from the event log (/api/v1/events), for its status at the
  // moment: null while they are read.
  const since = at - PRESENCE_SPAN;
  const presence = new Map(); // device -> [{ s, from, to }]
  const statuses = new Map(); // device -> the status shown
  function episodes(d) {
    if (presence.has(d)) return presence.get(d);
    presence.set(d, null);
    const q = new URLSearchParams({ device: d, kind: 'presence', from: String(since), to: String(Math.ceil(board.now()) + 1), limit: '1000' });
    queue.push(() => fetch(`/api/v1/events?${q}`, { cache: 'no-cache' })
      .then((res) => (res.ok ? res.json() : Promise.reject(new Error(`${res.status} ${res.statusText}`))))
      .then((list) => presence.set(d, list.map((e) => ({ s: e.status, from: Date.parse(e.from), to: e.to ? Date.parse(e.to) : Infinity }))))
      .catch((err) => console.warn('iotdash: reading presence for the replay failed', err))
      .finally(show));
    pump();
    return null;
  }

  // show draws the board at the moment, and reads what it will need next.
  let drawn = -1;
  function show() {
    for (const { chart, line, b } of lines) {
      ensure(b, at - chart.span, at + AHEAD * b.size);
      if (line.series !== b.series) chart.setSeries(b.series, line);
      if (chart.to !== at + 1) chart.setWindow(at + 1 - chart.span, at + 1);
    }
    const newest = new Map(); // device -> its newest reading shown
    for (const v of values) {
      const { b } = v;
      ensure(b, at - board.sparkSpan, at + AHEAD * b.size);
      const pts = b.series.pts;
      const i = b.series.index(at + 1) - 1;
      const p = i >= 0 ? pts[i] : null;
      if (p && p !== v.shown) {
        v.shown = p;
        board.value({ d: v.d, m: v.m, t: p.t, v: p.v });
      }
      if (p && p.t > (newest.get(v.d) ?? 0)) newest.set(v.d, p.t);
      for (const sp of v.sparks) {
        sp.now = () => at;
        sp.series = new Series(b.series.step, b.series.within(at - board.sparkSpan, at + 1));
        invalidate(sp);
      }
    }
    // A device was last seen, at the moment, with the newest of its
    // readings the board shows then (the server renders the same).
    for (const [d, t] of newest) board.seen(d, t);
    if (at >= since) {
      for (const d of new Set([...document.querySelectorAll('#board-grid [data-device][data-status]')].map((el) => el.dataset.device))) {
        const eps = episodes(d);
        if (!eps) continue;
        const s = eps.find((e) => e.from <= at && at < e.to)?.s || 'unknown';
        if (statuses.get(d) !== s) {
          statuses.set(d, s);
          board.status(d, s);
        }
      }
    }
    if (drawn !== at) label();
    drawn = at;
  }

  // The bar says the moment, and the URL keeps it when it rests.
  const time = bar.querySelector('[data-testid="replay-time"]');
  const input = bar.querySelector('input[name="replay"]');
  function label() {
    time.textContent = absolute(at);
    time.dateTime = new Date(at).toISOString();
  }
  function remember() {
    const u = new URL(location.href);
    u.searchParams.set('replay', isoAt(at).replace('.000', ''));
    u.searchParams.set('speed', String(speed));
    history.replaceState(null, '', u);
    if (input) input.value = isoAt(at).slice(0, 19);
    for (const a of bar.querySelectorAll('a[data-step-by]')) {
      const v = new URL(u);
      v.searchParams.set('replay', String(at + Number(a.dataset.stepBy) * step));
      a.href = v.pathname + v.search;
    }
  }

  const play = bar.querySelector('[data-testid="replay-play"]');
  function setPlaying(on, quiet = false) {
    const was = timer !== 0;
    clearInterval(timer);
    timer = 0;
    if (on) {
      last = performance.now();
      timer = setInterval(() => {
        const now = performance.now();
        // Never past the server's now: a replay ends where live begins.
        at = Math.min(at + (now - last) * speed, board.now());
        last = now;
        show();
      }, TICK);
    } else {
      if (was) at = Math.round(at / 1000) * 1000; // a moment a link can say
      show();
      if (!quiet) remember();
    }
    play.textContent = on ? 'Pause' : 'Play';
    play.setAttribute('aria-pressed', String(on));
    bar.dataset.playing = String(on);
  }
  play.hidden = false;
  play.addEventListener('click', () => setPlaying(!timer));
  for (const a of bar.querySelectorAll('a[data-step-by]')) {
    a.addEventListener('click', (e) => {
      e.preventDefault();
      at = Math.min(at + Number(a.dataset.stepBy) * step, board.now());
      show();
      if (!timer) remember();
    });
  }
  const select = bar.querySelector('select[name="speed"]');
  select?.addEventListener('change', () => {
    speed = Number(select.value) || 1;
    if (!timer) remember();
  });

  bind();
  setPlaying(false, true);
  return {
    bound: bind,
    at: () => at,
  };
}
