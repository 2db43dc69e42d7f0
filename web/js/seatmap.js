// The seat map as data: a `seatmap` snapshot (full or compact) expanded to
// one list of seats, `seats` diffs applied in version order (an old one
// skipped, a missing one noticed), and this buyer's part in it: the seats
// picked and the seats held. Pure: no DOM, no socket, no clock reads (the
// time is an argument), so `node --test` imports it as is.

export const FREE = 0;
export const HELD = 1;
export const SOLD = 2;
export const STATUS_NAMES = ['free', 'held', 'sold'];
/** Both spellings: letters of the compact form, words of diffs and the full form. */
const STATUS_CODES = { f: FREE, h: HELD, s: SOLD, free: FREE, held: HELD, sold: SOLD };
/** A status this page does not know yet is safest shown as taken. */
export const statusCode = (value) => STATUS_CODES[value] ?? HELD;

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
export function buildSeatMap(frame) {
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

export function setSeatStatus(map, i, code) {
  if (map.status[i] === code) return;
  if (map.status[i] === FREE) map.free -= 1;
  if (code === FREE) map.free += 1;
  map.status[i] = code;
}

/** The seat an arrow key leads to from seat `i` (itself at an edge). */
export function neighbourSeat(map, i, key) {
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
export function firstSeat(map) {
  const front = map.lines[0];
  return front ? nearestInLine(map, front, (map.minX + map.maxX) / 2) : -1;
}

// ------------------------------------------------------------- diff order

/**
 * Where a `seats` diff stands against the map: `stale` when the map already
 * has it (an old or duplicate diff), `gap` when one went missing in between
 * (each changed seat raises the version by one), `next` when it follows.
 */
export function diffOrder(map, frame) {
  if (frame.version <= map.version) return 'stale';
  if (frame.version !== map.version + frame.changes.length) return 'gap';
  return 'next';
}

/** Applies a `seats` diff that follows the map; `changed` are the
 *  positions of the seats it changed (none unless `order` is `next`). */
export function applySeatsDiff(map, frame) {
  const order = diffOrder(map, frame);
  if (order !== 'next') return { order, changed: [] };
  map.version = frame.version;
  return { order, changed: applySeatChanges(map, frame.changes) };
}

// ------------------------------------------------------------ buyer's seats

// A `seats` diff or a snapshot this soon after our own `held` reply may
// predate it (the reply comes straight back, diffs take the bus), so it
// cannot tell us the hold is gone.
export const FRESH_HOLD_MS = 5_000;
// A hold this far past its end without `hold_expired` (say the socket was
// down then) is dropped by the page itself.
export const HOLD_GRACE_MS = 5_000;

/** `holds` without the seats `ids` (holds left empty stay, for now). */
export function withoutSeats(holds, ids) {
  const gone = new Set(ids);
  return holds.map((hold) => ({ ...hold, seats: hold.seats.filter((id) => !gone.has(id)) }));
}

/**
 * This buyer's part in one event's seat map: the map as last heard, the
 * seats picked on it, and the holds made. Every change to how a seat looks
 * marks its position dirty; whoever draws takes them with `takeDirty()`.
 * Times (`now`) are ms since the epoch, passed in by the caller.
 */
export class BuyerSeats {
  /** The map of the last snapshot with the diffs since (see buildSeatMap). */
  map = null;
  /** Ids of free seats picked on the map, not held yet. */
  selected = new Set();
  /** `[{seats, expiresAtMs, heldAtMs}]`, one per `held` reply. */
  holds = [];
  /** Ids of every seat in `holds`. */
  mine = new Set();
  /** Ids in a `hold` request still unanswered. */
  holding = new Set();
  #dirty = new Set();
  /** Told the holds whenever they change, to remember them across reloads. */
  #onHolds;

  constructor({ onHolds = () => {} } = {}) {
    this.#onHolds = onHolds;
  }

  /** Positions whose look changed since the last call. */
  takeDirty() {
    const dirty = [...this.#dirty];
    this.#dirty.clear();
    return dirty;
  }

  /** How seat `i` looks to this buyer: `mine`, `sold`, `taken` (held by
   *  someone), `selected` or `free`. */
  look(i) {
    const { id } = this.map.seats[i];
    if (this.mine.has(id)) return 'mine';
    if (this.map.status[i] === SOLD) return 'sold';
    if (this.map.status[i] !== FREE) return 'taken';
    return this.selected.has(id) ? 'selected' : 'free';
  }

  /** A seat's tier (`{id, name, price}`), if the map knows it. */
  tierOf(seat) {
    const map = this.map;
    return map?.tiers[map.tierIndex.get(seat.tier)];
  }

  /** A seat's price by id; 0 for a seat the map does not know. */
  priceOf(id) {
    const i = this.map?.index.get(id);
    return i === undefined ? 0 : (this.tierOf(this.map.seats[i])?.price ?? 0);
  }

  /** The positions on the map of those of `ids` it has. */
  positions(ids) {
    return ids.map((id) => this.map?.index.get(id)).filter((i) => i !== undefined);
  }

  /** A snapshot replaces the whole map. What we believed gives way to it: a
   *  seat that is not held is not ours (unless our hold is so new the
   *  snapshot may predate it), and a selected seat that is taken is no
   *  longer a choice. */
  snapshot(frame, now) {
    const map = buildSeatMap(frame);
    this.map = map;
    const gone = this.holds
      .filter((hold) => now - hold.heldAtMs > FRESH_HOLD_MS)
      .flatMap((hold) => hold.seats)
      .filter((id) => map.status[map.index.get(id)] !== HELD);
    if (gone.length) this.setHolds(withoutSeats(this.holds, gone));
    for (const id of this.selected) {
      if (!map.index.has(id) || map.status[map.index.get(id)] !== FREE) this.selected.delete(id);
    }
    this.#dirty.clear(); // a new map is drawn whole
    return map;
  }

  /**
   * A `seats` diff. `order` is `stale` (nothing to do), `gap` (ask for a
   * snapshot) or `next` (applied). `taken` are the selected seats someone
   * else took, now unselected; a seat of ours that turned free without a
   * word to us was released in another tab, and is ours no more.
   */
  diff(frame, now) {
    const map = this.map;
    const { order, changed } = applySeatsDiff(map, frame);
    const taken = [];
    const freed = [];
    for (const i of changed) {
      const { id } = map.seats[i];
      if (map.status[i] !== FREE && this.selected.has(id) && !this.holding.has(id)) {
        this.selected.delete(id);
        taken.push(id);
      }
      if (map.status[i] === FREE && this.mine.has(id) && !this.#isFreshHold(id, now)) freed.push(id);
      this.#dirty.add(i);
    }
    if (freed.length) this.setHolds(withoutSeats(this.holds, freed));
    return { order, changed, taken };
  }

  /** Picks or unpicks seat `i` if it is free and not ours; says whether it did. */
  toggle(i) {
    const { id } = this.map.seats[i];
    if (this.mine.has(id) || this.map.status[i] !== FREE) return false;
    if (this.selected.has(id)) this.selected.delete(id);
    else this.selected.add(id);
    this.#dirty.add(i);
    return true;
  }

  unselect(ids) {
    for (const id of ids) this.selected.delete(id);
    this.#mark(ids);
  }

  clearSelection() {
    this.unselect([...this.selected]);
  }

  /** Our `held` reply: the seats are ours, and held on the map already (the
   *  diff saying so is on its way). Returns their positions on the map. */
  held(frame, now) {
    this.setHolds([...this.holds, { seats: frame.seats, expiresAtMs: Date.parse(frame.expires_at), heldAtMs: now }]);
    this.unselect(frame.seats);
    const changed = this.positions(frame.seats);
    for (const i of changed) setSeatStatus(this.map, i, HELD);
    return changed;
  }

  /** Seats a refused hold named as taken: our map had not heard yet, so
   *  they show taken now; the diff follows. */
  takenFromUs(ids) {
    this.unselect(ids);
    for (const i of this.positions(ids)) {
      if (this.map.status[i] === FREE) setSeatStatus(this.map, i, HELD);
    }
  }

  /** `seats` are no longer ours; those in `freed` are free now. */
  letGo(seats, freed) {
    this.setHolds(withoutSeats(this.holds, seats));
    const ids = [...new Set([...seats, ...freed])];
    for (const i of this.positions(ids)) {
      if (freed.includes(this.map.seats[i].id)) setSeatStatus(this.map, i, FREE);
    }
    this.#mark(ids);
  }

  /** An order keeps the seats held until it expires: holds with any of
   *  `ids` last at least until `expiresAtMs` (the server raised them). */
  extendHolds(ids, expiresAtMs) {
    const kept = new Set(ids);
    if (!this.holds.some((h) => h.expiresAtMs < expiresAtMs && h.seats.some((id) => kept.has(id)))) return;
    this.setHolds(this.holds.map((h) => (h.seats.some((id) => kept.has(id)) ? { ...h, expiresAtMs: Math.max(h.expiresAtMs, expiresAtMs) } : h)));
  }

  /** Our paid order's seats: no longer holds but sold (the diff saying so
   *  is on its way). */
  booked(ids) {
    this.setHolds(withoutSeats(this.holds, ids));
    for (const i of this.positions(ids)) setSeatStatus(this.map, i, SOLD);
    this.#mark(ids);
  }

  /** Seats of holds whose end passed a while ago (`now` on the server's
   *  clock) without `hold_expired` reaching us. */
  lapsed(now) {
    return this.holds.filter((hold) => hold.expiresAtMs + HOLD_GRACE_MS < now).flatMap((hold) => hold.seats);
  }

  /** Holds remembered from before a reload (or made in another tab), as
   *  stored: `{event, holds}`. Only the event's own that have not ended. */
  restore(saved, event, now) {
    const valid = saved?.event === event && Array.isArray(saved?.holds);
    const holds = valid ? saved.holds.filter((h) => Array.isArray(h.seats) && h.expiresAtMs > now) : [];
    this.setHolds(holds.map((h) => ({ heldAtMs: 0, ...h })));
  }

  setHolds(holds) {
    this.holds = holds.filter((hold) => hold.seats.length);
    const before = this.mine;
    this.mine = new Set(this.holds.flatMap((hold) => hold.seats));
    this.#onHolds(this.holds);
    this.#mark([...before, ...this.mine].filter((id) => before.has(id) !== this.mine.has(id)));
  }

  /** Forgets the map and everything the buyer did on it (not on the server). */
  forget() {
    this.map = null;
    this.selected.clear();
    this.holding.clear();
    this.#dirty.clear();
    this.setHolds([]);
  }

  #isFreshHold(id, now) {
    return this.holds.some((hold) => hold.seats.includes(id) && now - hold.heldAtMs < FRESH_HOLD_MS);
  }

  #mark(ids) {
    for (const i of this.positions(ids)) this.#dirty.add(i);
  }
}
