// overview.js is the fleet overview's part of live.js: the filter, applied
// as it is typed and kept in the URL, the subscription that follows what
// the filter leaves on screen, and each card's sparklines of the last 15
// minutes, extended by live readings.

import { Series, Sparkline, invalidate, release } from '/static/chart.js';

const SPAN = 15 * 60 * 1000;
const MAX_IDS = 1000; // past this, subscribing to all is cheaper than listing

export function init(live) {
  // A fleet larger than a page is filtered and paged by the server: the
  // form and the counts' links then load the page they ask for.
  const paged = document.getElementById('device-list')?.dataset.paged !== undefined;
  const form = paged ? null : document.querySelector('[data-testid="filter"]');
  const text = form?.elements.q;
  const status = form?.elements.status;
  // How the devices are shown (view, group) is the server's to render;
  // the table's sort is kept in #device-list's data-sort.
  const layout = document.querySelector('[data-testid="filter"]')?.elements;
  const sparks = new Map(); // "device\nmetric" -> Sparkline
  const hasHistory = document.body.dataset.history !== undefined;

  // Sparklines: from the page's embedded history, or what arrives live.
  function bindSparks() {
    for (const canvas of document.querySelectorAll('canvas.spark')) {
      if (canvas.drawing) continue;
      const key = `${canvas.closest('[data-device]').dataset.device}\n${canvas.closest('[data-metric]').dataset.metric}`;
      const embedded = Series.fromData(canvas);
      let sp = sparks.get(key);
      if (sp) {
        // A fresh copy of the list: keep what arrived live, take the history.
        if (embedded) sp.series.merge(embedded);
        release(sp);
        sp = new Sparkline(canvas, sp.series, SPAN);
      } else {
        sp = new Sparkline(canvas, embedded || new Series(Number(canvas.dataset.step) || 0), SPAN);
      }
      sp.now = live.serverNow;
      sparks.set(key, sp);
      invalidate(sp);
    }
  }

  // matches says whether a card passes the filter, as views.Filter.Match:
  // the text in what the server says is searchable (data-search).
  function matches(card, q, st) {
    if (st === 'attention') {
      if (card.dataset.status === 'online' && card.dataset.out === undefined) return false;
    } else if (st && card.dataset.status !== st) return false;
    return !q || (card.dataset.search || '').includes(q);
  }

  let subscribed = '';
  let subTimer = 0;
  function apply() {
    const q = (text?.value || '').trim().toLowerCase();
    const st = status?.value || '';
    const cards = document.querySelectorAll('#device-list [data-device]');
    const ids = [];
    let needHistory = false;
    for (const card of cards) {
      const show = matches(card, q, st);
      const item = card.matches('tr') ? card : card.parentElement; // a row, or a card's <li>
      if (item.hidden === show) {
        item.hidden = !show;
        if (show && hasHistory && card.querySelector('canvas.spark:not([data-points])')) needHistory = true;
      }
      if (show) ids.push(card.dataset.device);
    }
    // A group none of whose devices passes is left out whole.
    for (const g of document.querySelectorAll('#device-list [data-group]')) {
      const none = [...g.querySelectorAll('[data-device]')].every((c) => (c.matches('tr') ? c : c.parentElement).hidden);
      if (g.hidden !== none) g.hidden = none;
    }
    const filtered = paged || q !== '' || st !== '';
    const shown = paged ? null : document.getElementById('shown'); // a page: the server's words
    if (shown) {
      const noun = cards.length === 1 ? ' device' : ' devices';
      shown.textContent = filtered ? `Showing ${ids.length} of ${cards.length}${noun}` : `${cards.length}${noun}`;
    }
    const none = paged ? null : document.getElementById('no-match');
    if (none) none.hidden = ids.length > 0 || cards.length === 0;
    for (const a of document.querySelectorAll('[data-count] a')) {
      a.toggleAttribute('aria-current', a.closest('[data-count]').dataset.count === st);
    }
    // Only what is on screen is subscribed to (a page: its cards); all of
    // it, and devices not seen yet, when nothing is filtered out.
    const want = !filtered || ids.length > MAX_IDS ? ['*'] : ids;
    const key = want.join(' ');
    if (key !== subscribed) {
      // The first subscription goes out with the connection; a change
      // waits for a pause in the typing.
      const first = subscribed === '';
      subscribed = key;
      clearTimeout(subTimer);
      if (first) live.subscribe(want); else subTimer = setTimeout(() => live.subscribe(want), 150);
    }
    if (needHistory) live.refreshSoon(); // the server reads their sparklines
    return filtered;
  }

  // The filter, the view and the sort live in the URL, so that a view can
  // be bookmarked (the parameters of views.Filter.URL).
  function urlOf() {
    const p = new URLSearchParams();
    if (text?.value.trim()) p.set('q', text.value.trim());
    if (status?.value) p.set('status', status.value);
    if (layout?.view.value) p.set('view', layout.view.value);
    if (layout?.group.value) p.set('group', layout.group.value);
    const sort = document.getElementById('device-list')?.dataset.sort;
    if (layout?.view.value === 'table' && sort && sort !== 'status') p.set('sort', sort);
    return p.size ? `/?${p}` : '/';
  }

  function keepURL() {
    const url = urlOf();
    if (location.pathname + location.search !== url) history.replaceState(null, '', url);
  }

  function onFilter(e) {
    apply();
    keepURL();
    // Another view or grouping: the server renders it, and the page takes
    // its copy in place (the focus stays on the choice).
    if (e?.target === layout?.view || e?.target === layout?.group) live.refreshNow();
  }

  // sortBy sorts the table by sort (a column's key, led by "-" for
  // descending) in place; the headers' buttons then offer the next sort,
  // as the server renders them (views.Filter.nextSort).
  function sortBy(sort) {
    const root = document.getElementById('device-list');
    root.dataset.sort = sort;
    const desc = sort.startsWith('-');
    const col = desc ? sort.slice(1) : sort;
    for (const th of root.querySelectorAll('thead th[data-col]')) {
      const button = th.querySelector('button[name="sort-by"]');
      if (th.dataset.col === col) {
        th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
        button.value = desc ? col : `-${col}`;
      } else {
        th.removeAttribute('aria-sort');
        button.value = th.dataset.col;
      }
    }
    live.resort();
    keepURL();
  }
  if (!paged) {
    // A page of a large fleet is sorted by the server: the form submits.
    document.addEventListener('click', (e) => {
      const button = e.target.closest?.('button[name="sort-by"]');
      if (!button) return;
      e.preventDefault();
      sortBy(button.value);
    });
  }

  if (form) {
    form.addEventListener('input', onFilter);
    form.addEventListener('submit', (e) => { e.preventDefault(); onFilter(); });
    form.elements.sort?.remove(); // the sort is the table's, kept in the URL by urlOf
    form.querySelector('.filter-apply').hidden = true; // applied as typed
  }
  // A count filters to its status without a reload.
  document.addEventListener('click', (e) => {
    const a = e.target.closest?.('[data-count] a');
    if (!a || !status || paged || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
    e.preventDefault();
    const st = a.closest('[data-count]').dataset.count;
    status.value = status.value === st ? '' : st;
    onFilter();
  });
  window.addEventListener('popstate', () => {
    const p = new URLSearchParams(location.search);
    if (text) text.value = p.get('q') || '';
    if (status) status.value = p.get('status') || '';
    if (layout && (layout.view.value !== (p.get('view') || '') || layout.group.value !== (p.get('group') || ''))) {
      layout.view.value = p.get('view') || '';
      layout.group.value = p.get('group') || '';
      live.refreshNow();
    }
    apply();
  });

  // Devices the filter hides are not subscribed to; their statuses, for
  // the counts, are read from the devices API every half minute instead.
  let lastPoll = Date.now();
  async function pollHidden() {
    lastPoll = Date.now();
    if (paged) {
      // A page of a large fleet: a fresh copy brings the exact counts and
      // what belongs on the page now, for less than the whole fleet's JSON.
      live.refreshSoon();
      return;
    }
    try {
      const res = await fetch('/api/v1/devices', { cache: 'no-store' });
      if (!res.ok) return;
      let unknown = false;
      const changed = [];
      for (const d of await res.json()) {
        const card = document.querySelector(`[data-device="${CSS.escape(d.id)}"]`);
        if (!card) { unknown = true; continue; }
        if (card.parentElement.hidden && d.status && card.dataset.status !== d.status) changed.push({ d: d.id, s: d.status });
      }
      if (changed.length) live.status(changed);
      if (unknown) live.refreshSoon();
    } catch (err) {
      console.warn('iotdash: reading the devices failed', err);
    }
  }

  bindSparks();
  apply();

  let ticks = 0;
  return {
    reading(r) {
      const sp = sparks.get(`${r.d}\n${r.m}`);
      if (!sp) return;
      sp.series.add(r.t, r.v);
      sp.series.trim(live.serverNow() - SPAN);
      invalidate(sp);
    },
    changed() {
      // A status or an out-of-range changed: the filter may see it otherwise.
      if (status?.value) apply();
    },
    swapped() {
      bindSparks();
      apply();
    },
    tick() {
      // The window slides: a sparkline pixel is several seconds.
      if (++ticks % 10 === 0) for (const sp of sparks.values()) if (sp.canvas.isConnected) invalidate(sp);
      if (subscribed !== '*' && Date.now() - lastPoll > 30000) pollHidden();
    },
  };
}
