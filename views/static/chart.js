// chart.js draws iotdash's charts on canvas: the device page's charts with
// axes, limits, a min–max band and a read-out of the point under the
// pointer, and the overview's sparklines. It holds a metric's points in a
// Series, which live readings extend and history fills.
//
// Drawing happens once per animation frame at most, only for canvases on
// screen, and never in a hidden tab: invalidate() marks a drawing dirty and
// the frame draws what is dirty.

// formatValue shows a value as the server does (views.formatValue).
// The decimals are the metric's, from the page (data-decimals): the server
// decides them (views.Decimals), the same on every part of the page.
// decimalsOf is how many decimals v needs, as views.Decimals counts them
// (to 10 significant digits, at most 9): a live value with more than its
// metric was shown with raises the metric's decimals. Keep the two in step.
export function decimalsOf(v) {
  if (!Number.isFinite(v)) return 0;
  const r = Number(v.toPrecision(10));
  if (r !== 0 && Math.abs(r) < 1e-6) return 9;
  const s = String(r); // plain below 1e21, as Go's 'f' is
  if (/e/i.test(s)) return 0;
  const dot = s.indexOf('.');
  return dot < 0 ? 0 : Math.min(s.length - dot - 1, 9);
}

export function formatValue(v, decimals) {
  if (!Number.isFinite(v)) return '–';
  const s = v.toFixed(decimals);
  return /^-[0.]*$/.test(s) ? s.slice(1) : s;
}

// relative says an age as the server does (views.relative).
export function relative(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// TZ is the plant's time zone, from the page (data-tz): every time on the
// page is shown in it, as the server shows times (views.formatAt).
export const TZ = globalThis.document?.body?.dataset.tz || 'UTC';
const isUTC = ['UTC', 'Etc/UTC', 'Etc/GMT', 'GMT', 'Etc/Universal', 'Universal', 'Zulu', 'Etc/Zulu'].includes(TZ);
const partsFmt = new Intl.DateTimeFormat('en-GB', {
  timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23',
});

// wall is an instant's wall-clock fields in the plant's zone.
export function wall(ms) {
  const f = {};
  for (const p of partsFmt.formatToParts(ms)) f[p.type] = p.value;
  return f;
}

// offsetAt is the plant's zone's offset from UTC at an instant, in ms.
export function offsetAt(ms) {
  const f = wall(ms);
  return Date.UTC(+f.year, +f.month - 1, +f.day, +f.hour, +f.minute, +f.second) - Math.floor(ms / 1000) * 1000;
}

// offsetText is an offset as the server writes it: +01:00.
export function offsetText(off) {
  const m = Math.round(Math.abs(off) / 60000);
  return `${off < 0 ? '-' : '+'}${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

// absolute is an instant as the server shows it: 2025-11-24 16:00:00 +01:00
// in the plant's zone (or … UTC).
export function absolute(ms) {
  const f = wall(ms);
  return `${f.year}-${f.month}-${f.day} ${f.hour}:${f.minute}:${f.second} ${isUTC ? 'UTC' : offsetText(offsetAt(ms))}`;
}
export const localTime = absolute;

// isoAt is an instant in RFC 3339 with the plant's offset, for CSV.
export function isoAt(ms) {
  const f = wall(ms);
  const frac = String(((ms % 1000) + 1000) % 1000).padStart(3, '0');
  return `${f.year}-${f.month}-${f.day}T${f.hour}:${f.minute}:${f.second}.${frac}${isUTC ? 'Z' : offsetText(offsetAt(ms))}`;
}

const S = 1000, M = 60 * S, H = 60 * M, D = 24 * H;

// floorTo is the start of the step-wide bucket that holds t, as the
// server's store.FloorTo (step > 0).
export const floorTo = (t, step) => t - (((t % step) + step) % step);

// Series is one metric's points in time order: {t, v} for readings, or
// {t, v, lo, hi, n} for buckets of step ms (v their mean, lo and hi their
// min and max, n how many readings a live bucket has folded in).
export class Series {
  constructor(step = 0, points = []) {
    this.step = step;
    this.pts = points;
  }

  // fromData reads a series from an element's data-step, data-points
  // ([t,v,…]) and data-band ([t,lo,hi,…]), each time but the first given
  // as the difference from the one before (views.seriesAttrs); null if it
  // carries none.
  static fromData(el) {
    if (!el.dataset.points) return null;
    const flat = JSON.parse(el.dataset.points);
    const band = el.dataset.band ? JSON.parse(el.dataset.band) : null;
    const s = new Series(Number(el.dataset.step) || 0);
    let t = 0;
    for (let i = 0; i < flat.length / 2; i++) {
      t += flat[2 * i];
      const v = flat[2 * i + 1];
      if (v === null) continue;
      const p = { t, v };
      if (band) { p.lo = band[3 * i + 1] ?? v; p.hi = band[3 * i + 2] ?? v; }
      s.pts.push(p);
    }
    return s;
  }

  // index is the position of the first point at or after t.
  index(t) {
    let lo = 0, hi = this.pts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.pts[mid].t < t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  // put stores p in time order, replacing a point of the same time.
  put(p) {
    const n = this.pts.length;
    if (n === 0 || this.pts[n - 1].t < p.t) { this.pts.push(p); return; }
    const i = this.index(p.t);
    if (i < n && this.pts[i].t === p.t) this.pts[i] = p; else this.pts.splice(i, 0, p);
  }

  // add takes a live reading: as it is, or folded into its bucket.
  add(t, v) {
    if (!this.step) { this.put({ t, v }); return; }
    const b = floorTo(t, this.step);
    const i = this.index(b);
    const p = this.pts[i];
    if (p && p.t === b) {
      const n = p.n ?? 1;
      p.v = (p.v * n + v) / (n + 1);
      p.n = n + 1;
      p.lo = Math.min(p.lo ?? p.v, v);
      p.hi = Math.max(p.hi ?? p.v, v);
    } else {
      this.put({ t: b, v, lo: v, hi: v, n: 1 });
    }
  }

  // merge takes the points of other (history read later), replacing those
  // of the same time.
  merge(other) {
    for (const p of other.pts) this.put(p);
  }

  // trim drops the points before t.
  trim(t) {
    const i = this.index(t - this.step);
    if (i > 0) this.pts.splice(0, i);
  }

  // within returns the points with from <= t < to.
  within(from, to) {
    return this.pts.slice(this.index(from - this.step), this.index(to));
  }

  last() { return this.pts[this.pts.length - 1]; }
}

// Drawing is batched per animation frame.
const dirty = new Set();
let frame = 0;
const onScreen = new WeakMap(); // canvas -> whether it is in view
const seen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    onScreen.set(e.target, e.isIntersecting);
    if (e.isIntersecting && e.target.drawing) invalidate(e.target.drawing);
  }
});

// invalidate asks for d.draw() in the next frame, if d's canvas is on
// screen and the tab is visible; otherwise when it comes into view.
export function invalidate(d) {
  dirty.add(d);
  if (!frame && !document.hidden) frame = requestAnimationFrame(drawDirty);
}

// onFrame runs f in the next frame with the drawings.
const frameTasks = new Set();
export function onFrame(f) {
  frameTasks.add(f);
  if (!frame && !document.hidden) frame = requestAnimationFrame(drawDirty);
}

function drawDirty() {
  frame = 0;
  if (document.hidden) return;
  for (const f of frameTasks) f();
  frameTasks.clear();
  theme ??= readTheme();
  for (const d of dirty) {
    if (!d.canvas.isConnected) { dirty.delete(d); continue; }
    if (onScreen.get(d.canvas) === false || !d.size) { d.relabelNow?.(); continue; } // drawn when it is in view and sized; its label now
    dirty.delete(d);
    d.draw();
  }
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden && (dirty.size || frameTasks.size) && !frame) frame = requestAnimationFrame(drawDirty);
});

// Colours come from the stylesheet, so charts follow the light or dark theme.
let theme = null;
function readTheme() {
  const cs = getComputedStyle(document.documentElement);
  const v = (name) => cs.getPropertyValue(name).trim();
  return {
    line: v('--chart-line'), band: v('--chart-band'), grid: v('--line'), text: v('--muted'),
    out: v('--offline'), outBg: v('--chart-out-bg'), cursor: v('--fg'), bg: v('--card'), alert: v('--chart-alert'),
    // A board's chart of several lines tells them apart by colour, and
    // marks its panel's thresholds in their level's.
    lines: Array.from({ length: 8 }, (_, i) => v(`--line-${i + 1}`) || v('--chart-line')),
    levels: { ok: v('--online'), warn: v('--stale'), alert: v('--offline') },
  };
}
const allDrawings = new Set();
// The colours change when the system's setting does (a page that follows
// it) or when a theme is chosen on the page (theme.js).
function retheme() {
  theme = null;
  for (const d of allDrawings) if (d.canvas.isConnected) invalidate(d); else allDrawings.delete(d);
}
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', retheme);
document.addEventListener('themechange', retheme);

// Each canvas's size in CSS pixels comes from a ResizeObserver, never from
// reading the layout while drawing: on a page of hundreds of cards whose
// values just changed, one read of clientWidth costs a whole layout.
const sizes = new ResizeObserver((entries) => {
  for (const e of entries) {
    const d = e.target.drawing;
    if (!d) continue;
    const box = e.contentBoxSize?.[0];
    d.size = { w: box ? box.inlineSize : e.contentRect.width, h: box ? box.blockSize : e.contentRect.height };
    invalidate(d);
  }
});

// fit sizes a canvas's backing store to its box at the screen's pixel
// ratio and returns its context scaled to CSS pixels, with its size.
function fit(canvas, size) {
  const dpr = window.devicePixelRatio || 1;
  const { w, h } = size;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  return { ctx, w, h };
}

// breakAfter is the gap between two points past which the line breaks: a
// hole the data has is shown as one.
function breakAfter(pts, step) {
  const dts = [];
  for (let i = Math.max(1, pts.length - 64); i < pts.length; i++) dts.push(pts[i].t - pts[i - 1].t);
  dts.sort((a, b) => a - b);
  const typical = dts.length ? dts[dts.length >> 1] : 0;
  return Math.max(2.5 * step, 3 * typical, 3000);
}

// plot draws pts into the box (x0, y0)–(x1, y1) for the times from–to and
// values lo–hi: the band, then the line (in colour, if given), the parts
// beyond the limits in the out-of-range colour.
function plot(ctx, pts, step, box, lim, lineWidth, colour) {
  const { x0, x1, y0, y1, from, to, lo, hi } = box;
  const x = (t) => x0 + ((t + step / 2 - from) / (to - from)) * (x1 - x0);
  const y = (v) => y1 - ((v - lo) / (hi - lo || 1)) * (y1 - y0);
  const gap = breakAfter(pts, step);
  const runs = [];
  let run = [];
  for (let i = 0; i < pts.length; i++) {
    if (i > 0 && pts[i].t - pts[i - 1].t > gap) { runs.push(run); run = []; }
    run.push(pts[i]);
  }
  if (run.length) runs.push(run);

  ctx.save();
  ctx.beginPath();
  ctx.rect(x0, y0 - 2, x1 - x0, y1 - y0 + 4);
  ctx.clip();
  if (step) {
    ctx.fillStyle = colour ?? theme.band;
    if (colour) ctx.globalAlpha = 0.16;
    for (const r of runs) {
      ctx.beginPath();
      r.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.hi ?? p.v)) : ctx.moveTo(x(p.t), y(p.hi ?? p.v))));
      for (let i = r.length - 1; i >= 0; i--) ctx.lineTo(x(r[i].t), y(r[i].lo ?? r[i].v));
      ctx.closePath();
      ctx.fill();
    }
    ctx.globalAlpha = 1;
  }
  const line = () => {
    ctx.beginPath();
    for (const r of runs) {
      r.forEach((p, i) => (i ? ctx.lineTo(x(p.t), y(p.v)) : ctx.moveTo(x(p.t), y(p.v))));
      if (r.length === 1) ctx.arc(x(r[0].t), y(r[0].v), lineWidth, 0, 2 * Math.PI);
    }
    ctx.stroke();
  };
  ctx.lineWidth = lineWidth;
  ctx.lineJoin = 'round';
  ctx.strokeStyle = colour ?? theme.line;
  line();
  if (lim) {
    // The same line again, clipped to beyond the limits.
    ctx.beginPath();
    if (lim[1] < hi) ctx.rect(x0, y0 - 2, x1 - x0, y(lim[1]) - y0 + 2);
    if (lim[0] > lo) ctx.rect(x0, y(lim[0]), x1 - x0, y1 - y(lim[0]) + 2);
    ctx.clip();
    ctx.strokeStyle = theme.out;
    ctx.lineWidth = lineWidth + 0.5;
    line();
  }
  ctx.restore();
  return { x, y };
}

// alertBands shades the times an alert of the chart's metric fired over
// ([from, to, severity], to 0 while it fires), with a strip along the top.
function alertBands(ctx, box, spans) {
  if (!spans?.length) return;
  const { x0, x1, y0, y1, from, to } = box;
  const x = (t) => x0 + ((t - from) / (to - from)) * (x1 - x0);
  for (const [a, b] of spans) {
    const s = Math.max(a, from), e = Math.min(b || to, to);
    if (e <= s) continue;
    ctx.fillStyle = theme.alert;
    ctx.fillRect(x(s), y0, Math.max(1, x(e) - x(s)), y1 - y0);
    ctx.fillStyle = theme.out;
    ctx.fillRect(x(s), y0, Math.max(1, x(e) - x(s)), 3);
  }
}

// limitZones shades the values beyond the limits and marks them with
// dashed lines.
function limitZones(ctx, box, lim, y, dashed) {
  if (!lim) return;
  const { x0, x1, y0, y1, lo, hi } = box;
  ctx.fillStyle = theme.outBg;
  if (lim[1] < hi) ctx.fillRect(x0, y0, x1 - x0, Math.max(0, y(lim[1]) - y0));
  if (lim[0] > lo) ctx.fillRect(x0, y(lim[0]), x1 - x0, Math.max(0, y1 - y(lim[0])));
  if (!dashed) return;
  ctx.save();
  ctx.strokeStyle = theme.out;
  ctx.setLineDash([4, 4]);
  ctx.lineWidth = 1;
  for (const l of lim) {
    if (l < lo || l > hi) continue;
    ctx.beginPath();
    ctx.moveTo(x0, Math.round(y(l)) + 0.5);
    ctx.lineTo(x1, Math.round(y(l)) + 0.5);
    ctx.stroke();
  }
  ctx.restore();
}

// valueRange is the lowest and highest value of pts (with their band).
function valueRange(pts) {
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) {
    lo = Math.min(lo, p.lo ?? p.v);
    hi = Math.max(hi, p.hi ?? p.v);
  }
  return [lo, hi];
}

function limitsOf(el) {
  if (el.dataset.lo === undefined || el.dataset.hi === undefined) return null;
  return [Number(el.dataset.lo), Number(el.dataset.hi)];
}

function track(d) {
  d.canvas.drawing = d;
  d.size = null; // until the ResizeObserver says
  seen.observe(d.canvas);
  sizes.observe(d.canvas);
  allDrawings.add(d);
}

// release forgets a drawing whose canvas has left the page.
export function release(d) {
  seen.unobserve(d.canvas);
  sizes.unobserve(d.canvas);
  allDrawings.delete(d);
  dirty.delete(d);
}

// Sparkline is a card's small chart of one metric's last minutes.
export class Sparkline {
  // canvas carries the series' data-*; its metric element the limits.
  constructor(canvas, series, span) {
    this.canvas = canvas;
    this.series = series;
    this.span = span;
    this.now = () => Date.now();
    this.limits = limitsOf(canvas.closest('[data-metric]') || canvas);
    track(this);
  }

  draw() {
    const { ctx, w, h } = fit(this.canvas, this.size);
    // Up to now, or to the newest reading if a device's clock runs ahead.
    const to = Math.max(this.now(), (this.series.last()?.t ?? 0) + this.series.step + 1);
    const from = to - this.span;
    const pts = this.series.within(from, to);
    if (!pts.length) return;
    let [lo, hi] = valueRange(pts);
    const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.05 || 1;
    lo -= pad; hi += pad;
    const box = { x0: 1, x1: w - 3, y0: 2, y1: h - 2, from, to, lo, hi };
    const y = (v) => box.y1 - ((v - lo) / (hi - lo)) * (box.y1 - box.y0);
    limitZones(ctx, box, this.limits, y, false);
    const { x } = plot(ctx, pts, this.series.step, box, this.limits, 1.5);
    const p = pts[pts.length - 1];
    const out = this.limits && (p.v < this.limits[0] || p.v > this.limits[1]);
    ctx.fillStyle = out ? theme.out : theme.line;
    ctx.beginPath();
    ctx.arc(Math.min(x(p.t), box.x1), y(p.v), 2, 0, 2 * Math.PI);
    ctx.fill();
  }
}

// tickLabel shows an axis value with as many decimals as its tick step
// needs, so that close ticks (44646.2, 44646.4) do not all read 44646.
function tickLabel(v, tick) {
  let decimals = 0;
  while (decimals < 6 && Math.abs(Math.round(tick * 10 ** decimals) - tick * 10 ** decimals) > 1e-6 * 10 ** decimals) decimals++;
  const s = v.toFixed(decimals);
  return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s;
}

// SNAP_PX is how near the pointer a point must be to be read out.
const SNAP_PX = 8;

// span says a step in words people use: 30 s, 2 min, 1 h, 7 d.
export function span(ms) {
  const s = ms / 1000;
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${s / 60} min`;
  if (s < 86400) return `${s / 3600} h`;
  return `${s / 86400} d`;
}

// niceTick is a round step for about n ticks over a span of values.
function niceTick(span, n) {
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
}

const timeTicks = [S, 2 * S, 5 * S, 10 * S, 15 * S, 30 * S, M, 2 * M, 5 * M, 10 * M, 15 * M, 30 * M, H, 2 * H, 3 * H, 6 * H, 12 * H, D, 2 * D, 7 * D];
const hm = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
export const hms = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
const md = new Intl.DateTimeFormat('en-GB', { timeZone: TZ, month: 'short', day: 'numeric' });

// Chart is a device page's chart of one metric, or a board panel's of
// several lines (each a device × metric, read from the figure's
// [data-line] items): axes, the limits, the min–max band of bucketed
// history, a panel's thresholds, and a cursor that the pointer or the
// arrow keys move, read out in words in the figure's <output>.
export class Chart {
  constructor(fig) {
    this.fig = fig;
    this.canvas = fig.querySelector('canvas');
    this.readout = fig.querySelector('output');
    this.hint = this.readout.textContent;
    this.metric = fig.dataset.chart;
    this.label = fig.dataset.label || this.metric; // what people read
    this.decimals = Number(fig.dataset.decimals) || 0;
    this.unit = fig.dataset.unit || '';
    this.limits = limitsOf(fig);
    this.readAlerts();
    this.series = new Series(Number(fig.dataset.step) || 0);
    // A panel's lines: null on a device page. A line whose history the
    // page did not embed has known false until it is set.
    const lineEls = [...fig.querySelectorAll('[data-line]')];
    this.lines = lineEls.length ? lineEls.map((el, i) => {
      const s = Series.fromData(el);
      return { el, device: el.dataset.device, metric: el.dataset.chart, label: el.dataset.label, colour: i % 8, known: !!s, series: s || new Series(Number(el.dataset.step) || 0) };
    }) : null;
    const th = fig.closest('[data-thresholds]')?.dataset.thresholds;
    this.thresholds = th ? JSON.parse(th) : [];
    this.from = Number(fig.dataset.from);
    this.to = Number(fig.dataset.to);
    this.cursor = null; // the time of the point under the cursor
    this.layout = null;
    // The canvas says in its label what the server's summary said.
    fig.querySelector('.chart-summary')?.setAttribute('hidden', '');
    track(this);
    this.canvas.addEventListener('pointermove', (e) => this.point(e));
    this.canvas.addEventListener('pointerdown', (e) => this.point(e));
    this.canvas.addEventListener('pointerleave', () => this.setCursor(null));
    this.canvas.addEventListener('keydown', (e) => this.key(e));
    this.canvas.addEventListener('blur', () => this.setCursor(null));
  }

  // width is the width of the plot in CSS pixels, for picking a step.
  width() { return Math.max(100, (this.size?.w ?? this.canvas.clientWidth) - 56); }

  setWindow(from, to) {
    this.from = from;
    this.to = to;
    this.relabel = true; // the label names the window
    invalidate(this);
  }

  setSeries(series, line) {
    if (line) { line.series = series; line.known = true; } else this.series = series;
    this.cursor = null;
    this.relabel = true;
    invalidate(this);
  }

  // readAlerts takes the spans its alerts fired over from the figure
  // (data-alerts), again after the server sent a fresh copy.
  readAlerts() {
    this.alerts = this.fig.dataset.alerts ? JSON.parse(this.fig.dataset.alerts) : [];
  }

  // plotted is what the chart draws: each line with its points in the
  // window.
  plotted() {
    if (!this.lines) return [{ series: this.series, pts: this.shown(), label: this.label }];
    return this.lines.map((l) => ({ ...l, pts: l.series.within(this.from, this.to) }));
  }

  // step is the widest bucket of the chart's lines.
  step() { return this.lines ? Math.max(0, ...this.lines.map((l) => l.series.step)) : this.series.step; }

  // summary says in words what the chart shows.
  summary() {
    const all = this.plotted().flatMap((l) => l.pts);
    const label = this.lines?.length > 1 ? `${this.lines.length} series` : this.plotted()[0]?.label ?? this.label;
    if (!all.length) return `${label}: no readings in this range`;
    const [lo, hi] = valueRange(all);
    const u = this.unit ? ` ${this.unit}` : '';
    let s = `${label} from ${localTime(this.from)} to ${localTime(this.to)}: between ${this.fmt(lo)} and ${this.fmt(hi)}${u}`;
    if (this.fig.dataset.expected) s += `; expected ${this.fig.dataset.expected}`;
    return s;
  }

  // fmt shows a value of this chart's metric.
  fmt(v) { return formatValue(v, this.decimals); }

  // saw raises the chart's decimals for a live value that needs more.
  saw(v) { this.decimals = Math.max(this.decimals, decimalsOf(v)); }

  // shown is the points in the window (of a device page's one line).
  shown() { return this.series.within(this.from, this.to); }

  // times are the times of the points in the window, of every line, in
  // order: where the cursor may stop.
  times() {
    if (!this.lines) return this.shown();
    const ts = [...new Set(this.plotted().flatMap((l) => l.pts.map((p) => p.t)))].sort((a, b) => a - b);
    return ts.map((t) => ({ t }));
  }

  point(e) {
    if (!this.layout) return;
    const r = this.canvas.getBoundingClientRect();
    const { x0, x1, from, to } = this.layout;
    const t = from + ((e.clientX - r.left - x0) / (x1 - x0)) * (to - from);
    const p = this.nearest(t);
    // Only a point (or a bucket's middle) within a few pixels of the
    // pointer is read out: far from any, the read-out says nothing.
    const step = this.step();
    const px = (ms) => (ms / (to - from)) * (x1 - x0);
    const near = p && Math.abs(px(p.t + step / 2 - t)) <= SNAP_PX + px(step / 2);
    this.setCursor(near ? p.t : null);
  }

  nearest(t, pts = this.times()) {
    if (!pts.length) return null;
    const half = this.step() / 2;
    let best = pts[0];
    for (const p of pts) if (Math.abs(p.t + half - t) < Math.abs(best.t + half - t)) best = p;
    return best;
  }

  key(e) {
    const pts = this.times();
    if (!pts.length) return;
    let i = this.cursor === null ? pts.length - 1 : pts.findIndex((p) => p.t === this.cursor);
    if (i < 0) i = pts.length - 1;
    const by = e.shiftKey ? 10 : 1;
    switch (e.key) {
      case 'ArrowLeft': i = Math.max(0, i - by); break;
      case 'ArrowRight': i = Math.min(pts.length - 1, i + by); break;
      case 'Home': i = 0; break;
      case 'End': i = pts.length - 1; break;
      case 'Escape': this.setCursor(null); return;
      default: return;
    }
    e.preventDefault();
    this.setCursor(pts[i].t);
  }

  setCursor(t) {
    this.cursor = t;
    this.readout.textContent = t === null ? this.hint : this.describe(t);
    invalidate(this);
  }

  // at is each line's point nearest t, if one is within a bucket (or, for
  // readings, a few seconds) of it.
  at(t) {
    const out = [];
    for (const l of this.plotted()) {
      const p = this.nearest(t, l.pts);
      if (p && Math.abs(p.t - t) <= Math.max(l.series.step, 5000)) out.push({ line: l, p });
    }
    return out;
  }

  // describe says the point at t in words: a device page's with its
  // bucket's min and max, a panel's every line's value.
  describe(t) {
    const u = this.unit ? ` ${this.unit}` : '';
    if (this.lines) {
      const vals = this.at(t).map(({ line, p }) => `${line.label} ${this.fmt(p.v)}${u}`);
      return vals.length ? `${localTime(t)}: ${vals.join('; ')}` : this.hint;
    }
    const p = this.series.pts[this.series.index(t)];
    if (!p || p.t !== t) return this.hint;
    let s = `${localTime(p.t)}: ${this.fmt(p.v)}${u}`;
    if (this.series.step) {
      s = `${localTime(p.t)} (${span(this.series.step)}): mean ${this.fmt(p.v)}${u}`;
      if (p.lo !== undefined && p.hi !== undefined && p.lo !== p.hi) s += `, min ${this.fmt(p.lo)}, max ${this.fmt(p.hi)}`;
    }
    if (this.limits && ((p.lo ?? p.v) < this.limits[0] || (p.hi ?? p.v) > this.limits[1])) s += ' — out of range';
    return s;
  }

  // relabelNow says what the chart shows to screen readers, in view or not.
  relabelNow() {
    if (this.relabel) {
      this.relabel = false;
      this.canvas.setAttribute('aria-label', this.summary());
    }
  }

  draw() {
    this.relabelNow();
    const { ctx, w, h } = fit(this.canvas, this.size);
    const { from, to } = this;
    const lines = this.plotted();
    const all = lines.flatMap((l) => l.pts);
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    let [lo, hi] = all.length ? valueRange(all) : [0, 1];
    if (this.limits) { lo = Math.min(lo, this.limits[0]); hi = Math.max(hi, this.limits[1]); }
    for (const th of this.thresholds) if (all.length) { lo = Math.min(lo, th.value); hi = Math.max(hi, th.value); }
    const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.05 || 1;
    lo -= pad; hi += pad;
    const tick = niceTick(hi - lo, Math.max(2, Math.floor(h / 50)));
    const labels = [];
    for (let v = Math.ceil(lo / tick) * tick; v <= hi; v += tick) labels.push(v);
    const x0 = 8 + Math.max(...labels.map((v) => ctx.measureText(tickLabel(v, tick)).width), 20);
    const box = { x0, x1: w - 8, y0: 8, y1: h - 22, from, to, lo, hi };
    this.layout = box;
    const y = (v) => box.y1 - ((v - lo) / (hi - lo)) * (box.y1 - box.y0);

    limitZones(ctx, box, this.limits, y, true);
    alertBands(ctx, box, this.alerts);
    // Value grid and labels.
    ctx.strokeStyle = theme.grid;
    ctx.fillStyle = theme.text;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    for (const v of labels) {
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(box.x0, yy); ctx.lineTo(box.x1, yy); ctx.stroke();
      ctx.fillText(tickLabel(v, tick), box.x0 - 6, yy);
    }
    // Time labels, at round times of the plant's zone, about 110 px apart.
    const span = to - from;
    const tstep = timeTicks.find((s) => (s / span) * (box.x1 - box.x0) >= 110) ?? 7 * D;
    const fmt = tstep >= D ? md : tstep < M ? hms : hm;
    const off = -offsetAt(from);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (let t = floorTo(from - off, tstep) + off + tstep; t < to; t += tstep) {
      const xx = Math.round(box.x0 + ((t - from) / span) * (box.x1 - box.x0)) + 0.5;
      ctx.beginPath(); ctx.moveTo(xx, box.y0); ctx.lineTo(xx, box.y1 + 4); ctx.stroke();
      const label = fmt.format(t);
      const half = ctx.measureText(label).width / 2;
      if (xx - half >= 0 && xx + half <= w) ctx.fillText(label, xx, box.y1 + 6);
    }
    thresholdLines(ctx, box, this.thresholds, y);
    if (!all.length) {
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillStyle = theme.text;
      ctx.fillText('No readings in this range', (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2);
      return;
    }
    let x = null;
    for (const l of lines) {
      if (!l.pts.length) continue;
      const colour = this.lines ? theme.lines[l.colour] : undefined;
      ({ x } = plot(ctx, l.pts, l.series.step, box, this.limits, this.lines ? 1.5 : 2, colour));
    }
    if (this.cursor === null || !x) return;
    const marks = this.at(this.cursor).filter(({ p }) => !this.lines ? p.t === this.cursor : true);
    if (!marks.length) return;
    const xx = Math.round(x(this.cursor)) + 0.5;
    ctx.strokeStyle = theme.cursor;
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(xx, box.y0); ctx.lineTo(xx, box.y1); ctx.stroke();
    for (const { line, p } of marks) {
      ctx.fillStyle = theme.bg;
      ctx.strokeStyle = this.lines ? theme.lines[line.colour] : theme.cursor;
      ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(x(p.t), y(p.v), 4, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    }
  }
}

// thresholdLines marks where a panel's threshold levels begin: a dashed
// line in the level's colour.
function thresholdLines(ctx, box, thresholds, y) {
  if (!thresholds?.length) return;
  ctx.save();
  ctx.setLineDash([6, 4]);
  ctx.lineWidth = 1;
  for (const th of thresholds) {
    if (th.value < box.lo || th.value > box.hi) continue;
    ctx.strokeStyle = theme.levels[th.level] || theme.text;
    const yy = Math.round(y(th.value)) + 0.5;
    ctx.beginPath(); ctx.moveTo(box.x0, yy); ctx.lineTo(box.x1, yy); ctx.stroke();
  }
  ctx.restore();
}
