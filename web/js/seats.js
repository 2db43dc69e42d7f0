// The seat panel's behaviour: watching the map of the place's event over
// the socket, picking seats by pointer and keyboard, holding and releasing
// them, and what the buyer is told about it. It owns the buyer's seats (a
// BuyerSeats) and the panel's own state; the place and the phase it reads
// from the page.

import { describeError } from './errors.js';
import { formatSeatList } from './format.js';
import { BuyerSeats, firstSeat, neighbourSeat } from './seatmap.js';
import { KEYS, loadJson, saveJson } from './storage.js';

// The seat map: the compact snapshot form stays small for big venues.
const SEATMAP_FORMAT = 'compact';
// Seats someone else took from under the buyer blink for this long.
const FLASH_MS = 2_500;
const FLASH_EVERY_MS = 150;
const MOVES = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'];

export class Seats {
  /** The buyer's seats on the map of the place's event. */
  model;
  /** The page: its `place`, `phase`, `serverNow()`, `clockSkewMs`,
   *  `currency()`, `applyFrame(frame)` and `onHolds()`. */
  #page;
  #socket;
  #view;
  #canvas;
  #format;
  /** The `watch` this socket sent, and whether its snapshot is still to
   *  come (diffs before it are dropped: the snapshot has them). */
  #watching = { event: null, pending: false };
  /** A hold or release is on its way. */
  #busy = false;
  /** id -> until (ms): seats just taken from under the buyer. */
  #flash = new Map();
  #flashTimer = 0;
  /** The keyboard's seat (a position in the map), or -1. */
  #cursor = -1;
  /** The pointer's seat, or -1. */
  #hover = -1;
  /** The seat the line under the map is about, or -1. */
  #described = -1;
  /** `{text, kind}` shown under the map, or null. */
  #message = null;

  constructor({ page, socket, view, canvas, format }) {
    this.#page = page;
    this.#socket = socket;
    this.#view = view;
    this.#canvas = canvas;
    this.#format = format;
    this.model = new BuyerSeats({
      onHolds: (holds) => {
        const { place } = this.#page;
        saveJson(KEYS.holds, place && holds.length ? { event: place.event, holds } : null);
        this.#page.onHolds();
      },
    });
  }

  /** Asks for the live map of the place's event: on joining, after every
   *  reconnect, and after a lost diff. */
  watch() {
    const event = this.#page.place?.event;
    if (!event || !this.#socket.isOpen || this.#watching.pending) return;
    this.#watching = { event, pending: true };
    const done = () => {
      if (this.#watching.event === event) this.#watching.pending = false;
    };
    this.#socket.request({ type: 'watch', event, format: SEATMAP_FORMAT }).then(
      (frame) => {
        done();
        this.#page.applyFrame(frame);
      },
      (err) => {
        done();
        if (err.code === 'disconnected' || this.#page.place?.event !== event) return; // the next `hello` watches
        if (['rate_limited', 'timeout', 'unavailable'].includes(err.code)) {
          setTimeout(() => this.watch(), 1000 + Math.random() * 2000);
          return;
        }
        this.#showMessage(`The seat map could not be loaded: ${describeError(err)}`, 'error');
      },
    );
  }

  unwatch() {
    const { event } = this.#watching;
    if (event && this.#socket.isOpen) this.#socket.request({ type: 'unwatch', event }).catch(() => {});
    this.#watching = { event: null, pending: false };
  }

  /** Forgets the map and everything the buyer did on it (not on the server). */
  forget() {
    this.#flash.clear();
    this.#cursor = -1;
    this.#hover = -1;
    this.#described = -1;
    this.#message = null;
    this.model.forget();
  }

  /** The holds remembered on this device, after a reload or when another
   *  tab of this buyer held or released seats. */
  restore() {
    this.model.restore(loadJson(KEYS.holds), this.#page.place?.event, Date.now());
  }

  /** A snapshot, answering `watch` or pushed: it replaces the whole map. */
  onSeatmap(frame) {
    const map = this.model.snapshot(frame, Date.now());
    if (this.#cursor >= map.seats.length) this.#cursor = -1;
    if (this.#hover >= map.seats.length) this.#hover = -1;
    if (this.#described >= map.seats.length) this.#described = -1;
    this.render();
  }

  /** A `seats` diff: applied in version order, or a new snapshot asked for. */
  onDiff(frame) {
    if (!this.model.map || this.#watching.pending) return; // a snapshot is on its way
    const { order, taken } = this.model.diff(frame, Date.now());
    if (order === 'stale') return; // already in our map
    if (order === 'gap') {
      this.watch(); // a diff went missing: start again from a snapshot
      return;
    }
    if (taken.length) {
      this.#flashSeats(taken);
      const one = taken.length === 1;
      this.#showMessage(
        `${formatSeatList(taken)} ${one ? 'was' : 'were'} just taken by someone else and ${one ? 'is' : 'are'} no longer in your selection.`,
        'warn',
      );
    }
    this.redraw();
  }

  onHoldExpired(frame) {
    this.#letGo(frame.seats, frame.seats);
    this.#showMessage(`Your hold on ${formatSeatList(frame.seats)} expired. The seats are free again.`, 'warn');
  }

  /** An order of the buyer's changed (or was read): a pending one keeps
   *  its seats held until it expires, a paid one has sold them. */
  onOrder(order) {
    if (!this.#page.place || order.event !== this.#page.place.event) return;
    if (order.status === 'pending') {
      this.model.extendHolds(order.seats, Date.parse(order.expires_at));
    } else if (order.status === 'paid') {
      const wereHeld = order.seats.filter((id) => this.model.mine.has(id));
      this.model.booked(order.seats);
      // Said once, when the holds turn into tickets (not on every re-read).
      if (wereHeld.length) this.#showMessage(`${formatSeatList(order.seats)} ${order.seats.length === 1 ? 'is' : 'are'} booked for you.`, 'ok');
    } else {
      return;
    }
    this.redraw();
  }

  /** Once a second while admitted: holds that ran out, and the countdowns. */
  tick() {
    this.#dropLapsedHolds();
    this.#view.holdCountdowns(this.model.holds, this.#page.serverNow());
  }

  /** The seat panel, from the page's and the seats' state. */
  render() {
    const page = this.#page;
    const shown = this.#view.seats({
      visible: Boolean(page.place) && ['joining', 'waiting', 'admitted'].includes(page.phase),
      admitted: page.phase === 'admitted',
      seats: this.model,
      currency: page.currency(),
      message: this.#message,
      live: this.#socket.isOpen && !this.#busy,
      holdingNow: this.#busy && this.model.holding.size > 0,
      now: page.serverNow(),
    });
    if (shown && this.model.map && this.#described >= 0) this.#describe(this.#described); // its status may have changed
  }

  // ------------------------------------------------------------- picking

  unselect(id) {
    this.model.unselect([id]);
    this.redraw();
  }

  clearSelection() {
    this.model.clearSelection();
    this.redraw();
  }

  holdSelected() {
    const seats = [...this.model.selected];
    if (seats.length) this.#requestHold({ type: 'hold', seats }, seats);
  }

  holdBest({ count, tier }) {
    this.#requestHold({ type: 'hold_best', count, ...(tier ? { tier } : {}) }, []);
  }

  release(seats) {
    const event = this.#page.place?.event;
    if (!event || !seats.length || this.#busy) return;
    this.#busy = true;
    this.render();
    this.#socket
      .request({ type: 'release', event, seats })
      .then(
        // The reply names the seats that were still ours; the others had
        // lapsed already. Either way none of them is ours any more.
        (frame) => {
          this.#letGo(seats, frame.seats);
          this.#showMessage(`Released ${formatSeatList(seats)}.`, 'ok');
        },
        (err) => this.#showMessage(`Could not release the seats: ${describeError(err)}`, 'error'),
      )
      .finally(() => {
        this.#busy = false;
        this.render();
      });
  }

  releaseAll() {
    this.release([...this.model.mine]);
  }

  /** Brings a hold's seats into view. */
  showOnMap(ids) {
    const i = this.model.map?.index.get(ids[0]);
    if (i !== undefined) this.#canvas.bringIntoView(i);
  }

  dismissMessage() {
    this.#message = null;
    this.#view.seatMessage(null);
  }

  // ------------------------------------------------- pointer and keyboard

  /** Arrow keys walk the seats, Space or Enter picks one. */
  onKey(e) {
    const map = this.model.map;
    if (!map || !map.seats.length || e.altKey || e.ctrlKey || e.metaKey) return;
    if (MOVES.includes(e.key)) {
      const from = this.#cursor >= 0 ? this.#cursor : firstSeat(map);
      this.#moveCursor(this.#cursor >= 0 ? neighbourSeat(map, from, e.key) : from);
    } else if ((e.key === ' ' || e.key === 'Enter') && this.#cursor >= 0) {
      this.#toggle(this.#cursor);
    } else {
      return;
    }
    e.preventDefault();
  }

  onFocus() {
    const map = this.model.map;
    if (!map || !map.seats.length) return;
    if (this.#cursor < 0) this.#cursor = firstSeat(map);
    if (this.#canvas.focusVisible()) this.#moveCursor(this.#cursor);
  }

  onClick(e) {
    const i = this.#canvas.seatAt(e.clientX, e.clientY);
    if (i < 0) return;
    this.#cursor = i;
    this.#toggle(i);
  }

  onPointer(e) {
    const i = e.type === 'pointerleave' ? -1 : this.#canvas.seatAt(e.clientX, e.clientY);
    if (i === this.#hover) return;
    this.#hover = i;
    this.#canvas.setPointing(i >= 0);
    this.#canvas.invalidateOverlay();
    if (i >= 0) this.#describe(i);
  }

  /** The rings on top of the seats: flashing ones, the pointer's, the
   *  keyboard's (the canvas blinks and hides them as it sees fit). */
  decorations() {
    const rings = [];
    for (const id of this.#flash.keys()) {
      const i = this.model.map?.index.get(id);
      if (i !== undefined) rings.push({ i, kind: 'flash' });
    }
    if (this.#hover >= 0) rings.push({ i: this.#hover, kind: 'hover' });
    if (this.#cursor >= 0) rings.push({ i: this.#cursor, kind: 'focus' });
    return rings;
  }

  // ------------------------------------------------------------- private

  /** A click, a tap, Space or Enter on seat `i`: select or unselect it. */
  #toggle(i) {
    if (this.#page.phase === 'admitted' && this.model.toggle(i)) this.redraw();
    this.#describe(i);
  }

  #moveCursor(i) {
    this.#cursor = i;
    this.#canvas.reveal(i);
    this.#canvas.invalidateOverlay();
    this.#describe(i);
  }

  #describe(i) {
    this.#described = i;
    const seat = this.model.map.seats[i];
    this.#view.describeSeat({
      seat,
      tier: this.model.tierOf(seat),
      look: this.model.look(i),
      admitted: this.#page.phase === 'admitted',
      currency: this.#page.currency(),
    });
  }

  /** Sends `hold` or `hold_best` (`seats`: the ones asked for by name). */
  #requestHold(msg, seats) {
    const event = this.#page.place?.event;
    if (!event || this.#busy) return;
    this.#busy = true;
    for (const id of seats) this.model.holding.add(id);
    this.render();
    this.#socket
      .request({ ...msg, event })
      .then(
        (frame) => this.#onHeld(frame, msg.type === 'hold_best'),
        (err) => this.#onHoldRefused(err, seats),
      )
      .finally(() => {
        this.#busy = false;
        for (const id of seats) this.model.holding.delete(id);
        this.render();
      });
  }

  #onHeld(frame, best) {
    if (frame.event !== this.#page.place?.event) return;
    const changed = this.model.held(frame, Date.now());
    this.#canvas.invalidate(this.model.takeDirty());
    if (changed.length) this.#canvas.reveal(changed[0]); // on a narrow screen they may be off to the side
    const until = this.#format.time(Date.parse(frame.expires_at) - this.#page.clockSkewMs);
    const seats = formatSeatList(frame.seats);
    const what = best ? `The best seats we found are yours: ${seats}` : `Held ${seats}`;
    this.#showMessage(`${what}, until ${until}.`, 'ok');
  }

  #onHoldRefused(err, asked) {
    switch (err.code) {
      case 'seat_unavailable': {
        const taken = err.seats ?? [];
        if (!taken.length) {
          this.#showMessage('Not enough free seats left for that. Try fewer seats or another tier.', 'error');
          return;
        }
        this.model.takenFromUs(taken);
        this.#canvas.invalidate(this.model.takeDirty());
        this.#flashSeats(taken);
        const one = taken.length === 1;
        const rest = asked.length > taken.length ? ' The rest of your selection is still selected.' : '';
        this.#showMessage(
          `Sorry, ${formatSeatList(taken)} ${one ? 'was' : 'were'} just taken by someone else. Nothing was held.${rest}`,
          'error',
        );
        return;
      }
      case 'hold_limit':
        this.#showMessage(`You can't hold that many seats: ${err.message}. Release some first, or choose fewer.`, 'error');
        return;
      case 'not_found':
        this.model.unselect(err.seats ?? []);
        this.#canvas.invalidate(this.model.takeDirty());
        this.#showMessage(`These seats are not part of this event: ${formatSeatList(err.seats ?? [])}.`, 'error');
        return;
      case 'not_admitted':
        this.#showMessage('Your shopping window is not open, so seats cannot be held.', 'error');
        return;
      case 'disconnected':
      case 'timeout':
        // The server may have held them and told a socket that is gone.
        this.#showMessage('The connection dropped before the server answered. Please check the map and try again once it says Live.', 'error');
        return;
      default:
        this.#showMessage(describeError(err), 'error');
    }
  }

  /** `seats` are no longer ours; those in `freed` are free now. */
  #letGo(seats, freed) {
    this.model.letGo(seats, freed);
    this.redraw();
  }

  /** Holds whose end passed a while ago without `hold_expired` reaching us. */
  #dropLapsedHolds() {
    const lapsed = this.model.lapsed(this.#page.serverNow());
    if (!lapsed.length) return;
    this.#letGo(lapsed, []);
    this.#showMessage(`Your hold on ${formatSeatList(lapsed)} has ended.`, 'warn');
  }

  /** Seats taken from under the buyer blink for a moment. */
  #flashSeats(ids) {
    const until = Date.now() + FLASH_MS;
    for (const id of ids) this.#flash.set(id, until);
    if (this.#flashTimer) return;
    this.#flashTimer = setInterval(() => {
      const now = Date.now();
      for (const [id, end] of this.#flash) if (end <= now) this.#flash.delete(id);
      this.#canvas.invalidateOverlay();
      if (!this.#flash.size) {
        clearInterval(this.#flashTimer);
        this.#flashTimer = 0;
      }
    }, FLASH_EVERY_MS);
  }

  #showMessage(text, kind = 'info') {
    this.#message = { text, kind };
    this.#view.announce(text);
    this.#view.seatMessage(this.#message);
  }

  /** Seats whose look changed are redrawn, and the panel's words with them. */
  redraw() {
    this.render();
    this.#canvas.invalidate(this.model.takeDirty());
  }
}
