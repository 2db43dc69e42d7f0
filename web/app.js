// QueueTicket buyer page: a guest identity, the events on sale, and the live
// waiting room over the buyer WebSocket (wire contract, protocol 1).
//
// One module on purpose: the server serves exactly `/`, `/app.js` and
// `/style.css`. Read top to bottom: settings, storage, formatting, REST,
// the socket client, page state and its transitions, rendering, start-up.

// ------------------------------------------------------------------ settings

const LOCALE = document.documentElement.lang || 'en';
const KEYS = {
  /** `{token, user}`: the same guest on every reload keeps the same place. */
  guest: 'qt.guest',
  /** `{event, name, start, until?}` while in a queue or admitted, so that
   *  a reload re-joins it. */
  place: 'qt.place',
};
// Reconnect delays grow from BASE to CAP; jitter keeps thousands of buyers
// dropped at the same moment from all coming back at the same moment.
const RECONNECT_BASE_MS = 500;
const RECONNECT_CAP_MS = 30_000;
// While admitted the server pushes nothing: a ping keeps idle-closing
// proxies away and tells us when a socket died without a close.
const PING_EVERY_MS = 25_000;
const REPLY_TIMEOUT_MS = 10_000;
// A guest token this close to expiry is replaced before connecting, so a
// long wait does not start with a token that dies halfway through.
const TOKEN_MARGIN_MS = 5 * 60_000;
// ETAs beyond this are guesses; we say so instead of printing "312 h".
const LONG_WAIT_S = 24 * 3600;

// ------------------------------------------------------------------- storage

function loadJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null;
  }
}

function saveJson(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Blocked or full storage (private browsing): the page still works,
    // it only forgets the buyer on reload.
  }
}

// ---------------------------------------------------------------- formatting

const numberFormat = new Intl.NumberFormat(LOCALE);
const dateFormat = new Intl.DateTimeFormat(LOCALE, {
  weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit',
});
const timeFormat = new Intl.DateTimeFormat(LOCALE, { hour: '2-digit', minute: '2-digit' });

const formatNumber = (n) => numberFormat.format(n);
const formatDate = (iso) => dateFormat.format(new Date(iso));

/** Amounts arrive in the currency's minor unit (KRW has none), so the
 *  currency itself says how far to shift the decimal point. */
function formatMoney(amount, currency) {
  try {
    const fmt = new Intl.NumberFormat(LOCALE, { style: 'currency', currency });
    return fmt.format(amount / 10 ** fmt.resolvedOptions().maximumFractionDigits);
  } catch {
    return `${formatNumber(amount)} ${currency}`; // an unknown currency code
  }
}

/** A duration as a number and a unit a person reads at a glance. */
function durationParts(seconds) {
  if (seconds < 60) return [Math.max(1, Math.round(seconds)), 's'];
  if (seconds < 3600) return [Math.round(seconds / 60), 'min'];
  const hours = seconds / 3600;
  return [hours < 10 ? Math.round(hours * 10) / 10 : Math.round(hours), 'h'];
}

// A no-break space keeps "4" and "min" together when the line wraps.
const NBSP = '\u00a0';

function formatDuration(seconds) {
  const [n, unit] = durationParts(seconds);
  return `${formatNumber(n)}${NBSP}${unit}`;
}

/** "about 4 min, between 3 and 6 min": the estimate and its band, with the
 *  unit said once when both ends share it. */
function formatEta({ eta_s: eta, eta_low_s: low, eta_high_s: high }) {
  if (eta >= LONG_WAIT_S) return 'more than a day';
  const about = `about ${formatDuration(eta)}`;
  const [lowN, lowUnit] = durationParts(low);
  const [highN, highUnit] = durationParts(Math.min(high, LONG_WAIT_S));
  if (lowN === highN && lowUnit === highUnit) return about;
  const from = lowUnit === highUnit ? formatNumber(lowN) : formatDuration(low);
  const to = high >= LONG_WAIT_S ? 'more than a day' : formatDuration(high);
  return `${about}, between ${from} and ${to}`;
}

/** "9:41" or "1:02:03" for a countdown. Rounded, not ceiled: a window
 *  that is a few milliseconds over 10 min should read 10:00, not 10:01. */
function formatClock(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

const plural = (n, one, many) => `${formatNumber(n)} ${n === 1 ? one : many}`;

// ---------------------------------------------------------------------- REST

/** A failed call, with the protocol's error `code` when the server gave one. */
class RequestError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

async function api(path, { method = 'GET', token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new RequestError('network', 'Cannot reach the server. Check your connection.');
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data?.error ?? {};
    throw new RequestError(err.code ?? `http_${res.status}`, err.message ?? res.statusText, res.status);
  }
  return data;
}

/** When a JWT expires, read without verifying it: only to know when to ask
 *  for a fresh one. The server is the one that checks signatures. */
function tokenExpiresMs(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).exp * 1000;
  } catch {
    return 0;
  }
}

/** The buyer's guest identity: the stored one while it is good, else a new one. */
async function guestIdentity() {
  const saved = loadJson(KEYS.guest);
  if (saved?.token && tokenExpiresMs(saved.token) - Date.now() > TOKEN_MARGIN_MS) return saved;
  const fresh = await api('/api/v1/guest', { method: 'POST' });
  saveJson(KEYS.guest, { token: fresh.token, user: fresh.user });
  return fresh;
}

// ------------------------------------------------------------- socket client

/**
 * One buyer socket that keeps itself connected: it reconnects with backoff
 * and jitter, pairs replies with requests by `req`, and hands every other
 * frame to `onPush`. It knows nothing about queues: the page decides what
 * to (re)send in `onOpen`, which runs after each `hello`.
 */
class BuyerSocket {
  #url;
  #on;
  #ws = null;
  #open = false;
  #nextReq = 1;
  #pending = new Map();
  #attempt = 0;
  #retryTimer = 0;
  #pingTimer = 0;
  #closingHintMs = null;

  /** `url` is async: it may have to fetch a token first. */
  constructor(url, handlers) {
    this.#url = url;
    this.#on = handlers;
  }

  get isOpen() {
    return this.#open;
  }

  start() {
    this.#connect();
  }

  /** Skips the rest of a backoff, e.g. when the browser comes back online. */
  reconnectNow() {
    if (this.#ws || !this.#retryTimer) return;
    clearTimeout(this.#retryTimer);
    this.#connect();
  }

  /** Resolves with the reply to `msg`, or rejects with the `error` frame
   *  (or a local `disconnected` / `timeout`) that answered it. */
  request(msg) {
    if (!this.#open) return Promise.reject(new RequestError('disconnected', 'Not connected to the server.'));
    const req = this.#nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(req);
        reject(new RequestError('timeout', 'The server did not answer in time.'));
      }, REPLY_TIMEOUT_MS);
      this.#pending.set(req, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...msg, req }));
    });
  }

  async #connect() {
    this.#retryTimer = 0;
    this.#on.onStatus('connecting');
    let url;
    try {
      url = await this.#url();
    } catch (err) {
      this.#on.onFailure(err);
      this.#retryLater();
      return;
    }
    const ws = new WebSocket(url);
    this.#ws = ws;
    ws.onmessage = (e) => this.#receive(e.data);
    // `error` is always followed by `close`, which does the work.
    ws.onclose = (e) => this.#closed(ws, e.code);
  }

  #receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // not ours to understand; the contract says JSON objects only
    }
    if (frame.type === 'hello') return this.#opened(frame);
    if (frame.type === 'closing') this.#closingHintMs = frame.reconnect_after_ms ?? null;
    const waiting = frame.req != null && this.#pending.get(frame.req);
    if (waiting) {
      this.#pending.delete(frame.req);
      clearTimeout(waiting.timer);
      if (frame.type === 'error') waiting.reject(new RequestError(frame.code, frame.message));
      else waiting.resolve(frame);
      return;
    }
    if (frame.type !== 'pong') this.#on.onPush(frame);
  }

  #opened(hello) {
    this.#open = true;
    this.#attempt = 0;
    this.#pingTimer = setInterval(() => this.#ping(), PING_EVERY_MS);
    this.#on.onStatus('open');
    this.#on.onOpen(hello);
  }

  #ping() {
    // No pong in time: the socket is dead without having said so. Drop it
    // ourselves; a close handshake over a dead link could take minutes.
    const ws = this.#ws;
    this.request({ type: 'ping' }).catch((err) => {
      if (err.code === 'timeout' && ws === this.#ws) {
        ws.onclose = null;
        ws.close();
        this.#closed(ws, 4000);
      }
    });
  }

  #closed(ws, code) {
    if (ws !== this.#ws) return;
    const wasOpen = this.#open;
    this.#ws = null;
    this.#open = false;
    clearInterval(this.#pingTimer);
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(new RequestError('disconnected', 'The connection was lost.'));
    }
    this.#pending.clear();
    this.#on.onClose({ wasOpen, code });
    this.#retryLater();
  }

  #retryLater() {
    const restarting = this.#closingHintMs != null;
    const delay = this.#nextDelay();
    this.#attempt += 1;
    this.#on.onStatus(navigator.onLine === false ? 'offline' : 'retrying', { at: Date.now() + delay, restarting });
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  /** Exponential backoff with "equal jitter" (half fixed, half random), so
   *  retries never hammer but never all line up either. A server that is
   *  shutting down names its own delay; we spread buyers out after it. */
  #nextDelay() {
    if (this.#closingHintMs != null) {
      const hint = this.#closingHintMs;
      this.#closingHintMs = null;
      return hint + Math.random() * hint * 0.5;
    }
    const ceiling = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** this.#attempt);
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }
}

// ---------------------------------------------------------------- page state

const state = {
  identity: null, // {token, user}
  events: [], // from GET /api/v1/events
  eventsError: null,
  place: loadJson(KEYS.place), // see KEYS.place
  phase: 'browse', // browse | joining | waiting | admitted | expired
  queue: null, // the last `queue` frame
  expiresAtMs: 0, // end of the shopping window once admitted
  pass: null, // the admission pass, for the seat map to come
  clockSkewMs: 0, // server clock minus ours, from `hello`
  conn: { status: 'connecting', at: 0, restarting: false },
  failedOpens: 0, // connection attempts in a row that never saw `hello`
  endedName: null, // the event whose shopping window just ended
};
// A reload re-joins the same place, unless the shopping window it had has
// ended meanwhile: joining then would silently queue the buyer again.
if (state.place?.until && state.place.until <= Date.now()) {
  expirePlace();
} else if (state.place) {
  state.phase = 'joining';
}

const serverNow = () => Date.now() + state.clockSkewMs;

/** The shopping window ended: the place is spent, its name still shown. */
function expirePlace() {
  state.endedName = state.place.name;
  saveJson(KEYS.place, null);
  state.place = null;
  state.phase = 'expired';
}

function setPlace(place) {
  state.place = place;
  saveJson(KEYS.place, place);
}

const socket = new BuyerSocket(socketUrl, {
  onStatus: (status, detail = {}) => {
    state.conn = { status, at: detail.at ?? 0, restarting: detail.restarting ?? false };
    renderConnection();
  },
  onOpen: (hello) => {
    state.failedOpens = 0;
    hideAlert('connect');
    state.clockSkewMs = Date.parse(hello.server_time) - Date.now() || 0;
    // The server keeps a disconnected buyer's place for a grace period;
    // joining again is how this socket claims it back.
    if (state.place && (state.phase !== 'admitted' || state.expiresAtMs > serverNow())) sendJoin();
  },
  onClose: ({ wasOpen }) => {
    // An upgrade refused for a bad token looks like any failed connect to a
    // browser; after two in a row ask REST whether the token is the reason.
    if (!wasOpen && ++state.failedOpens >= 2) checkToken();
  },
  onPush: applyFrame,
  onFailure: (err) => showAlert(describeError(err), 'connect'),
});

async function socketUrl() {
  state.identity = await guestIdentity();
  renderIdentity();
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/ws?token=${encodeURIComponent(state.identity.token)}`;
}

/** Drops a token the server no longer accepts (expired, or signed by a
 *  server that has since been reset) so that the next connect mints one. */
async function checkToken() {
  if (!state.identity) return;
  try {
    // Any authenticated route will do: the token is checked before the event.
    await api(`/api/v1/events/${encodeURIComponent(state.place?.event ?? '-')}/queue`, {
      token: state.identity.token,
    });
  } catch (err) {
    if (err.code === 'unauthorized') {
      saveJson(KEYS.guest, null);
      state.identity = null;
    }
  }
}

function joinQueue(event) {
  hideAlert();
  setNotice('');
  setPlace({ event: event.id, name: event.name, start: null });
  state.phase = 'joining';
  state.queue = null;
  render();
  focusRoom();
  if (socket.isOpen) sendJoin();
  // else: onOpen joins as soon as the socket is up
}

function sendJoin() {
  const event = state.place.event;
  socket.request({ type: 'join', event }).then(applyFrame, (err) => {
    if (state.place?.event !== event) return;
    // A lost connection re-joins by itself on the next `hello`.
    if (err.code === 'disconnected' || err.code === 'timeout') return;
    if (err.code === 'rate_limited') {
      showAlert('The server is busy. Retrying in a moment…', 'join');
      setTimeout(() => state.place?.event === event && socket.isOpen && sendJoin(), 2000 + Math.random() * 2000);
      return;
    }
    forgetPlace();
    showAlert(describeError(err));
  });
}

async function leaveQueue() {
  if (!state.place) return;
  const question = state.phase === 'admitted' ? 'Give up your turn? You would have to queue again.' : 'Leave the queue? You will lose your place in line.';
  if (!window.confirm(question)) return;
  const { event, name } = state.place;
  try {
    if (socket.isOpen) await socket.request({ type: 'leave', event });
    // Offline there is no way to tell the server: the place simply lapses
    // once the grace period for disconnected buyers runs out.
  } catch (err) {
    if (err.code !== 'disconnected' && err.code !== 'timeout') {
      showAlert(describeError(err));
      return;
    }
  }
  forgetPlace(`You left the queue for ${name ?? event}.`);
}

/** Back to the event list, with a note that says why. */
function forgetPlace(notice = '') {
  setPlace(null);
  state.phase = 'browse';
  state.queue = null;
  state.pass = null;
  setNotice(notice);
  render();
  $('events-title').focus();
  loadEvents(); // refresh what changed meanwhile (paused badges)
}

/** Applies a reply or push from the server to the page. */
function applyFrame(frame) {
  const ours = state.place && frame.event === state.place.event;
  switch (frame.type) {
    case 'queue':
      if (ours) onQueue(frame);
      break;
    case 'admitted':
      if (ours) onAdmitted(frame);
      break;
    case 'left':
      if (ours) forgetPlace(leftNotice(frame.reason, state.place.name ?? frame.event));
      break;
    case 'error':
      showAlert(describeError(frame));
      break;
    default:
      break; // message types added to the protocol later are not ours yet
  }
}

function onQueue(frame) {
  // A position computed just before the admission can arrive just after
  // it; once admitted, a buyer never goes back to waiting for this place.
  if (state.phase === 'admitted') return;
  hideAlert('join');
  // The first position we saw is the far end of the progress bar; it is
  // stored so that a reload does not restart the bar at zero.
  if (state.place.start == null || frame.position > state.place.start) {
    setPlace({ ...state.place, start: frame.position });
  }
  state.phase = 'waiting';
  state.queue = frame;
  render();
}

function onAdmitted(frame) {
  hideAlert('join');
  state.phase = 'admitted';
  state.pass = frame.pass;
  state.expiresAtMs = Date.parse(frame.expires_at);
  setPlace({ ...state.place, until: state.expiresAtMs });
  render();
  focusRoom(); // the biggest news of the visit: make sure it is heard
}

function leftNotice(reason, name) {
  switch (reason) {
    case 'left':
      return `You left the queue for ${name}.`;
    case 'ended':
      return `The sale for ${name} has ended.`;
    default:
      return `Your place in line for ${name} is no longer held: the page was disconnected for too long. You can join again.`;
  }
}

function describeError(err) {
  switch (err.code) {
    case 'rate_limited':
      return 'Too many requests from your network right now. We will keep trying.';
    case 'network':
      return err.message;
    case 'not_found':
      return 'That event is no longer available.';
    case 'unauthorized':
      return 'Your visitor pass expired. Getting a new one…';
    default:
      return err.message || `Something went wrong (${err.code}).`;
  }
}

/** Once a second: the countdown, the reconnect timer, and the end of the window. */
function tick() {
  if (state.phase === 'admitted' && state.expiresAtMs <= serverNow()) {
    expirePlace();
    render();
  }
  if (state.phase === 'admitted') renderCountdown();
  if (state.conn.status === 'retrying') renderConnection();
}

// ----------------------------------------------------------------- rendering

const $ = (id) => document.getElementById(id);

/** Writes only on change, so live regions announce news, not repeats. */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function render() {
  renderTitle();
  renderConnection();
  renderIdentity();
  renderEvents();
  renderRoom();
}

/** The tab title carries the news for a buyer who is looking elsewhere. */
function renderTitle() {
  const title = {
    waiting: state.queue && `#${formatNumber(state.queue.position)} in line`,
    admitted: "It's your turn!",
    expired: 'Window ended',
  }[state.phase];
  document.title = title ? `${title} · QueueTicket` : 'QueueTicket';
}

function renderConnection() {
  const { status, at, restarting } = state.conn;
  const secs = Math.max(1, Math.ceil((at - Date.now()) / 1000));
  const text = {
    connecting: 'Connecting…',
    open: 'Live',
    retrying: restarting ? `Server restarting · ${secs} s` : `Reconnecting in ${secs} s`,
    offline: 'Offline · waiting for network',
  }[status];
  $('conn').dataset.state = status;
  // Numbers shown while disconnected are the last we heard, not live: say
  // so by fading them rather than by hiding where the buyer stood.
  $('room-view').classList.toggle('is-stale', status !== 'open');
  setText($('conn-text'), text);
}

function renderIdentity() {
  const user = state.identity?.user;
  setText($('whoami'), user ? `Visitor ${user.slice(0, 10)}… · your place is kept on this device` : '');
}

let renderedEvents = null;

function renderEvents() {
  $('events-view').hidden = state.phase !== 'browse';
  const status = state.eventsError ?? (state.events.length ? '' : 'Loading events…');
  setText($('events-status'), status);
  $('events-status').hidden = !status;
  // Rebuilt only when a fresh list arrived: buttons keep focus otherwise.
  if (renderedEvents !== state.events) {
    renderedEvents = state.events;
    $('events').replaceChildren(...state.events.map(eventCard));
  }
}

function eventCard(event) {
  const card = $('event-card').content.firstElementChild.cloneNode(true);
  card.querySelector('.event-name').textContent = event.name;
  card.querySelector('.event-paused').hidden = !event.paused;
  const onSale = Date.parse(event.on_sale_at) > Date.now() ? ` · on sale from ${formatDate(event.on_sale_at)}` : '';
  card.querySelector('.event-when').textContent = `${formatDate(event.starts_at)}${onSale}`;
  const rows = event.tiers.map((tier) => {
    const row = document.createElement('tr');
    const name = document.createElement('th');
    name.scope = 'row';
    name.textContent = tier.name;
    const price = document.createElement('td');
    price.textContent = formatMoney(tier.price, event.currency);
    row.append(name, price);
    return row;
  });
  card.querySelector('tbody').replaceChildren(...rows);
  const join = card.querySelector('.event-join');
  join.setAttribute('aria-label', `Join the queue for ${event.name}`);
  join.addEventListener('click', () => joinQueue(event));
  return card;
}

function renderRoom() {
  const { phase } = state;
  $('room-view').hidden = phase === 'browse';
  if (phase === 'browse') return;
  const name = state.place?.name ?? state.endedName ?? '';
  setText($('room-event'), name);
  $('joining').hidden = phase !== 'joining';
  $('waiting').hidden = phase !== 'waiting';
  $('admitted').hidden = phase !== 'admitted';
  $('expired').hidden = phase !== 'expired';
  $('leave').hidden = phase === 'expired';
  setText($('leave'), phase === 'admitted' ? 'Give up my turn' : 'Leave the queue');
  $('back').hidden = phase !== 'expired';
  if (phase === 'waiting') renderWaiting(state.queue);
  if (phase === 'admitted') renderAdmitted();
}

function renderWaiting(q) {
  setText($('position'), `You are #${formatNumber(q.position)} of ${formatNumber(q.waiting)}`);
  setText($('ahead'), q.position === 1 ? "You're next in line." : `${plural(q.position - 1, 'person', 'people')} ahead of you`);
  // From the first position seen to the front; never quite 0 or 100 % while
  // waiting, so the bar always shows both where you are and what is left.
  const start = Math.max(state.place.start ?? q.position, q.position);
  const pct = Math.round(((start - q.position + 1) / (start + 1)) * 100);
  $('progress').setAttribute('aria-valuenow', String(pct));
  $('progress').setAttribute('aria-valuetext', `${pct}% of the way to the front`);
  $('progress-fill').style.width = `${pct}%`;
  const resume = q.paused ? ' once admissions resume' : '';
  setText($('eta'), `${formatEta(q)}${resume}`);
  setText($('rate'), q.paused ? `paused (usually ${formatNumber(q.rate_per_min)} a minute)` : `${formatNumber(q.rate_per_min)} people a minute`);
  $('paused').hidden = !q.paused;
}

function renderAdmitted() {
  setText($('window-end'), `Your window closes at ${timeFormat.format(new Date(state.expiresAtMs))}.`);
  renderCountdown();
}

function renderCountdown() {
  setText($('countdown'), formatClock(state.expiresAtMs - serverNow()));
}

/** `source` lets a later success clear only the alerts it makes stale. */
function showAlert(message, source = 'general') {
  setText($('alert-text'), message);
  $('alert').dataset.source = source;
  $('alert').hidden = false;
}

function hideAlert(source) {
  if (source && $('alert').dataset.source !== source) return;
  $('alert').hidden = true;
}

function setNotice(text) {
  setText($('notice'), text);
  $('notice').hidden = !text;
}

/** Moves focus to the visible waiting-room heading so screen readers
 *  follow the change of view. */
function focusRoom() {
  document.querySelector('#room-view .panel:not([hidden]) h1')?.focus();
}

// ------------------------------------------------------------------ start-up

/** The event list needs no token; it retries until it loads. */
async function loadEvents(attempt = 0) {
  try {
    state.events = await api('/api/v1/events');
    state.eventsError = state.events.length ? null : 'Nothing is on sale right now.';
  } catch (err) {
    state.eventsError = `Could not load events (${describeError(err)}). Retrying…`;
    setTimeout(() => loadEvents(attempt + 1), Math.min(RECONNECT_CAP_MS, 1000 * 2 ** attempt));
  }
  render();
}

function bindUi() {
  for (const h1 of document.querySelectorAll('h1')) h1.tabIndex = -1; // focus targets
  $('leave').addEventListener('click', leaveQueue);
  $('back').addEventListener('click', () => forgetPlace());
  $('alert-close').addEventListener('click', () => hideAlert());
  window.addEventListener('online', () => socket.reconnectNow());
}

function main() {
  bindUi();
  render();
  loadEvents();
  socket.start();
  setInterval(tick, 1000);
}

main();
