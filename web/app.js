// QueueTicket buyer page: a guest identity, the events on sale, the live
// waiting room, and the live seat map with seat holds, all over the buyer
// WebSocket (wire contract, protocol 1).
//
// One module on purpose: the server serves exactly `/`, `/app.js` and
// `/style.css`. Read top to bottom: settings, storage, formatting, REST,
// the socket client, the seat map (its model, then its canvas), page state
// and its transitions (queue, then seats), rendering, start-up.

// ------------------------------------------------------------------ settings

const LOCALE = document.documentElement.lang || 'en';
const KEYS = {
  /** `{token, user}`: the same guest on every reload keeps the same place. */
  guest: 'qt.guest',
  /** `{event, name, start, until?}` while in a queue or admitted, so that
   *  a reload re-joins it. */
  place: 'qt.place',
  /** `{event, holds: [{seats, expiresAtMs}]}`: the seats this buyer holds.
   *  The seat map shows every held seat alike, and nothing tells a page
   *  which are its own but its `held` replies, so a reload remembers them. */
  holds: 'qt.holds',
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
// The seat map: the compact snapshot form stays small for big venues.
const SEATMAP_FORMAT = 'compact';
// Default zoom keeps seats at least this far apart (CSS px): a finger needs
// more room than a mouse. The buyer can zoom in to MAX_PITCH_PX.
const MIN_PITCH_PX = 6;
const MIN_TAP_PITCH_PX = 12;
const MAX_PITCH_PX = 40;
const ZOOM_STEP = 1.5;
// Seats someone else took from under the buyer blink for this long.
const FLASH_MS = 2_500;
// A hold this far past its end without `hold_expired` (say the socket was
// down then) is dropped by the page itself.
const HOLD_GRACE_MS = 5_000;
// The count choices of "best available"; the server has the final say on
// how many one buyer may hold (`hold_limit`).
const BEST_COUNTS = [1, 2, 3, 4, 5, 6, 7, 8];
// style.css defines this many tier colours (--tier-1…); more tiers reuse them.
const TIER_COLOUR_COUNT = 6;
// A `seats` diff this soon after our own `held` reply may predate it (the
// reply comes straight back, diffs take the bus), so it cannot tell us the
// hold is gone.
const FRESH_HOLD_MS = 5_000;

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
  if (!currency) return formatNumber(amount);
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

/** "C-1-3", "C-1-3 and C-1-4", "C-1-3, C-1-4 and C-1-5". */
function formatSeatList(ids) {
  if (ids.length <= 1) return ids.join('');
  return `${ids.slice(0, -1).join(', ')} and ${ids[ids.length - 1]}`;
}

// ---------------------------------------------------------------------- REST

/** A failed call, with the protocol's error `code` when the server gave one. */
class RequestError extends Error {
  /** `seats` names the seats an `error` frame was about (`seat_unavailable`,
   *  `not_found`), when it named any. */
  constructor(code, message, status = 0, seats = null) {
    super(message);
    this.code = code;
    this.status = status;
    this.seats = seats;
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
      if (frame.type === 'error') waiting.reject(new RequestError(frame.code, frame.message, 0, frame.seats ?? null));
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

// ------------------------------------------------------------ seat map model

const FREE = 0;
const HELD = 1;
const SOLD = 2;
const STATUS_NAMES = ['free', 'held', 'sold'];
/** Both spellings: letters of the compact form, words of diffs and the full form. */
const STATUS_CODES = { f: FREE, h: HELD, s: SOLD, free: FREE, held: HELD, sold: SOLD };
/** A status this page does not know yet is safest shown as taken. */
const statusCode = (value) => STATUS_CODES[value] ?? HELD;

/** The seats of a compact snapshot, in the order of its `status` letters:
 *  row by row, and within a row as listed. */
function compactSeats(frame) {
  const seats = [];
  for (const row of frame.rows) {
    if (Array.isArray(row.seats)) {
      for (const s of row.seats) {
        seats.push({ id: s.id, section: row.section, row: row.row, number: s.number, x: s.x, y: s.y, tier: s.tier });
      }
      continue;
    }
    for (let k = 0; k < row.count; k += 1) {
      const number = row.n0 + k;
      const id = `${row.section}-${row.row}-${number}`;
      seats.push({ id, section: row.section, row: row.row, number, x: row.x0 + k * row.dx, y: row.y, tier: row.tier });
    }
  }
  return seats;
}

/**
 * The map a `seatmap` frame describes (either form): its seats in one list,
 * their statuses by list position, and what drawing and keyboard moves need.
 * Seats are referred to by that position (`i`) inside the map code, and by
 * id everywhere else, since ids survive a fresh snapshot.
 */
function buildSeatMap(frame) {
  const compact = frame.format === 'compact';
  const seats = compact ? compactSeats(frame) : frame.seats.map(({ status, ...seat }) => seat);
  const status = new Uint8Array(seats.length);
  let free = 0;
  for (let i = 0; i < seats.length; i += 1) {
    status[i] = statusCode(compact ? frame.status[i] : frame.seats[i].status);
    if (status[i] === FREE) free += 1;
  }
  const tiers = frame.tiers ?? [];
  return {
    event: frame.event,
    version: frame.version,
    tiers,
    tierIndex: new Map(tiers.map((tier, k) => [tier.id, k])),
    seats,
    index: new Map(seats.map((seat, i) => [seat.id, i])),
    status,
    free,
    ...seatGeometry(seats),
  };
}

/**
 * Where the seats are: the bounds; the pitch (the smallest distance between
 * two seats of a row, so that every seat can be drawn inside a square cell
 * that wide without touching its neighbours); the sections (for their
 * labels); and "lines", the seats at the same depth from left to right,
 * which the arrow keys walk.
 */
function seatGeometry(seats) {
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  const rows = new Map();
  const sections = new Map();
  const lines = new Map();
  seats.forEach((seat, i) => {
    minX = Math.min(minX, seat.x);
    maxX = Math.max(maxX, seat.x);
    minY = Math.min(minY, seat.y);
    maxY = Math.max(maxY, seat.y);
    const rowKey = `${seat.section}\u0000${seat.row}`;
    if (!rows.has(rowKey)) rows.set(rowKey, []);
    rows.get(rowKey).push(seat.x);
    const section = sections.get(seat.section) ?? { name: seat.section, minX: seat.x, maxX: seat.x, minY: seat.y };
    section.minX = Math.min(section.minX, seat.x);
    section.maxX = Math.max(section.maxX, seat.x);
    section.minY = Math.min(section.minY, seat.y);
    sections.set(seat.section, section);
    if (!lines.has(seat.y)) lines.set(seat.y, []);
    lines.get(seat.y).push(i);
  });
  let pitch = Infinity;
  for (const xs of rows.values()) {
    xs.sort((a, b) => a - b);
    for (let k = 1; k < xs.length; k += 1) {
      if (xs[k] > xs[k - 1]) pitch = Math.min(pitch, xs[k] - xs[k - 1]);
    }
  }
  if (!Number.isFinite(pitch)) pitch = Math.max(1, (maxX - minX) / 40) || 10; // one seat per row
  const lineList = [...lines.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, members]) => members.sort((a, b) => seats[a].x - seats[b].x));
  const lineOf = new Int32Array(seats.length);
  const placeInLine = new Int32Array(seats.length);
  lineList.forEach((members, l) => members.forEach((i, p) => {
    lineOf[i] = l;
    placeInLine[i] = p;
  }));
  if (!seats.length) [minX, maxX, minY, maxY] = [0, 0, 0, 0];
  return { minX, maxX, minY, maxY, pitch, sections: [...sections.values()], lines: lineList, lineOf, placeInLine };
}

/** Applies one `seats` diff's changes; returns the positions that changed. */
function applySeatChanges(map, changes) {
  const changed = [];
  for (const { id, status } of changes) {
    const i = map.index.get(id);
    if (i === undefined) continue;
    setSeatStatus(map, i, statusCode(status));
    changed.push(i);
  }
  return changed;
}

function setSeatStatus(map, i, code) {
  if (map.status[i] === code) return;
  if (map.status[i] === FREE) map.free -= 1;
  if (code === FREE) map.free += 1;
  map.status[i] = code;
}

/** The seat an arrow key leads to from seat `i` (itself at an edge). */
function neighbourSeat(map, i, key) {
  const line = map.lines[map.lineOf[i]];
  const at = map.placeInLine[i];
  switch (key) {
    case 'ArrowLeft':
      return line[Math.max(0, at - 1)];
    case 'ArrowRight':
      return line[Math.min(line.length - 1, at + 1)];
    case 'Home':
      return line[0];
    case 'End':
      return line[line.length - 1];
    case 'ArrowUp':
    case 'ArrowDown': {
      const next = map.lines[map.lineOf[i] + (key === 'ArrowUp' ? -1 : 1)];
      return next ? nearestInLine(map, next, map.seats[i].x) : i;
    }
    default:
      return i;
  }
}

function nearestInLine(map, line, x) {
  let best = line[0];
  for (const j of line) {
    if (Math.abs(map.seats[j].x - x) < Math.abs(map.seats[best].x - x)) best = j;
  }
  return best;
}

/** The front row's middle seat: where keyboard focus starts. */
function firstSeat(map) {
  const front = map.lines[0];
  return front ? nearestInLine(map, front, (map.minX + map.maxX) / 2) : -1;
}

// ----------------------------------------------------------- seat map canvas

// Room around the seats, in CSS px: the stage bar on top, then the section
// letters, then the seats.
const MAP_SIDE_PX = 12;
const STAGE_TOP_PX = 8;
const STAGE_HEIGHT_PX = 24;
const LABELS_PX = 24;
const MAP_BOTTOM_PX = 10;

/**
 * Draws a seat map on a canvas and answers "which seat is under this
 * point". Every seat is drawn inside its own square cell, so one changed
 * seat is redrawn by clearing and filling its cell alone: a diff of a few
 * seats costs a few fills, whatever the venue's size. Rings that cross cell
 * borders (keyboard focus, hover, seats that were just taken) live on a
 * second canvas on top, which is cleared and redrawn whole: it holds a
 * handful of rings at most.
 */
class SeatCanvas {
  #canvas;
  #overlay;
  #scroller;
  #ctx;
  #octx;
  /** `(i) => 'free' | 'selected' | 'mine' | 'taken'` */
  #lookOf;
  /** `() => [{i, kind: 'focus' | 'hover' | 'flash'}]` */
  #decorations;
  #map = null;
  #zoom = null; // a multiple of the fit-to-width scale; null until the buyer zooms
  #fit = 1;
  #scale = 1;
  #origin = { x: 0, y: 0 };
  #size = { width: 0, height: 0 };
  #dpr = 1;
  #colours = null;
  #dirty = new Set();
  #dirtyAll = false;
  #frame = 0;
  #middle = 0.5;

  constructor({ canvas, overlay, scroller, lookOf, decorations }) {
    this.#canvas = canvas;
    this.#overlay = overlay;
    this.#scroller = scroller;
    this.#ctx = canvas.getContext('2d');
    this.#octx = overlay.getContext('2d');
    this.#lookOf = lookOf;
    this.#decorations = decorations;
    let lastWidth = 0;
    new ResizeObserver(() => {
      const width = this.#scroller.clientWidth;
      if (!this.#map || !width || width === lastWidth) return;
      lastWidth = width;
      this.#relayout(this.#viewMiddle());
    }).observe(scroller);
    scroller.addEventListener('scroll', () => this.#scrolled(), { passive: true });
  }

  /** Draws a new map whole (a snapshot replaces everything). */
  show(map) {
    const first = !this.#map;
    this.#map = map;
    this.#relayout(first ? 0.5 : this.#viewMiddle());
  }

  clear() {
    this.#map = null;
    this.#dirty.clear();
    this.#ctx.clearRect(0, 0, this.#canvas.width, this.#canvas.height);
    this.#octx.clearRect(0, 0, this.#overlay.width, this.#overlay.height);
  }

  /** Seats whose look changed: redrawn on the next frame. */
  invalidate(seats) {
    for (const i of seats) this.#dirty.add(i);
    this.#schedule();
  }

  /** Colours changed (light or dark scheme): everything is redrawn. */
  invalidateAll() {
    this.#colours = null;
    this.#dirtyAll = true;
    this.#schedule();
  }

  /** The ring layer changed (focus, hover, flashing seats). */
  invalidateOverlay() {
    this.#schedule();
  }

  zoomIn() {
    this.#setZoom(this.#currentZoom() * ZOOM_STEP);
  }

  zoomOut() {
    this.#setZoom(this.#currentZoom() / ZOOM_STEP);
  }

  zoomToFit() {
    this.#setZoom(1);
  }

  /** The seat under a point of the page, or -1. */
  seatAt(clientX, clientY) {
    const map = this.#map;
    if (!map) return -1;
    const box = this.#canvas.getBoundingClientRect();
    const x = (clientX - box.left - this.#origin.x) / this.#scale;
    const y = (clientY - box.top - this.#origin.y) / this.#scale;
    const reach = map.pitch * 0.6;
    let best = -1;
    let bestDistance = reach * reach;
    map.seats.forEach((seat, i) => {
      const d = (seat.x - x) ** 2 + (seat.y - y) ** 2;
      if (d <= bestDistance) {
        best = i;
        bestDistance = d;
      }
    });
    return best;
  }

  /** A seat's centre in CSS px from the canvas' top-left corner. */
  centreOf(i) {
    const seat = this.#map.seats[i];
    return { x: this.#origin.x + seat.x * this.#scale, y: this.#origin.y + seat.y * this.#scale };
  }

  /** Scrolls the map sideways until seat `i` is in view. */
  reveal(i) {
    const { x } = this.centreOf(i);
    const view = this.#scroller;
    const margin = Math.min(60, view.clientWidth / 4);
    if (x < view.scrollLeft + margin || x > view.scrollLeft + view.clientWidth - margin) {
      view.scrollLeft = x - view.clientWidth / 2;
    }
  }

  #currentZoom() {
    return this.#scale / this.#fit;
  }

  #maxZoom() {
    return Math.max(1, MAX_PITCH_PX / (this.#fit * this.#map.pitch));
  }

  /** Zooms about the middle of what is in view. */
  #setZoom(zoom) {
    if (!this.#map) return;
    const middle = this.#viewMiddle();
    this.#zoom = Math.min(this.#maxZoom(), Math.max(1, zoom));
    this.#relayout(middle);
  }

  /** Where the middle of the view is, as a fraction of the map's width:
   *  kept on every scroll, so that a resize (which changes the view's width
   *  first) still knows what the buyer was looking at. */
  #viewMiddle() {
    return this.#middle;
  }

  #scrolled() {
    const view = this.#scroller;
    if (this.#size.width) this.#middle = (view.scrollLeft + view.clientWidth / 2) / this.#size.width;
  }

  /** Sizes the canvases for the current width and zoom, redraws, and
   *  scrolls so that `middle` (a fraction of the width) is in the middle. */
  #relayout(middle) {
    const map = this.#map;
    const view = this.#scroller;
    const available = Math.max(160, view.clientWidth - 1);
    const span = map.maxX - map.minX + map.pitch; // half a cell beyond each end seat
    this.#fit = Math.min((available - 2 * MAP_SIDE_PX) / span, MAX_PITCH_PX / map.pitch);
    // Until the buyer zooms, a narrow screen or a finger gets seats far
    // enough apart to tap, and the map scrolls sideways.
    const coarse = window.matchMedia('(pointer: coarse)').matches || available < 600;
    const wanted = (coarse ? MIN_TAP_PITCH_PX : MIN_PITCH_PX) / (this.#fit * map.pitch);
    const zoom = Math.min(this.#maxZoom(), Math.max(1, this.#zoom ?? wanted));
    const scale = this.#fit * zoom;
    const pitchPx = map.pitch * scale;
    this.#scale = scale;
    this.#origin = {
      x: MAP_SIDE_PX + pitchPx / 2 - map.minX * scale,
      y: STAGE_TOP_PX + STAGE_HEIGHT_PX + LABELS_PX + pitchPx / 2 - map.minY * scale,
    };
    const width = Math.floor(2 * MAP_SIDE_PX + span * scale);
    const height = Math.ceil(this.#origin.y + map.maxY * scale + pitchPx / 2 + MAP_BOTTOM_PX);
    this.#size = { width, height };
    this.#dpr = Math.min(2, window.devicePixelRatio || 1);
    for (const canvas of [this.#canvas, this.#overlay]) {
      canvas.style.width = `${width}px`;
      canvas.style.height = `${height}px`;
      canvas.width = Math.round(width * this.#dpr);
      canvas.height = Math.round(height * this.#dpr);
    }
    this.#dirtyAll = true;
    this.#draw();
    this.#scroller.scrollLeft = middle * width - this.#scroller.clientWidth / 2;
    this.#middle = middle;
  }

  #schedule() {
    if (!this.#frame) this.#frame = requestAnimationFrame(() => this.#draw());
  }

  #draw() {
    cancelAnimationFrame(this.#frame);
    this.#frame = 0;
    if (!this.#map) return;
    this.#colours ??= this.#readColours();
    const ctx = this.#ctx;
    ctx.setTransform(this.#dpr, 0, 0, this.#dpr, 0, 0);
    if (this.#dirtyAll) {
      ctx.clearRect(0, 0, this.#size.width, this.#size.height);
      this.#drawStage();
      this.#drawSectionLabels();
      for (let i = 0; i < this.#map.seats.length; i += 1) this.#drawSeat(i, false);
    } else {
      for (const i of this.#dirty) this.#drawSeat(i, true);
    }
    this.#dirtyAll = false;
    this.#dirty.clear();
    this.#drawOverlay();
  }

  #readColours() {
    const css = getComputedStyle(this.#canvas);
    const read = (name) => css.getPropertyValue(name).trim();
    const tiers = [];
    for (let k = 1; read(`--tier-${k}`); k += 1) tiers.push(read(`--tier-${k}`));
    return {
      tiers: tiers.length ? tiers : ['#3b4fd8'],
      selected: read('--seat-selected'),
      mine: read('--seat-mine'),
      taken: read('--seat-taken'),
      flash: read('--seat-flash'),
      focus: read('--seat-focus'),
      hover: read('--seat-hover'),
      stage: read('--stage'),
      stageText: read('--stage-text'),
      label: read('--muted'),
      font: css.fontFamily,
    };
  }

  #drawStage() {
    const ctx = this.#ctx;
    const left = this.#origin.x + this.#map.minX * this.#scale;
    const right = this.#origin.x + this.#map.maxX * this.#scale;
    const width = Math.max(120, (right - left) * 0.5);
    const x = (left + right) / 2 - width / 2;
    ctx.fillStyle = this.#colours.stage;
    ctx.beginPath();
    ctx.roundRect(x, STAGE_TOP_PX, width, STAGE_HEIGHT_PX, 6);
    ctx.fill();
    ctx.fillStyle = this.#colours.stageText;
    ctx.font = `600 12px ${this.#colours.font}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText('STAGE', x + width / 2, STAGE_TOP_PX + STAGE_HEIGHT_PX / 2 + 1);
  }

  #drawSectionLabels() {
    const ctx = this.#ctx;
    const half = (this.#map.pitch * this.#scale) / 2;
    ctx.fillStyle = this.#colours.label;
    ctx.font = `600 12px ${this.#colours.font}`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    for (const section of this.#map.sections) {
      const x = this.#origin.x + ((section.minX + section.maxX) / 2) * this.#scale;
      const y = this.#origin.y + section.minY * this.#scale - half - 4;
      ctx.fillText(section.name, x, y);
    }
  }

  /** One seat inside its cell: a tier-coloured dot when free, a darker and
   *  larger dot when selected, a square when it is the buyer's, a small
   *  grey dot when taken. Shapes differ, not only colours. */
  #drawSeat(i, clearFirst) {
    const ctx = this.#ctx;
    const colours = this.#colours;
    const pitchPx = this.#map.pitch * this.#scale;
    const { x, y } = this.centreOf(i);
    if (clearFirst) ctx.clearRect(x - pitchPx / 2, y - pitchPx / 2, pitchPx, pitchPx);
    const r = pitchPx * 0.4;
    ctx.beginPath();
    switch (this.#lookOf(i)) {
      case 'mine':
        ctx.fillStyle = colours.mine;
        ctx.roundRect(x - r, y - r, 2 * r, 2 * r, r * 0.35);
        break;
      case 'selected':
        ctx.fillStyle = colours.selected;
        ctx.arc(x, y, r * 1.1, 0, 2 * Math.PI);
        break;
      case 'taken':
        ctx.fillStyle = colours.taken;
        ctx.arc(x, y, Math.max(1.5, r * 0.6), 0, 2 * Math.PI);
        break;
      default: {
        const tier = this.#map.tierIndex.get(this.#map.seats[i].tier) ?? 0;
        ctx.fillStyle = colours.tiers[tier % colours.tiers.length];
        ctx.arc(x, y, r, 0, 2 * Math.PI);
      }
    }
    ctx.fill();
  }

  #drawOverlay() {
    const ctx = this.#octx;
    ctx.setTransform(this.#dpr, 0, 0, this.#dpr, 0, 0);
    ctx.clearRect(0, 0, this.#size.width, this.#size.height);
    const pitchPx = this.#map.pitch * this.#scale;
    const radius = Math.max(5, pitchPx * 0.7);
    for (const { i, kind } of this.#decorations()) {
      const { x, y } = this.centreOf(i);
      ctx.beginPath();
      ctx.arc(x, y, radius, 0, 2 * Math.PI);
      ctx.lineWidth = kind === 'hover' ? 1.5 : 2.5;
      ctx.strokeStyle = this.#colours[kind];
      ctx.stroke();
    }
  }
}

// ---------------------------------------------------------------- page state

// The seat map's canvas view, made in main() once the page is there.
let seatView = null;

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
  // The seat map of the place's event and the buyer's part in it.
  seatmap: null, // see buildSeatMap
  watching: { event: null, pending: false }, // the `watch` this socket sent
  selected: new Set(), // ids of free seats picked on the map, not held yet
  holds: [], // [{seats, expiresAtMs, heldAtMs}], one per `held`; see KEYS.holds
  mine: new Set(), // ids of every seat in `holds`
  holding: new Set(), // ids in a `hold` request still unanswered
  seatBusy: false, // a hold or release is on its way
  flash: new Map(), // id -> until (ms): seats just taken from under the buyer
  cursor: -1, // the keyboard's seat (a position in the map)
  hover: -1, // the pointer's seat
  described: -1, // the seat the line under the map is about
  seatMessage: null, // {text, kind} shown under the map
};
// A reload re-joins the same place, unless the shopping window it had has
// ended meanwhile: joining then would silently queue the buyer again.
if (state.place?.until && state.place.until <= Date.now()) {
  expirePlace();
} else if (state.place) {
  state.phase = 'joining';
  restoreHolds();
}

const serverNow = () => Date.now() + state.clockSkewMs;

/** The shopping window ended: the place is spent, its name still shown.
 *  The server releases the holds of an ended window itself. */
function expirePlace() {
  state.endedName = state.place.name;
  saveJson(KEYS.place, null);
  state.place = null;
  state.phase = 'expired';
  forgetSeats();
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
    // joining again is how this socket claims it back. A new socket
    // watches nothing: ask for the seat map afresh.
    if (state.place && (state.phase !== 'admitted' || state.expiresAtMs > serverNow())) {
      sendJoin();
      watchSeats();
    }
    renderSeats(); // hold buttons work again
  },
  onClose: ({ wasOpen }) => {
    // An upgrade refused for a bad token looks like any failed connect to a
    // browser; after two in a row ask REST whether the token is the reason.
    if (!wasOpen && ++state.failedOpens >= 2) checkToken();
    if (wasOpen) renderSeats(); // no holds or releases until we are back
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
  setPlace({ event: event.id, name: event.name, currency: event.currency, start: null });
  state.phase = 'joining';
  state.queue = null;
  render();
  focusRoom();
  if (socket.isOpen) {
    sendJoin();
    watchSeats(); // anyone may watch: the map is a preview while waiting
  }
  // else: onOpen joins and watches as soon as the socket is up
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
  const question =
    state.phase !== 'admitted'
      ? 'Leave the queue? You will lose your place in line.'
      : state.mine.size
        ? 'Give up your turn? Your held seats are released and you would have to queue again.'
        : 'Give up your turn? You would have to queue again.';
  if (!window.confirm(question)) return;
  const { event, name } = state.place;
  try {
    // Leaving does not end holds on the server: let go of them first.
    if (socket.isOpen && state.mine.size) {
      await socket.request({ type: 'release', event, seats: [...state.mine] }).catch(() => {});
    }
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
  unwatchSeats();
  forgetSeats();
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
      // The window ended on the server's clock: the same as our countdown
      // reaching zero, whichever comes first.
      if (ours && frame.reason === 'window_ended') {
        unwatchSeats();
        expirePlace();
        render();
      } else if (ours) forgetPlace(leftNotice(frame.reason, state.place.name ?? frame.event));
      break;
    case 'seatmap':
      if (ours) onSeatmap(frame);
      break;
    case 'seats':
      if (ours) onSeatsDiff(frame);
      break;
    case 'hold_expired':
      if (ours) onHoldExpired(frame);
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
    case 'disconnected':
    case 'timeout':
      return 'The connection to the server dropped. Try again once it says Live.';
    default:
      return err.message || `Something went wrong (${err.code}).`;
  }
}

// ---------------------------------------------------------- seat transitions

/** The currency of the place's event, for prices. */
function placeCurrency() {
  return state.place?.currency ?? state.events.find((e) => e.id === state.place?.event)?.currency;
}

/** A seat's tier (`{id, name, price}`), if the map knows it. */
function tierOf(seat) {
  const map = state.seatmap;
  return map?.tiers[map.tierIndex.get(seat.tier)];
}

function seatPrice(id) {
  const map = state.seatmap;
  const i = map?.index.get(id);
  return i === undefined ? 0 : (tierOf(map.seats[i])?.price ?? 0);
}

const isFree = (map, id) => map.status[map.index.get(id)] === FREE;

/** How a seat looks to this buyer (see SeatCanvas#drawSeat). */
function seatLook(i) {
  const map = state.seatmap;
  const { id } = map.seats[i];
  if (state.mine.has(id)) return 'mine';
  if (map.status[i] !== FREE) return 'taken';
  return state.selected.has(id) ? 'selected' : 'free';
}

/** Asks for the live map of the place's event: on joining, after every
 *  reconnect, and after a lost diff. */
function watchSeats() {
  const event = state.place?.event;
  if (!event || !socket.isOpen || state.watching.pending) return;
  state.watching = { event, pending: true };
  const done = () => {
    if (state.watching.event === event) state.watching.pending = false;
  };
  socket.request({ type: 'watch', event, format: SEATMAP_FORMAT }).then(
    (frame) => {
      done();
      applyFrame(frame);
    },
    (err) => {
      done();
      if (err.code === 'disconnected' || state.place?.event !== event) return; // the next `hello` watches
      if (['rate_limited', 'timeout', 'unavailable'].includes(err.code)) {
        setTimeout(watchSeats, 1000 + Math.random() * 2000);
        return;
      }
      showSeatMessage(`The seat map could not be loaded: ${describeError(err)}`, 'error');
    },
  );
}

function unwatchSeats() {
  const { event } = state.watching;
  if (event && socket.isOpen) socket.request({ type: 'unwatch', event }).catch(() => {});
  state.watching = { event: null, pending: false };
}

/** Forgets the map and everything the buyer did on it (not on the server). */
function forgetSeats() {
  state.seatmap = null;
  state.selected.clear();
  state.holding.clear();
  state.flash.clear();
  state.cursor = -1;
  state.hover = -1;
  state.described = -1;
  state.seatMessage = null;
  setHolds([]);
}

/** A snapshot, answering `watch` or pushed: it replaces the whole map. */
function onSeatmap(frame) {
  const map = buildSeatMap(frame);
  state.seatmap = map;
  // The snapshot overrides what we believed: a seat that is not held is not
  // ours (unless our hold is so new the snapshot may predate it), and a
  // selected seat that is taken is no longer a choice.
  const gone = state.holds
    .filter((hold) => Date.now() - hold.heldAtMs > FRESH_HOLD_MS)
    .flatMap((hold) => hold.seats)
    .filter((id) => map.status[map.index.get(id)] !== HELD);
  if (gone.length) setHolds(withoutSeats(state.holds, gone));
  for (const id of state.selected) {
    if (!map.index.has(id) || !isFree(map, id)) state.selected.delete(id);
  }
  if (state.cursor >= map.seats.length) state.cursor = -1;
  if (state.hover >= map.seats.length) state.hover = -1;
  if (state.described >= map.seats.length) state.described = -1;
  renderSeats();
}

/** A `seats` diff: applied in version order, or a new snapshot asked for. */
function onSeatsDiff(frame) {
  const map = state.seatmap;
  if (!map || state.watching.pending) return; // a snapshot is on its way
  if (frame.version <= map.version) return; // already in our snapshot
  if (frame.version !== map.version + frame.changes.length) {
    watchSeats(); // a diff went missing: start again from a snapshot
    return;
  }
  map.version = frame.version;
  const changed = applySeatChanges(map, frame.changes);
  const taken = [];
  const freed = [];
  for (const i of changed) {
    const { id } = map.seats[i];
    if (map.status[i] !== FREE && state.selected.has(id) && !state.holding.has(id)) {
      state.selected.delete(id);
      taken.push(id);
    }
    if (map.status[i] === FREE && state.mine.has(id) && !isFreshHold(id)) freed.push(id);
  }
  // Our seat turned free without a word to us: released in another tab.
  if (freed.length) setHolds(withoutSeats(state.holds, freed));
  if (taken.length) {
    flashSeats(taken);
    const one = taken.length === 1;
    showSeatMessage(
      `${formatSeatList(taken)} ${one ? 'was' : 'were'} just taken by someone else and ${one ? 'is' : 'are'} no longer in your selection.`,
      'warn',
    );
  }
  seatView.invalidate(changed);
  renderSeats();
}

function isFreshHold(id) {
  return state.holds.some((hold) => hold.seats.includes(id) && Date.now() - hold.heldAtMs < FRESH_HOLD_MS);
}

/** A click, a tap, Space or Enter on seat `i`: select or unselect it. */
function toggleSeat(i) {
  const map = state.seatmap;
  const { id } = map.seats[i];
  if (state.phase === 'admitted' && !state.mine.has(id) && map.status[i] === FREE) {
    if (state.selected.has(id)) state.selected.delete(id);
    else state.selected.add(id);
    seatView.invalidate([i]);
    renderSeats();
  }
  describeSeat(i);
}

function unselectSeat(id) {
  state.selected.delete(id);
  const i = state.seatmap?.index.get(id);
  if (i !== undefined) seatView.invalidate([i]);
  renderSeats();
}

function clearSelection() {
  const map = state.seatmap;
  seatView.invalidate([...state.selected].map((id) => map.index.get(id)).filter((i) => i !== undefined));
  state.selected.clear();
  renderSeats();
}

function holdSelected() {
  const seats = [...state.selected];
  if (seats.length) requestHold({ type: 'hold', seats }, seats);
}

function holdBest(count, tier) {
  requestHold({ type: 'hold_best', count, ...(tier ? { tier } : {}) }, []);
}

/** Sends `hold` or `hold_best` (`seats`: the ones asked for by name). */
function requestHold(msg, seats) {
  const event = state.place?.event;
  if (!event || state.seatBusy) return;
  state.seatBusy = true;
  for (const id of seats) state.holding.add(id);
  renderSeats();
  socket
    .request({ ...msg, event })
    .then(
      (frame) => onHeld(frame, msg.type === 'hold_best'),
      (err) => onHoldRefused(err, seats),
    )
    .finally(() => {
      state.seatBusy = false;
      for (const id of seats) state.holding.delete(id);
      renderSeats();
    });
}

function onHeld(frame, best) {
  const map = state.seatmap;
  if (frame.event !== state.place?.event) return;
  setHolds([...state.holds, { seats: frame.seats, expiresAtMs: Date.parse(frame.expires_at), heldAtMs: Date.now() }]);
  const changed = [];
  for (const id of frame.seats) {
    state.selected.delete(id);
    const i = map?.index.get(id);
    if (i === undefined) continue;
    setSeatStatus(map, i, HELD); // the diff saying so is on its way
    changed.push(i);
  }
  seatView.invalidate(changed);
  if (changed.length) seatView.reveal(changed[0]); // on a narrow screen they may be off to the side
  const until = timeFormat.format(new Date(Date.parse(frame.expires_at) - state.clockSkewMs));
  const what = best ? `The best seats we found are yours: ${formatSeatList(frame.seats)}` : `Held ${formatSeatList(frame.seats)}`;
  showSeatMessage(`${what}, until ${until}.`, 'ok');
}

function onHoldRefused(err, asked) {
  const map = state.seatmap;
  switch (err.code) {
    case 'seat_unavailable': {
      const taken = err.seats ?? [];
      if (!taken.length) {
        showSeatMessage('Not enough free seats left for that. Try fewer seats or another tier.', 'error');
        return;
      }
      // Our map had not heard yet: show them taken now; the diff follows.
      const changed = [];
      for (const id of taken) {
        state.selected.delete(id);
        const i = map?.index.get(id);
        if (i === undefined) continue;
        if (map.status[i] === FREE) setSeatStatus(map, i, HELD);
        changed.push(i);
      }
      seatView.invalidate(changed);
      flashSeats(taken);
      const one = taken.length === 1;
      const rest = asked.length > taken.length ? ' The rest of your selection is still selected.' : '';
      showSeatMessage(
        `Sorry, ${formatSeatList(taken)} ${one ? 'was' : 'were'} just taken by someone else. Nothing was held.${rest}`,
        'error',
      );
      return;
    }
    case 'hold_limit':
      showSeatMessage(`You can't hold that many seats: ${err.message}. Release some first, or choose fewer.`, 'error');
      return;
    case 'not_found':
      for (const id of err.seats ?? []) state.selected.delete(id);
      showSeatMessage(`These seats are not part of this event: ${formatSeatList(err.seats ?? [])}.`, 'error');
      return;
    case 'not_admitted':
      showSeatMessage('Your shopping window is not open, so seats cannot be held.', 'error');
      return;
    case 'disconnected':
    case 'timeout':
      // The server may have held them and told a socket that is gone.
      showSeatMessage('The connection dropped before the server answered. Please check the map and try again once it says Live.', 'error');
      return;
    default:
      showSeatMessage(describeError(err), 'error');
  }
}

function releaseSeats(seats) {
  const event = state.place?.event;
  if (!event || !seats.length || state.seatBusy) return;
  state.seatBusy = true;
  renderSeats();
  socket
    .request({ type: 'release', event, seats })
    .then(
      // The reply names the seats that were still ours; the others had
      // lapsed already. Either way none of them is ours any more.
      (frame) => {
        letGo(seats, frame.seats);
        showSeatMessage(`Released ${formatSeatList(seats)}.`, 'ok');
      },
      (err) => showSeatMessage(`Could not release the seats: ${describeError(err)}`, 'error'),
    )
    .finally(() => {
      state.seatBusy = false;
      renderSeats();
    });
}

function onHoldExpired(frame) {
  letGo(frame.seats, frame.seats);
  showSeatMessage(`Your hold on ${formatSeatList(frame.seats)} expired. The seats are free again.`, 'warn');
}

/** `seats` are no longer ours; those in `freed` are free now. */
function letGo(seats, freed) {
  const map = state.seatmap;
  setHolds(withoutSeats(state.holds, seats));
  const changed = [];
  for (const id of new Set([...seats, ...freed])) {
    const i = map?.index.get(id);
    if (i === undefined) continue;
    if (freed.includes(id)) setSeatStatus(map, i, FREE);
    changed.push(i);
  }
  seatView.invalidate(changed);
  renderSeats();
}

/** Holds whose end passed a while ago without `hold_expired` reaching us. */
function dropLapsedHolds() {
  const lapsed = state.holds.filter((hold) => hold.expiresAtMs + HOLD_GRACE_MS < serverNow()).flatMap((h) => h.seats);
  if (!lapsed.length) return;
  letGo(lapsed, []);
  showSeatMessage(`Your hold on ${formatSeatList(lapsed)} has ended.`, 'warn');
}

function withoutSeats(holds, ids) {
  const gone = new Set(ids);
  return holds.map((hold) => ({ ...hold, seats: hold.seats.filter((id) => !gone.has(id)) }));
}

/** The buyer's holds, kept in storage so that a reload still knows them. */
function setHolds(holds) {
  state.holds = holds.filter((hold) => hold.seats.length);
  const before = state.mine;
  state.mine = new Set(state.holds.flatMap((hold) => hold.seats));
  saveJson(KEYS.holds, state.place && state.holds.length ? { event: state.place.event, holds: state.holds } : null);
  const map = state.seatmap;
  if (map && seatView) {
    const changed = [...before, ...state.mine].filter((id) => before.has(id) !== state.mine.has(id));
    seatView.invalidate(changed.map((id) => map.index.get(id)).filter((i) => i !== undefined));
  }
}

/** Holds this buyer made before a reload (or in another tab). */
function restoreHolds() {
  const saved = loadJson(KEYS.holds);
  const valid = saved?.event === state.place?.event && Array.isArray(saved?.holds);
  const holds = valid ? saved.holds.filter((h) => Array.isArray(h.seats) && h.expiresAtMs > Date.now()) : [];
  setHolds(holds.map((h) => ({ heldAtMs: 0, ...h })));
}

/** Seats taken from under the buyer blink for a moment. */
function flashSeats(ids) {
  const until = Date.now() + FLASH_MS;
  for (const id of ids) state.flash.set(id, until);
  if (flashTimer) return;
  flashTimer = setInterval(() => {
    const now = Date.now();
    for (const [id, end] of state.flash) if (end <= now) state.flash.delete(id);
    seatView.invalidateOverlay();
    if (!state.flash.size) {
      clearInterval(flashTimer);
      flashTimer = 0;
    }
  }, 150);
}
let flashTimer = 0;

/** The rings on top of the seats: flashing ones, the pointer's, the keyboard's. */
function seatDecorations() {
  const map = state.seatmap;
  const rings = [];
  const blinkOn = reducedMotion.matches || Math.floor(Date.now() / 300) % 2 === 0;
  if (blinkOn) {
    for (const id of state.flash.keys()) {
      const i = map.index.get(id);
      if (i !== undefined) rings.push({ i, kind: 'flash' });
    }
  }
  if (state.hover >= 0) rings.push({ i: state.hover, kind: 'hover' });
  if (state.cursor >= 0 && $('seat-canvas').matches(':focus-visible')) rings.push({ i: state.cursor, kind: 'focus' });
  return rings;
}
const reducedMotion = window.matchMedia('(prefers-reduced-motion: reduce)');

function showSeatMessage(text, kind = 'info') {
  state.seatMessage = { text, kind };
  announce(text);
  renderSeatMessage();
}

/** Says `text` to screen readers once (a live region), then clears it so
 *  that the words are not met a second time beside the visible message. */
function announce(text) {
  const region = $('seat-announcer');
  region.textContent = text;
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    region.textContent = '';
  }, 7_000);
}
let announceTimer = 0;

/** Arrow keys walk the seats, Space or Enter picks one. */
function onMapKey(e) {
  const map = state.seatmap;
  if (!map || !map.seats.length || e.altKey || e.ctrlKey || e.metaKey) return;
  const moves = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'];
  if (moves.includes(e.key)) {
    const from = state.cursor >= 0 ? state.cursor : firstSeat(map);
    moveCursor(state.cursor >= 0 ? neighbourSeat(map, from, e.key) : from);
  } else if ((e.key === ' ' || e.key === 'Enter') && state.cursor >= 0) {
    toggleSeat(state.cursor);
  } else {
    return;
  }
  e.preventDefault();
}

function moveCursor(i) {
  state.cursor = i;
  seatView.reveal(i);
  seatView.invalidateOverlay();
  describeSeat(i);
}

function onMapFocus() {
  const map = state.seatmap;
  if (!map || !map.seats.length) return;
  if (state.cursor < 0) state.cursor = firstSeat(map);
  if ($('seat-canvas').matches(':focus-visible')) moveCursor(state.cursor);
}

function onMapClick(e) {
  const i = seatView.seatAt(e.clientX, e.clientY);
  if (i < 0) return;
  state.cursor = i;
  toggleSeat(i);
}

function onMapPointer(e) {
  const i = e.type === 'pointerleave' ? -1 : seatView.seatAt(e.clientX, e.clientY);
  if (i === state.hover) return;
  state.hover = i;
  $('seat-canvas').style.cursor = i >= 0 ? 'pointer' : '';
  seatView.invalidateOverlay();
  if (i >= 0) describeSeat(i);
}

/** Once a second: the countdowns, the reconnect timer, and the end of the
 *  window. */
function tick() {
  if (state.phase === 'admitted' && state.expiresAtMs <= serverNow()) {
    unwatchSeats();
    expirePlace();
    render();
  }
  if (state.phase === 'admitted') {
    renderCountdown();
    dropLapsedHolds();
    renderHoldCountdowns();
  }
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
  renderSeats();
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
  // While paused the server reports the current rate, which is zero.
  setText($('rate'), q.paused ? 'paused: nobody is admitted right now' : `${formatNumber(q.rate_per_min)} people a minute`);
  $('paused').hidden = !q.paused;
}

function renderAdmitted() {
  setText($('window-end'), `Your window closes at ${timeFormat.format(new Date(state.expiresAtMs))}.`);
  renderCountdown();
}

function renderCountdown() {
  setText($('countdown'), formatClock(state.expiresAtMs - serverNow()));
}

// The map the canvas shows and the tiers the legend lists, to redo them
// only when they change.
let shownMap = null;
let shownTiers = null;
let shownHolds = null;

/** The seat map panel: a preview while waiting, the shop once admitted. */
function renderSeats() {
  const visible = Boolean(state.place) && ['joining', 'waiting', 'admitted'].includes(state.phase);
  $('seats-view').hidden = !visible;
  document.body.classList.toggle('has-seatmap', visible);
  if (!visible || !seatView) {
    if (shownMap) seatView.clear();
    shownMap = null;
    return;
  }
  const admitted = state.phase === 'admitted';
  setText($('seats-title'), admitted ? 'Choose your seats' : 'Seat map preview');
  $('seats-preview').hidden = admitted;
  $('shop').hidden = !admitted;
  if (state.seatmap !== shownMap) {
    shownMap = state.seatmap;
    if (shownMap) seatView.show(shownMap);
    else seatView.clear();
  }
  renderSeatSummary();
  renderLegend();
  renderSeatMessage();
  if (state.seatmap && state.described >= 0) describeSeat(state.described); // its status may have changed
  if (admitted) {
    renderSelection();
    renderHolds();
  }
}

function renderSeatSummary() {
  const map = state.seatmap;
  const summary = map
    ? `${plural(map.seats.length, 'seat', 'seats')}, ${formatNumber(map.free)} free`
    : 'Loading the seat map…';
  const el = $('seatmap-summary');
  setText(el, summary);
  el.dataset.total = String(map?.seats.length ?? 0);
  el.dataset.free = String(map?.free ?? 0);
  el.dataset.version = String(map?.version ?? '');
  $('seat-canvas').setAttribute('aria-label', `Seat map: ${summary}`);
}

/** Tier colours with their prices, then the looks that are not tiers. */
function renderLegend() {
  const tiers = state.seatmap?.tiers ?? [];
  const key = JSON.stringify([tiers, placeCurrency()]);
  if (key === shownTiers) return;
  shownTiers = key;
  const item = (look, swatchColour, label) => {
    const li = document.createElement('li');
    li.dataset.look = look;
    const swatch = document.createElement('span');
    swatch.className = `swatch swatch-${look}`;
    swatch.style.setProperty('--swatch', swatchColour);
    swatch.setAttribute('aria-hidden', 'true');
    li.append(swatch, label);
    return li;
  };
  const currency = placeCurrency();
  const items = tiers.map((tier, k) => {
    const li = item('free', `var(--tier-${(k % TIER_COLOUR_COUNT) + 1})`, `${tier.name} ${formatMoney(tier.price, currency)}`);
    li.dataset.tier = tier.id;
    return li;
  });
  items.push(
    item('selected', 'var(--seat-selected)', 'Selected'),
    item('mine', 'var(--seat-mine)', 'Held by you'),
    item('taken', 'var(--seat-taken)', 'Taken'),
  );
  $('legend').replaceChildren(...items);
  const options = tiers.map((tier) => new Option(`${tier.name} · ${formatMoney(tier.price, currency)}`, tier.id));
  const choice = $('best-tier').value;
  $('best-tier').replaceChildren(new Option('Any tier', ''), ...options);
  $('best-tier').value = tiers.some((t) => t.id === choice) ? choice : '';
}

function renderSeatMessage() {
  const message = state.seatMessage;
  $('seat-message').hidden = !message;
  if (!message) return;
  $('seat-message').dataset.kind = message.kind;
  setText($('seat-message-text'), message.text);
}

/** A seat in words, for the line under the map (read out to keyboard users). */
function describeSeat(i) {
  state.described = i;
  const map = state.seatmap;
  const seat = map.seats[i];
  const tier = tierOf(seat);
  const price = tier ? ` · ${tier.name} ${formatMoney(tier.price, placeCurrency())}` : '';
  const look = seatLook(i);
  let status = { free: 'free', selected: 'selected', mine: 'held by you', taken: 'taken' }[look];
  if (look === 'free' && state.phase !== 'admitted') status += ": you can choose seats once it's your turn";
  setText($('seat-info'), `${seat.id}: section ${seat.section}, row ${seat.row}, seat ${seat.number}${price} · ${status}`);
}

function renderSelection() {
  const ids = [...state.selected];
  const total = ids.reduce((sum, id) => sum + seatPrice(id), 0);
  setText(
    $('selection-text'),
    ids.length
      ? `${plural(ids.length, 'seat', 'seats')} selected · ${formatMoney(total, placeCurrency())}`
      : 'Click free seats on the map to select them.',
  );
  const key = ids.join(' ');
  if ($('selection-list').dataset.key !== key) {
    $('selection-list').dataset.key = key;
    $('selection-list').replaceChildren(...ids.map(selectionChip));
  }
  const live = socket.isOpen && !state.seatBusy;
  const hold = $('hold-selected');
  hold.disabled = !ids.length || !live;
  setText(hold, state.seatBusy && state.holding.size ? 'Holding…' : ids.length ? `Hold ${plural(ids.length, 'seat', 'seats')}` : 'Hold seats');
  $('clear-selection').hidden = !ids.length;
  $('best-submit').disabled = !live;
}

function selectionChip(id) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'chip';
  button.textContent = `${id} ✕`;
  button.setAttribute('aria-label', `Unselect ${id}`);
  button.addEventListener('click', () => unselectSeat(id));
  li.append(button);
  return li;
}

/** The buyer's held seats, rebuilt only when they change; the countdowns
 *  tick in renderHoldCountdowns. */
function renderHolds() {
  const currency = placeCurrency();
  const seats = state.holds.flatMap((hold) => hold.seats);
  const total = seats.reduce((sum, id) => sum + seatPrice(id), 0);
  $('holds-empty').hidden = seats.length > 0;
  $('holds-total').hidden = !seats.length;
  setText($('holds-total'), `Total ${formatMoney(total, currency)} for ${plural(seats.length, 'seat', 'seats')}`);
  $('release-all').hidden = !seats.length;
  $('release-all').disabled = state.seatBusy || !socket.isOpen;
  for (const button of $('hold-list').querySelectorAll('button')) button.disabled = state.seatBusy || !socket.isOpen;
  // Prices and tiers come from the map: a new map may name them first.
  if (shownHolds?.holds === state.holds && shownHolds.map === state.seatmap) return;
  shownHolds = { holds: state.holds, map: state.seatmap };
  $('hold-list').replaceChildren(...state.holds.map((hold) => holdItem(hold, currency)));
  renderHoldCountdowns();
}

function holdItem(hold, currency) {
  const li = document.createElement('li');
  li.className = 'hold';
  li.dataset.seats = hold.seats.join(' ');
  const what = document.createElement('p');
  what.className = 'hold-seats';
  const names = document.createElement('strong');
  names.textContent = formatSeatList(hold.seats);
  const tiers = document.createElement('span');
  tiers.className = 'muted';
  tiers.textContent = ` · ${tierSummary(hold.seats)}`;
  what.append(names, tiers);
  const meta = document.createElement('p');
  meta.className = 'hold-meta';
  const price = document.createElement('span');
  price.className = 'hold-price';
  price.textContent = formatMoney(hold.seats.reduce((sum, id) => sum + seatPrice(id), 0), currency);
  const timer = document.createElement('span');
  timer.className = 'hold-timer';
  const clock = document.createElement('span');
  clock.className = 'hold-countdown';
  clock.setAttribute('role', 'timer');
  timer.append('held for ', clock);
  meta.append(price, ' · ', timer);
  const show = document.createElement('button');
  show.type = 'button';
  show.className = 'link-button small hold-show';
  show.textContent = 'Show on map';
  show.setAttribute('aria-label', `Show ${formatSeatList(hold.seats)} on the map`);
  show.addEventListener('click', () => showOnMap(hold.seats));
  meta.append(' · ', show);
  const release = document.createElement('button');
  release.type = 'button';
  release.className = 'button button-secondary button-small';
  release.textContent = 'Release';
  release.setAttribute('aria-label', `Release ${formatSeatList(hold.seats)}`);
  release.disabled = state.seatBusy || !socket.isOpen;
  release.addEventListener('click', () => releaseSeats(hold.seats));
  li.append(what, meta, release);
  return li;
}

/** Brings seats into view: the map scrolls to them, the page to the map. */
function showOnMap(ids) {
  const i = state.seatmap?.index.get(ids[0]);
  if (i === undefined) return;
  seatView.reveal(i);
  $('map-scroll').scrollIntoView({ block: 'nearest', behavior: reducedMotion.matches ? 'auto' : 'smooth' });
}

/** "VIP ×2, R" */
function tierSummary(ids) {
  const counts = new Map();
  for (const id of ids) {
    const i = state.seatmap?.index.get(id);
    const name = (i === undefined ? null : tierOf(state.seatmap.seats[i])?.name) ?? '?';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, n]) => (n > 1 ? `${name} ×${n}` : name)).join(', ');
}

function renderHoldCountdowns() {
  const items = $('hold-list').children;
  state.holds.forEach((hold, k) => {
    const left = hold.expiresAtMs - serverNow();
    items[k]?.classList.toggle('is-ending', left < 60_000);
    const clock = items[k]?.querySelector('.hold-countdown');
    if (clock) setText(clock, formatClock(left));
  });
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
  bindSeatMap();
}

function bindSeatMap() {
  const canvas = $('seat-canvas');
  seatView = new SeatCanvas({
    canvas,
    overlay: $('seat-overlay'),
    scroller: $('map-scroll'),
    lookOf: seatLook,
    decorations: seatDecorations,
  });
  canvas.addEventListener('click', onMapClick);
  canvas.addEventListener('pointermove', onMapPointer);
  canvas.addEventListener('pointerleave', onMapPointer);
  canvas.addEventListener('keydown', onMapKey);
  canvas.addEventListener('focus', onMapFocus);
  canvas.addEventListener('blur', () => seatView.invalidateOverlay());
  $('zoom-in').addEventListener('click', () => seatView.zoomIn());
  $('zoom-out').addEventListener('click', () => seatView.zoomOut());
  $('zoom-fit').addEventListener('click', () => seatView.zoomToFit());
  $('hold-selected').addEventListener('click', holdSelected);
  $('clear-selection').addEventListener('click', clearSelection);
  $('release-all').addEventListener('click', () => releaseSeats([...state.mine]));
  $('seat-message-close').addEventListener('click', () => {
    state.seatMessage = null;
    renderSeatMessage();
  });
  $('best-count').replaceChildren(...BEST_COUNTS.map((n) => new Option(String(n), String(n))));
  $('best-count').value = '2';
  $('best-form').addEventListener('submit', (e) => {
    e.preventDefault();
    holdBest(Number($('best-count').value), $('best-tier').value || null);
  });
  // Another tab of this buyer held or released seats.
  window.addEventListener('storage', (e) => {
    if (e.key !== KEYS.holds) return;
    restoreHolds();
    renderSeats();
  });
  window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => seatView.invalidateAll());
  // A read-only view of the map as drawn, for the browser tests and for
  // support staff poking at a buyer's screen.
  window.queueticket = Object.freeze({
    /** `{id, tier, status, look, mine, selected, x, y}`, x and y being the seat's
     *  centre in CSS px from the canvas' top-left; null when not drawn. */
    seat(id) {
      const map = state.seatmap;
      const i = map?.index.get(id);
      if (i === undefined || shownMap !== map) return null;
      const { x, y } = seatView.centreOf(i);
      const [mine, selected] = [state.mine.has(id), state.selected.has(id)];
      const { tier } = map.seats[i];
      return { id, tier, status: STATUS_NAMES[map.status[i]], look: seatLook(i), mine, selected, x, y };
    },
  });
}

function main() {
  bindUi();
  render();
  loadEvents();
  socket.start();
  setInterval(tick, 1000);
}

main();
