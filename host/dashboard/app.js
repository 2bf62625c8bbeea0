// cardrun dashboard: plain JavaScript on the public REST and Socket.IO API.
// Views (hash routes): #/executions, #/run/<id>, #/cards, #/card/<id>,
// #/system. Every control is a link, a button, a form field or a focusable
// row (Enter opens it); Escape closes the test detail.
'use strict';

const EXEC = '/api/parallel-test-execution';

// ---- small helpers ------------------------------------------------------

/** Builds an element; strings become text nodes (never HTML). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// The API key (a server with tenants asks for one), kept in this browser.
const KEY = 'cardrun.key';
function apiKey() { return localStorage.getItem(KEY) || ''; }

/** Thrown for a 401: the page shows the key form instead of an error. */
class NeedsKey extends Error {}

async function api(method, path, body) {
  const headers = body === undefined ? {} : { 'content-type': 'application/json' };
  if (apiKey()) headers.authorization = `Bearer ${apiKey()}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try { json = await res.json(); } catch (_) { /* not JSON */ }
  if (res.status === 401) throw new NeedsKey((json && json.error) || 'An API key is required.');
  if (!res.ok || !json || json.success === false) {
    throw new Error((json && json.error) || `${method} ${path}: HTTP ${res.status}`);
  }
  return json.data;
}

function toast(message) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 6000);
}

const pill = (status) => h('span', { class: `pill s-${status}` }, status);

function ms(n) {
  if (n === null || n === undefined) return '–';
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60000) return `${(n / 1000).toFixed(1)} s`;
  const m = Math.floor(n / 60000);
  return `${m} min ${Math.round((n % 60000) / 1000)} s`;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : '–');

/** A table whose rows open with a click or Enter. */
function table(columns, rows, open) {
  const body = h('tbody');
  for (const row of rows) body.append(tableRow(columns, row, open));
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.num ? 'num' : null, scope: 'col' }, c.title)))),
    body);
}

function tableRow(columns, row, open) {
  const tr = h('tr', open ? { tabindex: 0 } : {});
  for (const c of columns) tr.append(h('td', { class: c.num ? 'num' : null }, c.cell(row)));
  if (open) {
    tr.addEventListener('click', () => open(row, tr));
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(row, tr); }
      if (e.key === 'ArrowDown' && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
      if (e.key === 'ArrowUp' && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
    });
  }
  return tr;
}

// ---- Socket.IO ----------------------------------------------------------

// `auth` is read at every (re)connection, so a key entered later is used.
const socket = io({
  transports: ['websocket', 'polling'],
  auth: (send) => send(apiKey() ? { token: apiKey() } : {}),
});
socket.on('connect_error', (err) => {
  const c = document.getElementById('connection');
  c.textContent = /API key/.test(err.message) ? 'key needed' : 'offline'; c.className = 'pill down';
});
let view = { cleanup() {}, on() {}, resubscribe() {} };

socket.on('connect', () => {
  const c = document.getElementById('connection');
  c.textContent = 'live'; c.className = 'pill up';
  view.resubscribe();
});
socket.on('disconnect', () => {
  const c = document.getElementById('connection');
  c.textContent = 'offline'; c.className = 'pill down';
});
for (const event of ['progress', 'test-complete', 'execution-complete', 'subscription-confirmed',
  'system-resources', 'queue-stats', 'error']) {
  socket.on(event, (data) => view.on(event, data));
}

// ---- router -------------------------------------------------------------

const main = document.getElementById('main');

function route() {
  view.cleanup();
  view = { cleanup() {}, on() {}, resubscribe() {} };
  main.replaceChildren();
  const [, name = 'executions', arg] = location.hash.split('/');
  for (const a of document.querySelectorAll('nav a')) {
    const on = a.dataset.nav === name || (a.dataset.nav === 'executions' && name === 'run')
      || (a.dataset.nav === 'cards' && name === 'card');
    if (on) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const views = { executions: executionsView, run: runView, cards: cardsView, card: cardView, system: systemView };
  (views[name] || executionsView)(arg).catch((e) => {
    if (e instanceof NeedsKey) { keyForm(e.message); return; }
    main.append(h('div', { class: 'panel' }, h('p', {}, `Could not load this page: ${e.message}`)));
  });
}

/** Asks for an API key (`cardrun key create TENANT`), then shows the page. */
function keyForm(why) {
  main.replaceChildren();
  const input = h('input', { id: 'api-key', name: 'key', type: 'password', required: true, autocomplete: 'off' });
  const form = h('form', { class: 'panel', id: 'key-form' },
    h('h2', {}, 'API key'),
    h('p', { role: 'alert' }, why),
    h('p', {}, 'This server needs a key. Ask its operator, who makes one with ', h('code', {}, 'cardrun key create TENANT'), '.'),
    h('label', { for: 'api-key' }, 'Key'), input,
    h('button', { type: 'submit', id: 'use-key' }, 'Use this key'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    localStorage.setItem(KEY, input.value.trim());
    socket.disconnect().connect();
    route();
  });
  main.append(form);
  input.focus();
}
window.addEventListener('hashchange', route);

// ---- executions ---------------------------------------------------------

async function executionsView() {
  const holder = h('div', { class: 'panel' });
  main.append(h('h2', {}, 'Executions'), holder);
  const columns = [
    { title: 'Status', cell: (e) => pill(e.status) },
    { title: 'Model', cell: (e) => e.model },
    { title: 'Card', cell: (e) => e.card_title ?? `#${e.prompt_card_id}` },
    { title: 'Pass rate', num: true, cell: (e) => passRate(e) },
    { title: 'Tests', num: true, cell: (e) => `${e.passed_tests + e.failed_tests + e.error_tests}/${e.total_tests}` },
    { title: 'Duration', num: true, cell: (e) => ms(e.duration_ms) },
    { title: 'Created', cell: (e) => when(e.created_at) },
  ];
  const load = async () => {
    const list = await api('GET', `${EXEC}/executions?limit=100`);
    const focused = document.activeElement && holder.contains(document.activeElement)
      ? [...holder.querySelectorAll('tbody tr')].indexOf(document.activeElement) : -1;
    holder.replaceChildren(list.length
      ? table(columns, list, (e) => { location.hash = `#/run/${e.execution_id}`; })
      : h('p', { class: 'empty' }, 'No executions yet. Open a card and run it.'));
    if (focused >= 0) holder.querySelectorAll('tbody tr')[focused]?.focus();
  };
  await load();
  const timer = setInterval(() => load().catch(() => {}), 3000);
  view.cleanup = () => clearInterval(timer);
}

function passRate(e) {
  const ran = e.passed_tests + e.failed_tests + e.error_tests;
  return ran ? `${Math.round((100 * e.passed_tests) / ran)} %` : '–';
}

// ---- one run ------------------------------------------------------------

async function runView(id) {
  const [progress, results] = await Promise.all([
    api('GET', `${EXEC}/${id}/progress`),
    api('GET', `${EXEC}/${id}/results`),
  ]);
  const byCase = new Map();
  const state = { progress, status: progress.status };

  const statusPill = h('span', {}, pill(progress.status));
  const cancel = h('button', { class: 'danger', id: 'cancel', onclick: onCancel }, 'Cancel run');
  const bar = h('div', { class: 'bar', role: 'progressbar', 'aria-label': 'Tests finished',
    'aria-valuemin': 0, 'aria-valuemax': 100 },
  h('span', { class: 'p' }), h('span', { class: 'f' }), h('span', { class: 'e' }));
  const counts = h('div', { class: 'counts' });
  const rows = h('tbody');
  // Named metrics and cost, totalled over the results shown.
  const totals = h('div', { class: 'panel', id: 'metrics', hidden: true });
  const latest = new Map();
  main.append(
    h('div', { class: 'row' },
      h('h2', { class: 'grow' }, `Run ${id.slice(0, 8)}`, ' ', statusPill),
      cancel),
    h('div', { class: 'panel' },
      h('p', { class: 'muted' }, `Model ${results.model} · card `, h('a', { href: `#/card/${results.prompt_card_id}` }, `#${results.prompt_card_id}`),
        ` · execution ${id}`),
      bar, counts),
    h('div', { class: 'panel' }, h('h3', {}, 'Tests'),
      h('table', { id: 'tests' },
        h('thead', {}, h('tr', {}, ['Status', 'Test', 'Time', 'Detail'].map((t, i) => h('th', { scope: 'col', class: i === 2 ? 'num' : null }, t)))),
        rows)),
    totals);

  const columns = [
    { title: 'Status', cell: (r) => pill(r.status) },
    { title: 'Test', cell: (r) => r.test_case_name },
    { title: 'Time', num: true, cell: (r) => ms(r.execution_time_ms) },
    { title: 'Detail', cell: (r) => summaryOf(r) },
  ];
  function addResult(r) {
    const tr = tableRow(columns, r, (result, row) => showDetail(result, row));
    tr.dataset.status = r.status;
    tr.dataset.testCaseId = r.test_case_id;
    const old = byCase.get(r.test_case_id);
    if (old) old.replaceWith(tr); else rows.append(tr);
    byCase.set(r.test_case_id, tr);
    latest.set(r.test_case_id, r);
    paintTotals();
  }
  function paintTotals() {
    const metrics = new Map();
    let cost = null;
    for (const r of latest.values()) {
      for (const c of [r.cost, r.grading?.cost]) if (typeof c === 'number') cost = (cost ?? 0) + c;
      for (const a of r.assertion_results || []) {
        if (!a.metric) continue;
        const m = metrics.get(a.metric) || { passed: 0, total: 0, score: 0 };
        m.passed += a.passed ? 1 : 0; m.total += 1; m.score += Math.min(Math.max(Number(a.score) || 0, 0), 1);
        metrics.set(a.metric, m);
      }
    }
    totals.hidden = metrics.size === 0 && cost === null;
    const names = [...metrics.keys()].sort();
    totals.replaceChildren(
      h('h3', {}, 'Metrics'),
      cost === null ? null : h('p', { id: 'cost' }, `Cost: $${cost.toFixed(6)}`),
      names.length
        ? h('table', { id: 'metric-table' },
          h('thead', {}, h('tr', {}, ['Metric', 'Passed', 'Mean score'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null }, t)))),
          h('tbody', {}, names.map((n) => {
            const m = metrics.get(n);
            return h('tr', {}, h('td', {}, n), h('td', { class: 'num' }, `${m.passed}/${m.total}`),
              h('td', { class: 'num' }, (m.score / m.total).toFixed(3)));
          })))
        : null);
  }
  for (const r of results.results) addResult(r);

  function paint() {
    const p = state.progress;
    const total = Math.max(p.total_tests, 1);
    const errors = Math.max(p.completed_tests - p.passed_tests - p.failed_tests, 0);
    const [pp, pf, pe] = [p.passed_tests, p.failed_tests, errors].map((n) => `${(100 * n) / total}%`);
    bar.children[0].style.width = pp; bar.children[1].style.width = pf; bar.children[2].style.width = pe;
    bar.setAttribute('aria-valuenow', Math.round(p.percent));
    const eta = p.status === 'running' && p.estimated_time_remaining_ms !== null && p.estimated_time_remaining_ms !== undefined
      ? ms(p.estimated_time_remaining_ms) : '–';
    counts.replaceChildren(
      count('done', `${p.completed_tests}/${p.total_tests}`, 'finished'),
      count('passed', p.passed_tests, 'passed'),
      count('failed', p.failed_tests, 'failed'),
      count('errors', errors, 'errors or skipped'),
      count('percent', `${Math.round(p.percent)} %`, 'progress'),
      count('eta', eta, 'remaining'));
    statusPill.replaceChildren(pill(p.status));
    cancel.disabled = ['completed', 'failed', 'cancelled'].includes(p.status);
  }
  paint();

  async function onCancel() {
    cancel.disabled = true;
    try {
      await api('DELETE', `${EXEC}/${id}`);
      toast('Cancel requested: running tests are stopped, finished results are kept.');
    } catch (e) { toast(e.message); cancel.disabled = false; }
  }

  view.resubscribe = () => socket.emit('subscribe-test', id);
  if (socket.connected) view.resubscribe();
  view.on = (event, data) => {
    if (data && data.execution_id && data.execution_id !== id) return;
    if (event === 'progress') { state.progress = data; paint(); }
    if (event === 'test-complete') addResult(data);
    if (event === 'execution-complete') {
      // The stored results are the record: refresh from them.
      api('GET', `${EXEC}/${id}/results`).then((r) => r.results.forEach(addResult)).catch(() => {});
      api('GET', `${EXEC}/${id}/progress`).then((p) => { state.progress = p; paint(); }).catch(() => {});
    }
    if (event === 'error') toast(data.message);
  };
  view.cleanup = () => socket.emit('unsubscribe-test', id);
}

function count(key, value, label) {
  return h('div', { id: `count-${key}` }, h('b', {}, String(value)), h('small', {}, label));
}

function summaryOf(r) {
  if (r.status === 'passed') return [r.flaky ? 'flaky ' : '', r.cache_hit ? 'cached' : ''].join('');
  if (r.error) return r.error.slice(0, 140);
  const failed = (r.assertion_results || []).find((a) => !a.passed);
  return failed ? `${failed.type}: ${failed.reason}`.slice(0, 140) : '';
}

// ---- the detail of one test ----------------------------------------------

function showDetail(r, row) {
  document.querySelectorAll('#tests tr[aria-selected]').forEach((t) => t.removeAttribute('aria-selected'));
  row.setAttribute('aria-selected', 'true');
  const dialog = h('dialog', { id: 'detail', 'aria-labelledby': 'detail-title' });
  const close = () => dialog.close();
  dialog.addEventListener('close', () => { dialog.remove(); row.focus(); });
  const assertions = (r.assertion_results || []).map((a) => h('tr', {},
    h('td', {}, a.type),
    h('td', {}, pill(a.passed ? 'passed' : 'failed')),
    h('td', { class: 'num' }, Number(a.score).toFixed(3)),
    h('td', {}, a.error ? `${a.reason} (${a.error})` : a.reason),
    h('td', { class: 'num' }, a.fuel_used.toLocaleString())));
  dialog.append(
    h('div', { class: 'head' },
      h('h2', { id: 'detail-title' }, r.test_case_name), pill(r.status),
      h('button', { onclick: close, 'aria-label': 'Close detail' }, 'Close')),
    h('div', { class: 'body' },
      h('p', { class: 'muted' }, `${ms(r.execution_time_ms)} · ${r.attempts.length} attempt(s)`,
        r.flaky ? ' · flaky' : '', r.cache_hit ? ' · cached' : '',
        r.tokens ? ` · ${r.tokens.prompt} + ${r.tokens.completion} tokens` : '',
        r.grading ? ` · grading: ${r.grading.calls} call(s), ${r.grading.tokens.prompt} + ${r.grading.tokens.completion} tokens` : '',
        typeof r.cost === 'number' ? ` · $${r.cost.toFixed(6)}` : ''),
      r.error ? [h('h3', {}, 'Error'), h('pre', {}, r.error)] : null,
      h('h3', {}, 'Prompt'), h('pre', { id: 'detail-prompt' }, r.prompt ?? '(not recorded)'),
      h('h3', {}, 'Model output'), h('pre', { id: 'detail-output' }, r.llm_output || '(empty)'),
      r.expected_output !== undefined && r.expected_output !== null
        ? [h('h3', {}, 'Expected output (diff: removed from expected, added in output)'),
          h('pre', { class: 'diff', id: 'detail-diff' }, diff(r.expected_output, r.llm_output))]
        : null,
      h('h3', {}, 'Assertions'),
      assertions.length
        ? h('table', { id: 'detail-assertions' },
          h('thead', {}, h('tr', {}, ['Type', 'Verdict', 'Score', 'Reason', 'Fuel'].map((t, i) => h('th', { scope: 'col', class: i === 2 || i === 4 ? 'num' : null }, t)))),
          h('tbody', {}, assertions))
        : h('p', { class: 'muted' }, 'No assertions ran.'),
      r.attempts.length > 1
        ? [h('h3', {}, 'Attempts'), h('ol', {}, r.attempts.map((a) => h('li', {}, `${a.status} in ${ms(a.execution_time_ms)}${a.error ? `: ${a.error}` : ''}`)))]
        : null));
  document.body.append(dialog);
  dialog.showModal();
  dialog.querySelector('button').focus();
}

/** A word-level diff (longest common subsequence) as <del>/<ins> nodes. */
function diff(expected, actual) {
  const a = expected.split(/(\s+)/);
  const b = actual.split(/(\s+)/);
  if (a.length * b.length > 4e6) return [h('del', {}, expected), '\n', h('ins', {}, actual)];
  const m = a.length; const n = b.length;
  const lcs = Array.from({ length: m + 1 }, () => new Uint32Array(n + 1));
  for (let i = m - 1; i >= 0; i--) {
    for (let j = n - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0; let j = 0;
  while (i < m && j < n) {
    if (a[i] === b[j]) { out.push(a[i]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(h('del', {}, a[i++]));
    else out.push(h('ins', {}, b[j++]));
  }
  while (i < m) out.push(h('del', {}, a[i++]));
  while (j < n) out.push(h('ins', {}, b[j++]));
  return out;
}

// ---- cards ----------------------------------------------------------------

async function cardsView() {
  const page = await api('GET', '/api/prompt-cards?limit=200');
  main.append(h('h2', {}, 'Cards'), h('div', { class: 'panel' }, page.items.length
    ? table([
      { title: 'Title', cell: (c) => c.title },
      { title: 'Variables', cell: (c) => c.variables.join(', ') },
      { title: 'Updated', cell: (c) => when(c.updated_at) },
    ], page.items, (c) => { location.hash = `#/card/${c.id}`; })
    : h('p', { class: 'empty' }, 'No cards yet: create them through the API or import a suite (POST /api/prompt-cards/import).')));
}

async function cardView(id) {
  const c = await api('GET', `/api/prompt-cards/${encodeURIComponent(id)}`);
  const cases = c.test_cases || [];
  const model = h('input', { id: 'run-model', name: 'model', required: true, value: localStorage.getItem('cardrun.model') || 'ollama:llama3' });
  const concurrency = h('input', { id: 'run-concurrency', type: 'number', min: 1, max: 256, value: 8 });
  const timeout = h('input', { id: 'run-timeout', type: 'number', min: 1, value: 30000 });
  const retries = h('input', { id: 'run-retries', type: 'number', min: 0, max: 10, value: 2 });
  const priority = h('select', { id: 'run-priority' }, ['low', 'medium', 'high', 'critical'].map((p) => h('option', { value: p, selected: p === 'medium' }, p)));
  const run = h('button', { class: 'primary', type: 'submit', id: 'run' }, 'Run');
  const form = h('form', { class: 'inline', onsubmit: onRun },
    h('label', {}, 'Model (adapter:model)', model),
    h('label', {}, 'Concurrent tests', concurrency),
    h('label', {}, 'Timeout per test (ms)', timeout),
    h('label', {}, 'Retries', retries),
    h('label', {}, 'Priority', priority),
    run);
  async function onRun(e) {
    e.preventDefault();
    run.disabled = true;
    localStorage.setItem('cardrun.model', model.value.trim());
    try {
      const queued = await api('POST', `${EXEC}/queue`, {
        prompt_card_id: c.id,
        model: model.value.trim(),
        priority: priority.value,
        configuration: {
          max_concurrent_tests: Number(concurrency.value),
          timeout_per_test: Number(timeout.value),
          retry_failed_tests: Number(retries.value) > 0,
          max_retries: Number(retries.value),
        },
      });
      location.hash = `#/run/${queued.execution_id}`;
    } catch (err) { toast(err.message); run.disabled = false; }
  }
  main.append(
    h('h2', {}, c.title),
    h('div', { class: 'panel' },
      c.description ? h('p', {}, c.description) : null,
      h('h3', {}, 'Prompt template'), h('pre', {}, c.prompt_template),
      h('h3', {}, 'Run this card'), form),
    h('div', { class: 'panel' }, h('h3', {}, `Test cases (${cases.length})`), cases.length
      ? table([
        { title: 'Name', cell: (t) => t.name },
        { title: 'Variables', cell: (t) => Object.entries(t.input_variables).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ') },
        { title: 'Expected', cell: (t) => t.expected_output ?? '' },
        { title: 'Assertions', cell: (t) => t.assertions.map((a) => a.type).join(', ') },
      ], cases)
      : h('p', { class: 'empty' }, 'No test cases.')));
}

// ---- system -----------------------------------------------------------------

async function systemView() {
  const series = [
    { key: 'cpu', label: 'CPU %', color: '#2e5bff', max: () => 100 },
    { key: 'mem', label: 'Memory %', color: '#12805c', max: () => 100 },
    { key: 'active', label: 'Active tests', color: '#c4320a', max: (pts) => Math.max(4, ...pts) },
    { key: 'queued', label: 'Queue depth', color: '#9e3ad1', max: (pts) => Math.max(4, ...pts) },
  ];
  const points = { cpu: [], mem: [], active: [], queued: [] };
  const canvas = h('canvas', { id: 'chart', role: 'img', 'aria-label': 'CPU, memory, active tests and queue depth over the last two minutes' });
  const figures = h('div', { class: 'counts', id: 'figures' });
  main.append(h('h2', {}, 'System'), h('div', { class: 'panel' }, canvas,
    h('div', { class: 'legend' }, series.map((s) => h('span', {}, h('i', { style: `background:${s.color}` }), s.label))),
    figures));
  const push = (key, value) => { points[key].push(value); if (points[key].length > 120) points[key].shift(); };
  let lastQueue = 0;
  function draw() {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth; const ht = canvas.clientHeight;
    canvas.width = w * ratio; canvas.height = ht * ratio;
    const g = canvas.getContext('2d');
    g.scale(ratio, ratio);
    g.strokeStyle = '#e4e7ec'; g.lineWidth = 1;
    for (let y = 0; y <= 4; y++) { g.beginPath(); g.moveTo(0, (ht * y) / 4); g.lineTo(w, (ht * y) / 4); g.stroke(); }
    for (const s of series) {
      const pts = points[s.key];
      if (!pts.length) continue;
      const max = s.max(pts);
      g.strokeStyle = s.color; g.lineWidth = 2; g.beginPath();
      pts.forEach((v, i) => {
        const x = w - (pts.length - 1 - i) * (w / 119);
        const y = ht - (Math.min(v, max) / max) * (ht - 4) - 2;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    }
  }
  view.resubscribe = () => { socket.emit('subscribe-system-resources'); socket.emit('subscribe-queue-stats'); };
  if (socket.connected) view.resubscribe();
  view.on = (event, data) => {
    if (event === 'system-resources') {
      const u = data.current_usage;
      push('cpu', u.cpu_percent);
      push('mem', u.memory_total_mb ? (100 * u.memory_mb) / u.memory_total_mb : 0);
      push('active', u.active_tests);
      push('queued', lastQueue);
      figures.replaceChildren(
        count('cpu', `${u.cpu_percent.toFixed(0)} %`, 'CPU'),
        count('memory', `${u.memory_mb} / ${u.memory_total_mb} MB`, 'memory'),
        count('active', u.active_tests, 'active tests'),
        count('queue', lastQueue, 'waiting tests'),
        count('load', u.load_average.map((l) => l.toFixed(2)).join(' '), 'load average'),
        count('stress', data.system_under_stress ? 'yes' : 'no', 'under stress'));
      draw();
    }
    if (event === 'queue-stats') lastQueue = data.waiting;
  };
  view.cleanup = () => { socket.emit('unsubscribe-system-resources'); socket.emit('unsubscribe-queue-stats'); };
}

route();
