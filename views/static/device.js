// device.js is the device page's part of live.js: the charts, drawn from
// the history embedded in the page (or fetched, if the server had none to
// embed) and extended by live readings; the range picker, which fetches
// history from /api/v1/query at a step that fits each chart's width; the
// CSV download of what the charts show; and the refetch of any span the
// connection missed, so that a chart has no hole the data does not have.

import { Series, Chart, floorTo, localTime, wall, offsetAt, isoAt, invalidate, absolute, span as spanWords } from '/static/chart.js';

const M = 60 * 1000, H = 60 * M, D = 24 * H;
// The range picker's choices, as views.Ranges.
const SPANS = { '15m': 15 * M, '1h': H, '6h': 6 * H, '24h': D, '7d': 7 * D };
const LABELS = { '15m': '15 min', '1h': '1 h', '6h': '6 h', '24h': '24 h', '7d': '7 days' };

// query asks the history API; a refusal throws its message. What the
// browser holds is asked again with its ETag (no-cache): a range the
// server says cannot change any more is a 304, the live edge (no-store)
// is read afresh.
async function query(params) {
  const res = await fetch(`/api/v1/query?${new URLSearchParams(params)}`, { cache: 'no-cache' });
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    const err = new Error(body?.error || `${res.status} ${res.statusText}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

// fetchSeries reads one metric over [from, to) for a chart width pixels
// wide, at the step the history API picks for it (step=fit, the server's
// store.FitStep): every reading, or buckets with their mean, min and max.
export async function fetchSeries(device, metric, from, to, width) {
  const base = { device, metric, from: String(Math.floor(from)), to: String(Math.ceil(to)) };
  return withBand(base, await query({ ...base, step: 'fit', points: String(Math.max(1, Math.floor(width))) }));
}

// fetchAt reads one metric over [from, to) at the step a chart already has
// (0: every reading); null if the span holds more readings than the API
// gives at once.
export async function fetchAt(device, metric, from, to, step) {
  const base = { device, metric, from: String(Math.floor(from)), to: String(Math.ceil(to)) };
  try {
    return await withBand(base, await query({ ...base, step: step ? `${step}ms` : 'raw' }));
  } catch (err) {
    if (!step && err.status === 400) return null;
    throw err;
  }
}

// withBand is the series of an answer of the history API, with each
// bucket's least and greatest value (agg=minmax) when it has buckets.
async function withBand(base, a) {
  const step = a.step_ms;
  if (!step) return new Series(0, a.points.map(([t, v]) => ({ t, v })));
  const band = await query({ ...base, step: `${step}ms`, agg: 'minmax' });
  const lohi = new Map(band.points.map(([t, lo, hi]) => [t, [lo, hi]]));
  return new Series(step, a.points.map(([t, v]) => {
    const [lo, hi] = lohi.get(t) ?? [v, v];
    return { t, v, lo: Math.min(lo, v), hi: Math.max(hi, v) };
  }));
}

// toLocalInput is an instant as a datetime-local input shows it, in the
// plant's zone.
function toLocalInput(ms) {
  const f = wall(ms);
  return `${f.year}-${f.month}-${f.day}T${f.hour}:${f.minute}:${f.second}`;
}

// fromLocalInput is the instant a datetime-local input's wall-clock time
// names in the plant's zone (NaN if it names none).
function fromLocalInput(s) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d)(?::(\d\d))?/.exec(s);
  if (!m) return NaN;
  const guess = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  let ms = guess - offsetAt(guess);
  const again = guess - offsetAt(ms); // across a DST change, the offset then
  if (again !== ms) ms = again;
  return ms;
}

export function init(live) {
  const id = document.querySelector('[data-testid="device"]')?.dataset.device;
  const form = document.querySelector('[data-testid="range-picker"]');
  const label = document.getElementById('range-label');
  const charts = new Map(); // metric -> Chart
  for (const fig of document.querySelectorAll('figure[data-chart]')) {
    const c = new Chart(fig);
    c.since = null; // live readings kept while a load is in flight
    fig.chart = c;
    charts.set(c.metric, c);
  }
  if (!id || !form || !charts.size) return {};

  const { from: fromInput, to: toInput } = form.elements;
  const first = charts.values().next().value;
  let range = { name: form.elements.range.value || '15m', from: first.from, to: first.to };
  const relative = () => range.name in SPANS;

  // The custom inputs are in the plant's zone, as the server's copy is.
  function showInputs() {
    fromInput.value = toLocalInput(range.from);
    toInput.value = toLocalInput(range.to);
  }
  showInputs();

  // span is the window the charts show now: up to now, or to the newest
  // reading if a device's clock runs ahead of the server's.
  let newest = 0;
  function span() {
    if (!relative()) return { from: range.from, to: range.to };
    const to = Math.max(live.serverNow(), newest) + 1;
    return { from: to - SPANS[range.name], to };
  }

  function showSpan(c) {
    const { from, to } = span();
    c.setWindow(from, to);
  }

  function say(text) {
    if (label && label.textContent !== text) label.textContent = text;
  }

  function describe() {
    const step = first.series.step;
    const what = relative() ? `the last ${LABELS[range.name]}` : `${localTime(range.from)} to ${localTime(range.to)}`;
    const how = step ? `one point per ${spanWords(step)}, with its min–max band` : 'every reading';
    return `Showing ${what}: ${how}.`;
  }

  function keepURL() {
    const p = new URLSearchParams();
    if (range.name === 'custom') {
      p.set('range', 'custom');
      p.set('from', String(range.from));
      p.set('to', String(range.to));
    } else if (range.name !== '15m') {
      p.set('range', range.name);
    }
    const url = location.pathname + (p.size ? `?${p}` : '');
    if (location.pathname + location.search !== url) history.replaceState(null, '', url);
  }

  // load reads the history of the charts for the range shown now; a newer
  // load supersedes an older one still in flight.
  let loadSeq = 0;
  async function load(list) {
    const seq = ++loadSeq;
    const { from, to } = span();
    say(`Loading ${relative() ? `the last ${LABELS[range.name]}` : 'the range'}…`);
    for (const c of list) c.since = [];
    try {
      await Promise.all(list.map(async (c) => {
        const s = await fetchSeries(id, c.metric, from, to, c.width());
        if (seq !== loadSeq) return;
        // Readings that arrived during the fetch and are not in its answer.
        for (const r of c.since) if (!s.step || r.t >= to) s.add(r.t, r.v);
        c.since = null;
        c.setSeries(s);
        c.setWindow(from, to);
      }));
      if (seq === loadSeq) say(describe());
    } catch (err) {
      if (seq === loadSeq) say(`The history could not be loaded: ${err.message}. The charts show what they had.`);
      for (const c of list) c.since = null;
    }
  }

  function setRange(next) {
    range = next;
    document.querySelector('[data-testid="range-problem"]')?.remove(); // a range was chosen
    keepURL();
    if (relative()) {
      const s = span();
      range.from = s.from;
      range.to = s.to;
    }
    showInputs();
    load([...charts.values()]);
    live.refreshSoon(); // the parts the server draws for the range: the availability strip
  }

  // custom reads the custom inputs, or says what is wrong with them.
  function custom() {
    const from = fromLocalInput(fromInput.value);
    const to = fromLocalInput(toInput.value);
    if (!Number.isFinite(from) || !Number.isFinite(to)) { say('Give the custom range a start and an end.'); return null; }
    if (from >= to) { say('The custom range must start before it ends.'); return null; }
    return { name: 'custom', from, to };
  }

  form.addEventListener('change', (e) => {
    if (e.target.name === 'range' && e.target.value !== 'custom') setRange({ name: e.target.value });
    else if (e.target.name === 'range') fromInput.focus();
    else if (e.target === fromInput || e.target === toInput) {
      form.elements.range.value = 'custom';
      const r = custom();
      if (r) setRange(r);
    }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = form.elements.range.value;
    if (name !== 'custom') { setRange({ name }); return; }
    const r = custom();
    if (r) setRange(r);
  });

  // The CSV holds exactly what the charts show.
  const csvButton = form.querySelector('[data-testid="download-csv"]');
  csvButton.hidden = false;
  csvButton.addEventListener('click', () => {
    const lines = ['time,unix_ms,device,metric,value,min,max,unit'];
    for (const c of charts.values()) {
      for (const p of c.shown()) {
        const band = c.series.step ? `${p.lo ?? p.v},${p.hi ?? p.v}` : ',';
        lines.push(`${isoAt(p.t)},${p.t},${csvField(id)},${csvField(c.metric)},${p.v},${band},${csvField(c.unit)}`);
      }
    }
    const { from, to } = span();
    const name = `${id}_${new Date(from).toISOString()}_${new Date(to).toISOString()}.csv`.replaceAll(':', '-');
    const url = URL.createObjectURL(new Blob([lines.join('\n') + '\n'], { type: 'text/csv' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  // fill refetches [from, to) of every chart and merges it in: what the
  // connection missed is in the store. A failed fetch is tried again a few
  // times, as the server may be starting up.
  async function fill(from, to) {
    await Promise.all([...charts.values()].map(async (c) => {
      for (let attempt = 0; ; attempt++) {
        const step = c.series.step;
        try {
          const s = await fetchAt(id, c.metric, step ? floorTo(from, step) : from, to, step);
          if (s && s.step === c.series.step) c.series.merge(s);
          if (relative() && s?.last()) newest = Math.max(newest, Math.min(s.last().t, live.serverNow() + 60000));
          showSpan(c);
          return;
        } catch (err) {
          if (attempt >= 4) {
            console.warn('iotdash: filling the gap failed', err);
            say(`Some readings from while the connection was down could not be loaded: ${err.message}.`);
            return;
          }
          await new Promise((ok) => setTimeout(ok, 500 * 2 ** attempt));
        }
      }
    }));
  }

  // The availability strip follows the device's presence: the episode
  // that lasts still grows to now, a change of status ends it and begins
  // another, and the window slides with the charts'. The server's copy,
  // fetched a little later, brings the shares in words.
  const SVG = 'http://www.w3.org/2000/svg';
  let change = null; // the latest status change seen here: { s, t }
  function drawStrip() {
    const svg = document.querySelector('[data-testid="strip"]');
    if (!svg) return;
    const { from, to } = span();
    const end = Math.min(to, live.serverNow());
    for (const r of svg.querySelectorAll('rect[data-from]')) {
      const lo = Math.max(Number(r.dataset.from), from);
      const hi = Math.min(Number(r.dataset.to) || end, end);
      const x = Math.floor((lo - from) * 1000 / (to - from));
      const w = hi > lo ? Math.max(1, Math.floor((hi - from) * 1000 / (to - from)) - x) : 0;
      if (r.getAttribute('x') !== String(x)) r.setAttribute('x', x);
      if (r.getAttribute('width') !== String(w)) r.setAttribute('width', w);
    }
  }
  function stripStatus(s, t) {
    const svg = document.querySelector('[data-testid="strip"]');
    if (!svg || !s) return;
    const rects = svg.querySelectorAll('rect[data-from]');
    const last = rects[rects.length - 1];
    const open = last && last.dataset.to === '0';
    if (open && last.dataset.status === s) return;
    if (open) last.dataset.to = String(Math.max(t, Number(last.dataset.from)));
    const r = document.createElementNS(SVG, 'rect');
    r.setAttribute('class', `seg-${s}`);
    r.setAttribute('y', '0');
    r.setAttribute('height', '10');
    r.dataset.status = s;
    r.dataset.from = String(t);
    r.dataset.to = '0';
    const title = document.createElementNS(SVG, 'title');
    const word = document.querySelector('[data-testid="device"] [data-testid="status-badge"] .badge-text')?.textContent || s;
    title.textContent = `${word} from ${absolute(t)}`;
    r.append(title);
    svg.append(r);
    drawStrip();
  }
  drawStrip();

  // The server embedded the history it had; what it did not is fetched.
  const missing = [];
  for (const c of charts.values()) {
    const s = Series.fromData(c.fig);
    if (s) c.setSeries(s); else missing.push(c);
    showSpan(c);
  }
  if (missing.length) load(missing);

  return {
    reading(r) {
      if (r.d !== id) return;
      const c = charts.get(r.m);
      if (!c) { live.refreshSoon(); return; } // a new metric: its row in the table
      if (relative()) newest = Math.max(newest, Math.min(r.t, live.serverNow() + 60000));
      const { from, to } = span();
      if (!relative() && (r.t < from || r.t >= to)) return;
      c.series.add(r.t, r.v);
      c.saw(r.v);
      c.since?.push(r);
      c.series.trim(from);
      c.setWindow(from, to);
    },
    tick() {
      drawStrip();
      if (!relative()) return;
      const { from, to } = span();
      for (const c of charts.values()) c.setWindow(from, to);
    },
    changed(cards) {
      for (const card of cards) {
        if (card.dataset.device !== id || card.dataset.status === change?.s) continue;
        change = { s: card.dataset.status, t: live.serverNow() };
        stripStatus(change.s, change.t);
        // The server's strip and shares, once the event log has the change.
        setTimeout(live.refreshSoon, 2000);
      }
    },
    swapped() {
      // A fresh copy of the strip: what this page saw change and the copy
      // does not have yet is drawn on it again.
      if (change) stripStatus(change.s, change.t);
      drawStrip();
      // A fresh copy of the page: the charts' alerts may have changed.
      for (const c of charts.values()) {
        c.readAlerts();
        invalidate(c);
      }
    },
    reconnected(since) {
      // From a little before the last point each chart has to now.
      const { from: start, to: end } = span();
      if (end < since - 5000) return; // a span in the past: nothing to fill
      let from = since;
      for (const c of charts.values()) from = Math.min(from, c.series.last()?.t ?? from);
      // To well past now: a device's clock may run ahead of the server's.
      fill(Math.max(start, from - 5000), live.serverNow() + H);
    },
    gap(from, to) {
      fill(from, to);
    },
  };
}

// csvField is text from a device (its id, a metric's name, its unit) as a CSV cell: one a
// spreadsheet would take for a formula (= + - @, tab, CR) is led by a quote
// mark so that it stays text; quotes, commas and line ends are quoted.
function csvField(s) {
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}
