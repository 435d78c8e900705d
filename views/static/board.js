// board.js is a board page's part of live.js: its panels' charts and
// sparklines, drawn from the history embedded in the page and extended by
// live readings, each stat's threshold level and each gauge's meter kept
// current, a variable's choice applied as it is made; and, for an
// operator in edit mode, the editor: a form of the board's variables and
// panels built from the board's JSON and the server's policy (panel
// types, levels, limits), with the fleet's devices and metrics to pick
// from, an undo of each change, and a save that posts the JSON.
//
// What the page shows of the fleet (which devices a selector picks) is
// the server's: after a save, a reconnect or a gap, the page's grid is
// fetched again ([data-swap]) and bound anew.

import { Series, Sparkline, Chart, invalidate, release } from '/static/chart.js';
import { fetchSeries } from '/static/device.js';

const SPARK_SPAN = 15 * 60 * 1000;
// CYCLE_RETRY is how long a cycling kiosk waits before it tries again to
// reach the next board (ms).
const CYCLE_RETRY = 3000;

export function init(live) {
  const key = (d, m) => `${d}\n${m}`;
  const charts = new Map(); // "device\nmetric" -> [{ chart, line }]
  const sparks = new Map(); // "device\nmetric" -> [Sparkline]
  const form = document.querySelector('[data-testid="range-picker"]');
  // A range that is not custom moves with the clock, unless the board is
  // a replay, which moves it (replay.js).
  const bar = document.getElementById('replay-bar');
  let replay = null;
  const moving = () => !bar && (!form || form.elements.range.value !== 'custom');

  function bind() {
    for (const list of charts.values()) for (const { chart } of list) release(chart);
    for (const list of sparks.values()) for (const s of list) release(s);
    const had = new Map(charts);
    charts.clear();
    sparks.clear();
    const missing = [];
    for (const fig of document.querySelectorAll('#board-grid figure[data-lines]')) {
      const chart = new Chart(fig);
      chart.span = chart.to - chart.from;
      for (const line of chart.lines || []) {
        if (!line.known) missing.push({ chart, line });
        const k = key(line.device, line.metric);
        // A fresh copy of the grid holds what the store had when the
        // server rendered it: what came live since is kept.
        const old = had.get(k)?.find((o) => o.line.series.step === line.series.step);
        if (old && !bar) {
          const last = line.series.last()?.t ?? -Infinity;
          for (const p of old.line.series.pts) {
            if (p.t <= last) continue;
            line.series.put(p);
            chart.saw(p.v);
          }
        }
        charts.set(k, [...(charts.get(k) || []), { chart, line }]);
      }
    }
    for (const canvas of document.querySelectorAll('#board-grid canvas.spark')) {
      const d = canvas.closest('[data-device]').dataset.device;
      const m = canvas.closest('[data-metric]').dataset.metric;
      const sp = new Sparkline(canvas, Series.fromData(canvas) || new Series(Number(canvas.dataset.step) || 0), SPARK_SPAN);
      sp.now = live.serverNow;
      invalidate(sp);
      const k = key(d, m);
      sparks.set(k, [...(sparks.get(k) || []), sp]);
    }
    tick();
    // History the server did not embed (a slow store): from the API.
    for (const { chart, line } of missing) {
      fetchSeries(line.device, line.metric, chart.from, chart.to, chart.width())
        .then((s) => { s.merge(line.series); chart.setSeries(s, line); })
        .catch((err) => console.warn('iotdash: loading a chart failed', err));
    }
    follow();
    replay?.bound();
  }

  // follow keeps a board whose series select devices (by kind or a
  // pattern) up with the fleet: every so often (data-follow, ms, the
  // server's) the page's grid is fetched again, with the devices the
  // selectors pick now, and the subscription follows it (data-live).
  let following = 0;
  function follow() {
    const grid = document.getElementById('board-grid');
    if (grid?.dataset.live && grid.dataset.live !== document.body.dataset.live) {
      document.body.dataset.live = grid.dataset.live;
      live.subscribe(grid.dataset.live === '-' ? [] : grid.dataset.live.split(' '));
    }
    clearInterval(following);
    const every = Number(grid?.dataset.follow);
    if (every > 0) following = setInterval(live.refreshSoon, every);
  }

  function tick() {
    if (!moving()) return;
    const to = live.serverNow() + 1;
    for (const list of charts.values()) for (const { chart } of list) chart.setWindow(to - chart.span, to);
  }

  // level shows a stat's value against its panel's thresholds: the level
  // as a word and a class, as the server renders it.
  function level(r) {
    for (const card of document.querySelectorAll(`#board-grid .stat[data-device="${CSS.escape(r.d)}"]`)) {
      const el = card.querySelector(`[data-metric="${CSS.escape(r.m)}"]`);
      if (!el || r.t < Number(el.dataset.t || 0)) continue;
      const meter = el.querySelector('meter');
      if (meter) meter.value = Math.min(Math.max(r.v, meter.min), meter.max);
      const panel = card.closest('[data-thresholds]');
      if (!panel?.dataset.thresholds) continue;
      let lv = '';
      for (const t of JSON.parse(panel.dataset.thresholds)) if (r.v >= t.value) lv = t.level;
      for (const c of [...card.classList]) if (c.startsWith('level-')) card.classList.remove(c);
      let word = card.querySelector('[data-testid="level"]');
      if (lv) {
        card.classList.add(`level-${lv}`);
        if (!word) {
          word = document.createElement('span');
          word.className = 'level';
          word.dataset.testid = 'level';
          el.querySelector('.stat-value').append(word);
        }
        word.textContent = lv;
      } else word?.remove();
    }
  }

  bind();
  // A replay plays the panels from history, through the same drawings.
  if (bar) {
    import('/static/replay.js').then((player) => {
      replay = player.start(bar, {
        lines: () => [...charts.values()].flat(),
        sparks: (d, m) => sparks.get(key(d, m)) || [],
        sparkSpan: SPARK_SPAN,
        now: live.serverNow,
        // value shows a reading of the past as the page shows a live one,
        // older than what it shows or not.
        value(r) {
          for (const el of document.querySelectorAll(`#board-grid [data-device="${CSS.escape(r.d)}"] [data-metric="${CSS.escape(r.m)}"]`)) el.dataset.t = '0';
          level(r);
          live.show(r);
        },
        status: (d, s) => live.status([{ d, s }]),
        seen: live.seen,
      });
    });
  }
  // A kiosk cycling through boards shows the next after a while: the
  // server says which and when. It leaves only for a server that answers:
  // a wall that went while the network or iotdash was down would show the
  // browser's error page, with no script to bring it back.
  const board = document.querySelector('[data-testid="board"][data-next]');
  if (board) {
    const next = async () => {
      try {
        const res = await fetch(board.dataset.next, { method: 'HEAD', cache: 'no-store' });
        if (res.status < 500) {
          location.assign(board.dataset.next);
          return;
        }
      } catch { /* not reachable: try again */ }
      setTimeout(next, CYCLE_RETRY);
    };
    setTimeout(next, Number(board.dataset.every));
  }
  // A variable's choice shows at once (the form is in the URL either way).
  const vars = document.querySelector('[data-testid="board-vars"]');
  vars?.addEventListener('change', () => vars.requestSubmit());
  const editor = document.getElementById('editor');
  if (editor?.dataset.policy) edit(editor);

  return {
    // A board shows only some metrics of its devices.
    partial: true,
    // An editor holds a draft that a reload would lose.
    unsaved: () => !!editor,
    reading(r) {
      if (bar) return; // a replay shows history, not what happens now
      const k = key(r.d, r.m);
      for (const { chart, line } of charts.get(k) || []) {
        if (!moving() && (r.t < chart.from || r.t >= chart.to)) continue;
        line.series.add(r.t, r.v);
        chart.saw(r.v);
        if (moving()) line.series.trim(chart.from);
        invalidate(chart);
      }
      for (const sp of sparks.get(k) || []) {
        sp.series.add(r.t, r.v);
        sp.series.trim(live.serverNow() - SPARK_SPAN);
        invalidate(sp);
      }
      level(r);
    },
    tick,
    // A replay's ages are from its moment.
    shownAt: () => replay?.at(),
    swapped: bind,
    // What fires changed: if on a device the board shows, a fresh copy
    // of the grid brings the bands and marks of its charts and stats.
    alerts(now, before) {
      const shown = document.body.dataset.live || '-';
      const ids = shown === '*' ? Object.keys({ ...now.devices, ...before?.devices }) : shown === '-' ? [] : shown.split(' ');
      if (ids.some((id) => JSON.stringify(now.devices[id]) !== JSON.stringify(before?.devices[id]))) live.refreshSoon();
    },
  };
}

// --- The editor ---

// edit replaces the editor's JSON form with a form of the board's panels.
function edit(section) {
  const policy = JSON.parse(section.dataset.policy);
  const jsonForm = section.querySelector('[data-testid="editor-json"]');
  const action = jsonForm.getAttribute('action');
  let draft = JSON.parse(jsonForm.elements.board.value);
  const undo = []; // earlier drafts, as JSON, the newest last
  const fleet = { devices: [], kinds: [], locations: [], metrics: [] };

  const root = document.createElement('form');
  root.className = 'board-editor';
  root.dataset.testid = 'board-editor';
  root.noValidate = true;
  const status = document.createElement('p');
  status.className = 'editor-status';
  status.setAttribute('role', 'status');
  status.dataset.testid = 'editor-status';
  jsonForm.hidden = true;
  jsonForm.before(root, status);

  // The fleet's devices, kinds, locations and metrics, to pick from.
  fetch('/api/v1/devices', { cache: 'no-store' }).then((r) => (r.ok ? r.json() : [])).then((list) => {
    const sorted = (set) => [...set].filter(Boolean).sort();
    fleet.devices = list.map((d) => ({ id: d.id, name: d.name || d.id, kind: d.kind || '', metrics: Object.keys(d.latest || {}) }));
    fleet.kinds = sorted(new Set(list.map((d) => d.kind)));
    fleet.locations = sorted(new Set(list.map((d) => d.location)));
    fleet.metrics = sorted(new Set(fleet.devices.flatMap((d) => d.metrics)));
    datalists();
  }).catch((err) => console.warn('iotdash: reading the fleet failed', err));

  function datalists() {
    const lists = {
      'dl-device': [
        ...(draft.variables || []).filter((v) => v.name).map((v) => [`$${v.name}`, `the ${v.kind} picked on the page`]),
        ...fleet.devices.map((d) => [d.id, d.name === d.id ? d.kind : `${d.name} · ${d.kind}`]),
      ],
      'dl-kind': fleet.kinds.map((k) => [k, '']),
      'dl-location': fleet.locations.map((l) => [l, '']),
      'dl-metric': fleet.metrics.map((m) => [m, '']),
    };
    for (const [id, options] of Object.entries(lists)) {
      let dl = document.getElementById(id);
      if (!dl) {
        dl = document.createElement('datalist');
        dl.id = id;
        section.append(dl);
      }
      dl.replaceChildren(...options.map(([value, label]) => {
        const o = document.createElement('option');
        o.value = value;
        if (label) o.label = label;
        return o;
      }));
    }
  }

  // change records the draft before f changes it, for undo, and shows
  // the result: the whole form again when its shape may change, else only
  // the undo button (re-rendering on a text field's change, which comes as
  // it loses focus, would swallow the click that took the focus away).
  function change(f, reshape = true) {
    undo.push(JSON.stringify(draft));
    if (undo.length > 100) undo.shift();
    f(draft);
    if (reshape) render(); else root.querySelector('[data-testid="undo"]').disabled = false;
    say('');
  }

  function say(text) { status.textContent = text; }

  // el makes an element with attributes and children.
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === false) continue;
      if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(e.dataset, v);
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
    e.append(...children.filter((c) => c !== null && c !== undefined));
    return e;
  }

  // button is a button whose words say what it does and, for a screen
  // reader, to what (the visible words first, as its accessible name).
  function button(words, what, action, onclick, disabled = false) {
    return el('button', { type: 'button', disabled, dataset: { action }, onclick }, words, el('span', { class: 'sr' }, ` ${what}`));
  }

  // field is a labelled input, or a select of options ([value, label]),
  // that changes the draft when it changes.
  function field(id, label, { tag = 'input', options = [], ...attrs }, set) {
    return el('div', { class: 'field' },
      el('label', { for: id }, label),
      el(tag, { id, ...attrs, onchange: (e) => change((d) => set(d, e.target.value), tag === 'select') },
        ...options.map(([v, l]) => el('option', { value: v, selected: v === String(attrs.value) }, l))));
  }

  const SELECTORS = [['device', 'Device'], ['kind', 'Every device of kind'], ['pattern', 'Devices whose id matches'], ['location', 'Devices whose location matches']];
  // A series' selector is the one of its keys that is present, empty or not.
  const selectorOf = (s) => SELECTORS.find(([k]) => typeof s[k] === 'string')?.[0] || 'device';
  const listFor = { device: 'dl-device', kind: 'dl-kind', pattern: 'dl-device', location: 'dl-location' };
  const numberOrNull = (v) => (v.trim() === '' || !Number.isFinite(Number(v)) ? undefined : Number(v));

  function seriesRow(p, i, j) {
    const s = draft.panels[i].series[j];
    const sel = selectorOf(s);
    const id = `p${i}-s${j}`;
    const n = `series ${j + 1} of panel ${i + 1}`;
    return el('li', { class: 'editor-series', dataset: { testid: 'editor-series' } },
      field(`${id}-by`, 'Show', { tag: 'select', value: sel, options: SELECTORS }, (d, v) => {
        const ser = d.panels[i].series[j];
        const value = ser[sel];
        for (const [k] of SELECTORS) delete ser[k];
        ser[v] = value || '';
      }),
      field(`${id}-what`, SELECTORS.find(([k]) => k === sel)[1], { value: s[sel] || '', list: listFor[sel], autocomplete: 'off', spellcheck: false },
        (d, v) => { d.panels[i].series[j][sel] = v.trim(); }),
      field(`${id}-metric`, 'Metric', { value: s.metric || '', list: 'dl-metric', autocomplete: 'off', spellcheck: false },
        (d, v) => { d.panels[i].series[j].metric = v.trim(); }),
      button('Remove', n, 'remove-series', () => change((d) => d.panels[i].series.splice(j, 1))));
  }

  function thresholdRow(i, j) {
    const t = draft.panels[i].thresholds[j];
    const id = `p${i}-t${j}`;
    return el('li', { class: 'editor-threshold' },
      field(`${id}-value`, 'From', { type: 'number', step: 'any', value: String(t.value) }, (d, v) => { d.panels[i].thresholds[j].value = numberOrNull(v) ?? 0; }),
      field(`${id}-level`, 'Level', { tag: 'select', value: t.level, options: policy.levels.map((l) => [l, l]) }, (d, v) => { d.panels[i].thresholds[j].level = v; }),
      button('Remove', `threshold ${j + 1} of panel ${i + 1}`, 'remove-threshold', () => change((d) => d.panels[i].thresholds.splice(j, 1))));
  }

  function panelEditor(p, i) {
    const n = draft.panels.length;
    const id = `p${i}`;
    const widths = Array.from({ length: policy.columns }, (_, k) => [String(k + 1), `${k + 1} of ${policy.columns}`]);
    const heights = Array.from({ length: policy.max_height }, (_, k) => [String(k + 1), String(k + 1)]);
    const thresholds = p.thresholds || [];
    return el('li', { class: 'editor-panel', dataset: { testid: 'editor-panel' } },
      el('fieldset', {},
        el('legend', {}, `Panel ${i + 1}`),
        el('div', { class: 'editor-row' },
          field(`${id}-title`, 'Title', { value: p.title || '', maxlength: String(policy.title_len) }, (d, v) => { d.panels[i].title = v; }),
          field(`${id}-type`, 'Type', { tag: 'select', value: p.type, options: policy.types.map((t) => [t.Value, t.Label]) }, (d, v) => { d.panels[i].type = v; }),
          field(`${id}-w`, 'Width', { tag: 'select', value: p.w || '', options: [['', 'Default'], ...widths] }, (d, v) => { d.panels[i].w = Number(v) || undefined; }),
          field(`${id}-h`, 'Height', { tag: 'select', value: p.h || '', options: [['', 'Default'], ...heights] }, (d, v) => { d.panels[i].h = Number(v) || undefined; }),
          field(`${id}-unit`, 'Unit', { value: p.unit || '', maxlength: '16' }, (d, v) => { d.panels[i].unit = v.trim() || undefined; }),
          field(`${id}-decimals`, 'Decimals', { type: 'number', min: '0', max: String(policy.max_decimals), value: p.decimals ?? '' }, (d, v) => { d.panels[i].decimals = numberOrNull(v); }),
          p.type === 'gauge' ? field(`${id}-min`, 'Min', { type: 'number', step: 'any', value: p.min ?? '' }, (d, v) => { d.panels[i].min = numberOrNull(v); }) : null,
          p.type === 'gauge' ? field(`${id}-max`, 'Max', { type: 'number', step: 'any', value: p.max ?? '' }, (d, v) => { d.panels[i].max = numberOrNull(v); }) : null),
        el('h3', {}, 'Series'),
        el('ul', { class: 'editor-list' }, ...p.series.map((s, j) => seriesRow(p, i, j))),
        button('Add series', `to panel ${i + 1}`, 'add-series', () => change((d) => d.panels[i].series.push({ device: '', metric: '' })), p.series.length >= policy.series),
        el('h3', {}, 'Thresholds'),
        el('ul', { class: 'editor-list' }, ...thresholds.map((t, j) => thresholdRow(i, j))),
        button('Add threshold', `to panel ${i + 1}`, 'add-threshold', () => change((d) => {
          const ts = (d.panels[i].thresholds ||= []);
          ts.push({ value: ts.length ? ts[ts.length - 1].value + 1 : 0, level: policy.levels[Math.min(ts.length + 1, policy.levels.length - 1)] });
        }), thresholds.length >= policy.thresholds),
        el('p', { class: 'editor-panel-actions' },
          button('Move up', `panel ${i + 1}`, 'move-up', () => change((d) => d.panels.splice(i - 1, 0, ...d.panels.splice(i, 1))), i === 0),
          button('Move down', `panel ${i + 1}`, 'move-down', () => change((d) => d.panels.splice(i + 1, 0, ...d.panels.splice(i, 1))), i === n - 1),
          button('Remove', `panel ${i + 1}`, 'remove-panel', () => change((d) => d.panels.splice(i, 1))))));
  }

  function variableRow(v, k) {
    const id = `v${k}`;
    return el('li', { class: 'editor-series', dataset: { testid: 'editor-variable' } },
      field(`${id}-name`, 'Name', { value: v.name, autocomplete: 'off', spellcheck: false }, (d, x) => { d.variables[k].name = x.trim(); }),
      field(`${id}-kind`, 'A device of kind', { value: v.kind, list: 'dl-kind', autocomplete: 'off', spellcheck: false }, (d, x) => { d.variables[k].kind = x.trim(); }),
      button('Remove', `variable ${k + 1}`, 'remove-variable', () => change((d) => d.variables.splice(k, 1))));
  }

  function render() {
    const focused = document.activeElement?.id;
    const variables = draft.variables || [];
    root.replaceChildren(
      field('edit-title', 'Board title', { value: draft.title, maxlength: String(policy.title_len), required: true }, (d, v) => { d.title = v; }),
      el('fieldset', { class: 'editor-variables' },
        el('legend', {}, 'Variables'),
        el('p', { class: 'hint' }, 'A variable is a device picked on the board’s page; a series shows it as the device $name.'),
        el('ul', { class: 'editor-list' }, ...variables.map(variableRow)),
        button('Add variable', 'to the board', 'add-variable', () => change((d) => (d.variables ||= []).push({ name: '', kind: '' })), variables.length >= policy.variables)),
      el('ol', { class: 'editor-panels' }, ...draft.panels.map(panelEditor)),
      el('p', { class: 'editor-actions' },
        el('button', {
          type: 'button', dataset: { testid: 'add-panel' }, disabled: draft.panels.length >= policy.panels,
          onclick: () => change((d) => d.panels.push({ title: '', type: policy.types[0].Value, series: [{ device: '', metric: '' }] })),
        }, 'Add panel'),
        el('button', { type: 'button', dataset: { testid: 'undo' }, disabled: !undo.length, onclick: () => { draft = JSON.parse(undo.pop()); render(); say('Undid the last change.'); } }, 'Undo'),
        el('button', { type: 'submit', dataset: { testid: 'save-board' } }, 'Save'),
        el('a', { href: location.pathname }, 'Cancel')));
    if (focused) document.getElementById(focused)?.focus();
    datalists();
  }

  root.addEventListener('submit', async (e) => {
    e.preventDefault();
    // A field being typed in counts, even before it loses focus.
    document.activeElement?.dispatchEvent(new Event('change', { bubbles: true }));
    say('Saving…');
    try {
      // The version the change was made to: a save by someone else since
      // is not overwritten.
      const version = Number(document.querySelector('[data-testid="board"]').dataset.version);
      const res = await fetch(action, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...draft, version }) });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) { say(`Not saved: ${body.error || res.statusText}`); return; }
      location.assign(location.pathname);
    } catch (err) {
      say(`Not saved: ${err.message}`);
    }
  });

  render();
}
