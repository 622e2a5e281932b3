/* global document, window, fetch, URLSearchParams, crypto, performance, setTimeout, console */
/**
 * The demo storefront page's behaviour (an ES module, no build step): pick a customer (id prefix
 * search, a random known one, or a new one), show their recent purchases and recommendations
 * (with `explain`), an article's details and similar items, trending by segment, and buy through
 * the HTTP ingest (only when the server handed out a key, /demo/config.json), then watch the
 * purchase arrive and the recommendations change.
 *
 * Every text from the API is rendered with textContent (never innerHTML): article names are data.
 */

const K = 12;
const POLL_MS = 100;
const POLL_TIMEOUT_MS = 15_000;

const $ = (id) => {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`#${id} missing`);
  return node;
};

/** An element with text content and attributes; children appended in order. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = String(v);
    else if (k === 'class') node.className = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'onclick') node.addEventListener('click', v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, init) {
  const res = await fetch(path, init);
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) {
    const message = body?.error?.message ?? `HTTP ${res.status}`;
    throw new ApiError(res.status, message);
  }
  return { status: res.status, body };
}

const state = {
  config: { ingest_key: null, purchases_path: '/v1/events/purchases' },
  customerId: null,
  /** Event-time "now" of the latest answer (ms): what a purchase from this page is dated. */
  now: null,
  customerLast: null,
  customerChannel: 2,
  recIds: [],
  article: null,
};

const day = (t) => (t === null || t === undefined ? '-' : new Date(t).toISOString().slice(0, 10));
const describe = (a) =>
  [a.colour, a.section].filter((x) => x).join(' · ') || 'no colour or section';

function message(text, kind = '') {
  const m = $('message');
  m.textContent = text;
  m.className = `message ${kind}`;
}

/** A line of an article list: its name (a button that opens it) and a detail line. */
function articleLine(a, detail) {
  return el(
    'li',
    { dataset: { article: a.article_id } },
    el('button', {
      type: 'button',
      class: 'link',
      text: a.name ?? a.article_id,
      onclick: () => void openArticle(a.article_id),
    }),
    el('span', { class: 'muted small', text: ` ${a.article_id}${detail ? ` · ${detail}` : ''}` }),
  );
}

function fill(list, items, empty) {
  list.replaceChildren(...items);
  if (items.length === 0) list.append(el('li', { class: 'muted', text: empty }));
}

async function search(prefix) {
  const q = new URLSearchParams({ k: '10' });
  if (prefix !== '') q.set('prefix', prefix);
  try {
    const { body } = await api(`/v1/customers?${q}`);
    const items = body.customers.map((id) =>
      el('li', {}, el('button', { type: 'button', text: id, onclick: () => void pick(id) })),
    );
    fill(
      $('matches'),
      items,
      prefix === '' ? 'no customers in the store' : `no customer id starts with "${prefix}"`,
    );
    return body.customers;
  } catch (err) {
    message(`search failed: ${err.message}`, 'error');
    return [];
  }
}

async function pick(id) {
  state.customerId = id;
  state.recIds = [];
  $('matches').replaceChildren();
  window.history.replaceState(null, '', `#customer=${encodeURIComponent(id)}`);
  message('');
  try {
    await Promise.all([loadCustomer(), loadRecs(false)]);
  } catch (err) {
    message(`could not load ${id}: ${err.message}`, 'error');
  }
  if (state.article !== null) showBuy();
}

async function loadCustomer() {
  const id = state.customerId;
  const { body } = await api(`/v1/customers/${encodeURIComponent(id)}`);
  if (id !== state.customerId) return body;
  state.customerLast = body.last;
  const channels = Object.entries(body.channels).sort((a, b) => b[1] - a[1]);
  state.customerChannel = channels.length > 0 ? Number(channels[0][0]) : 2;
  $('customer').replaceChildren(
    el('strong', { text: id }),
    el('span', {
      text: body.known
        ? ` · ${body.purchases} purchases, ${day(body.first)} to ${day(body.last)}, age ${body.age ?? '-'}`
        : ' · new: no purchases yet (recommendations start from what is trending)',
    }),
  );
  fill(
    $('recent'),
    body.recent.map((p) =>
      articleLine(p, `${describe(p)} · ${day(p.time)} · channel ${p.channel}`),
    ),
    'none yet',
  );
  fillSegments(body.segments);
  return body;
}

function fillSegments(segments) {
  const select = $('segment');
  const current = select.value;
  const options = [el('option', { value: '', text: 'everyone' })];
  const seen = new Set();
  for (const s of [...segments, 'channel:1', 'channel:2']) {
    if (seen.has(s)) continue;
    seen.add(s);
    const [kind, value] = [s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1)];
    const label =
      kind === 'channel'
        ? `sales channel ${value}`
        : `age ${value.split('|')[0].replace('55_', '55+')} · ${value.split('|').slice(1).join('|').replaceAll('_', ' ')}`;
    const mine = segments.includes(s) ? ' (theirs)' : '';
    options.push(el('option', { value: s, text: label + mine }));
  }
  select.replaceChildren(...options);
  select.value = seen.has(current) ? current : (segments[0] ?? '');
  void loadTrending();
}

async function loadRecs(compare) {
  const id = state.customerId;
  const before = new Set(state.recIds);
  const { body } = await api(`/v1/recommendations/${encodeURIComponent(id)}?k=${K}&explain=true`);
  if (id !== state.customerId) return { added: 0 };
  state.now = body.now;
  state.recIds = body.items.map((i) => i.article_id);
  const ranker =
    body.ranker.kind === 'model'
      ? `ranked by model ${body.model_version}`
      : `ranked by ${body.model_version} (${body.ranker.message ?? body.ranker.reason ?? body.ranker.kind})`;
  $('ranker').textContent = `${ranker} · variant ${body.variant}`;
  let added = 0;
  const cards = body.items.map((item) => {
    const isNew = compare && !before.has(item.article_id);
    if (isNew) added++;
    return el(
      'li',
      { class: isNew ? 'card new' : 'card', dataset: { article: item.article_id } },
      el(
        'button',
        {
          type: 'button',
          class: 'card-open',
          onclick: () => void openArticle(item.article_id),
        },
        el('span', { class: 'rank', text: `#${item.rank}` }),
        el('span', { class: 'name', text: item.name ?? item.article_id }),
        el('span', { class: 'muted small', text: `${item.article_id} · ${describe(item)}` }),
      ),
      el(
        'p',
        { class: 'chips' },
        ...item.sources.map((s) => el('span', { class: 'chip', text: s.replaceAll('_', ' ') })),
        isNew ? el('span', { class: 'chip new', text: 'new' }) : null,
      ),
      el(
        'ul',
        { class: 'reasons' },
        ...(item.reasons ?? []).slice(0, 3).map((r) => el('li', { text: r })),
      ),
    );
  });
  fill($('recs'), cards, 'nothing to recommend');
  const removed = compare ? [...before].filter((a) => !state.recIds.includes(a)).length : 0;
  $('recs-note').textContent =
    `${body.cold_start ? 'cold start · ' : ''}${body.candidates} candidates · ${body.took_ms} ms` +
    (compare ? ` · changed: ${added} new, ${removed} gone` : '');
  return { added, removed };
}

async function openArticle(articleId) {
  state.article = null;
  const detail = $('detail');
  detail.replaceChildren(el('p', { class: 'muted', text: `loading ${articleId}…` }));
  $('buy-box').hidden = true;
  try {
    const { body } = await api(`/v1/articles/${encodeURIComponent(articleId)}`);
    state.article = body;
    detail.replaceChildren(
      el('p', { class: 'name', text: body.name ?? articleId }),
      el('p', {
        class: 'muted small',
        text: `${articleId} · ${body.product_type ?? '-'} · ${body.index_group ?? '-'}`,
      }),
      el('p', { text: describe(body) }),
      el('p', {
        class: 'muted small',
        text: `${body.sales} sales, last ${day(body.last_sale)}${body.mean_price === null ? '' : `, mean price ${body.mean_price.toFixed(4)}`}`,
      }),
    );
    showBuy();
  } catch (err) {
    detail.replaceChildren(el('p', { class: 'error', text: err.message }));
  }
  const [co, text] = await Promise.allSettled([
    api(`/v1/articles/${encodeURIComponent(articleId)}/similar?k=8`),
    api(`/v1/articles/${encodeURIComponent(articleId)}/similar/embedding?n=8`),
  ]);
  fill(
    $('similar-co'),
    co.status === 'fulfilled'
      ? co.value.body.items.map((i) => articleLine(i, `${i.score.toFixed(2)}`))
      : [],
    co.status === 'fulfilled' ? 'never bought together with another' : co.reason.message,
  );
  fill(
    $('similar-text'),
    text.status === 'fulfilled'
      ? text.value.body.items.map((i) => articleLine(i, `cos ${i.score.toFixed(2)}`))
      : [],
    text.status === 'fulfilled'
      ? text.value.body.embedded
        ? 'no neighbours'
        : 'not embedded (npm run embed)'
      : text.reason.message,
  );
}

function showBuy() {
  const box = $('buy-box');
  box.hidden = false;
  const button = $('buy');
  if (state.config.ingest_key === null) {
    button.disabled = true;
    $('buy-status').textContent =
      'Buying is off: the server hands this page no ingest key (start it with DEMO_PAGE_KEY, as npm run demo does).';
  } else if (state.customerId === null) {
    button.disabled = true;
    $('buy-status').textContent = 'Pick a customer first.';
  } else {
    button.disabled = false;
    button.textContent = `Buy as ${state.customerId}`;
    $('buy-status').textContent = '';
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function buy() {
  const article = state.article;
  const customerId = state.customerId;
  if (article === null || customerId === null || state.config.ingest_key === null) return;
  const status = $('buy-status');
  const button = $('buy');
  button.disabled = true;
  const eventId = `demo-${crypto.randomUUID()}`;
  // Dated by the store's clock (the event time the answers are computed at), a second later.
  const eventTime = Math.max(state.now ?? 0, state.customerLast ?? 0) + 1_000;
  const purchase = {
    event_id: eventId,
    customer_id: customerId,
    article_id: article.article_id,
    price: article.mean_price ?? 0,
    sales_channel_id: state.customerChannel,
    quantity: 1,
    event_time: eventTime > 0 ? eventTime : Date.now(),
  };
  const t0 = performance.now();
  status.textContent = 'posting…';
  try {
    const { body } = await api(state.config.purchases_path, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        Authorization: `Bearer ${state.config.ingest_key}`,
      },
      body: JSON.stringify([purchase]),
    });
    // 202 answers each event; one not accepted (invalid, or late) is named with its reason.
    const result = Array.isArray(body?.events) ? body.events[0] : undefined;
    if (result?.status !== 'accepted') {
      throw new Error(result?.error?.message ?? `no status for the purchase (${result?.status})`);
    }
  } catch (err) {
    status.textContent = `not accepted: ${err.message}`;
    button.disabled = false;
    return;
  }
  status.textContent = 'accepted (202); waiting for the processors…';
  const deadline = performance.now() + POLL_TIMEOUT_MS;
  for (;;) {
    const body = await loadCustomer();
    if (body.recent.some((p) => p.event_id === eventId)) break;
    if (performance.now() > deadline || customerId !== state.customerId) {
      status.textContent =
        'accepted, but not in the recent purchases yet (are the processors running?)';
      button.disabled = false;
      return;
    }
    await sleep(POLL_MS);
  }
  const seen = performance.now() - t0;
  const { added, removed } = await loadRecs(true);
  status.textContent =
    `in the recent purchases after ${Math.round(seen)} ms; ` +
    `recommendations: ${added} new, ${removed} gone`;
  button.disabled = false;
}

async function loadTrending() {
  const segment = $('segment').value;
  const q = new URLSearchParams({ k: '10' });
  if (segment !== '') q.set('segment', segment);
  try {
    const { body } = await api(`/v1/trending?${q}`);
    fill(
      $('trending'),
      body.items.map((i) => articleLine(i, i.score.toFixed(2))),
      'nothing trending here',
    );
  } catch (err) {
    fill($('trending'), [], err.message);
  }
}

async function main() {
  try {
    state.config = (await api('/demo/config.json')).body;
  } catch (err) {
    console.warn('no demo config', err);
  }
  $('search').addEventListener('submit', (e) => {
    e.preventDefault();
    void search($('prefix').value.trim());
  });
  $('random').addEventListener('click', () => {
    void api('/v1/customers?k=1').then(({ body }) => {
      if (body.customers[0] === undefined) message('the store knows no customer yet', 'error');
      else void pick(body.customers[0]);
    });
  });
  $('new').addEventListener('click', () => {
    void pick(`demo-${crypto.randomUUID().slice(0, 8)}`);
  });
  $('buy').addEventListener('click', () => void buy());
  $('segment').addEventListener('change', () => void loadTrending());
  const fromHash = () => new URLSearchParams(window.location.hash.slice(1)).get('customer');
  window.addEventListener('hashchange', () => {
    const id = fromHash();
    if (id && id !== state.customerId) void pick(id);
  });
  const initial = fromHash();
  if (initial) await pick(initial);
  else await loadTrending();
  document.body.dataset.ready = 'true';
}

void main().catch((err) => message(`error: ${err.message}`, 'error'));
