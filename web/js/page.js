// The buyer's visit: a guest identity, the events on sale, the place in a
// queue and its phases (joining, waiting, admitted, expired), the socket
// and what each frame from it means. It owns that state and hands the seat
// side to its Seats, the coupons to its CouponPanel and the orders to its
// CheckoutPanel; the View draws what it is given.

import { api, forgetGuest, guestIdentity } from './api.js';
import { CheckoutPanel } from './checkout-panel.js';
import { CouponPanel } from './coupon-panel.js';
import { describeError } from './errors.js';
import { leaveQuestion, leftNotice, progressStart } from './queue-view.js';
import { Seats } from './seats.js';
import { BuyerSocket, RECONNECT_CAP_MS } from './socket.js';
import { KEYS, loadJson, saveJson } from './storage.js';

export class Page {
  /** The buyer socket; what to (re)send on each `hello` is decided here. */
  socket;
  /** The seat panel: the map of the place's event and the buyer's seats. */
  seats;
  /** The coupon panel: the offers of the events in view and the buyer's coupons. */
  coupons;
  /** The checkout panel and "My orders": the buyer's orders and payments. */
  checkout;
  /** `{event, name, currency, start, until?}` (see KEYS.place), or null. */
  place = loadJson(KEYS.place);
  /** browse | joining | waiting | admitted | expired */
  phase = 'browse';
  /** Server clock minus ours, from `hello`. */
  clockSkewMs = 0;
  #view;
  /** `{token, user}` once known. */
  #identity = null;
  /** From GET /api/v1/events, and why loading it failed. */
  #events = [];
  #eventsError = null;
  /** The last `queue` frame. */
  #queue = null;
  /** End of the shopping window once admitted (our clock). */
  #expiresAtMs = 0;
  /** The admission pass, for the checkout to come. */
  #pass = null;
  #conn = { status: 'connecting', at: 0, restarting: false };
  /** Connection attempts in a row that never saw `hello`. */
  #failedOpens = 0;
  /** The event whose shopping window just ended. */
  #endedName = null;

  constructor({ view, canvas, format }) {
    this.#view = view;
    this.socket = new BuyerSocket(() => this.#socketUrl(), {
      onStatus: (status, detail = {}) => {
        this.#conn = { status, at: detail.at ?? 0, restarting: detail.restarting ?? false };
        this.#renderConnection();
      },
      onOpen: (hello) => this.#opened(hello),
      onClose: ({ wasOpen }) => {
        // An upgrade refused for a bad token looks like any failed connect
        // to a browser; after two in a row ask REST whether the token is why.
        if (!wasOpen && ++this.#failedOpens >= 2) this.#checkToken();
        if (wasOpen) {
          this.seats.render(); // no holds or releases until we are back
          this.coupons.render();
          this.checkout.render();
        }
      },
      onPush: (frame) => this.applyFrame(frame),
      onFailure: (err) => view.alert(describeError(err), 'connect'),
    });
    this.seats = new Seats({ page: this, socket: this.socket, view, canvas, format });
    this.coupons = new CouponPanel({ page: this, socket: this.socket, view, format, onMine: () => this.checkout.render() });
    this.checkout = new CheckoutPanel({ page: this, socket: this.socket, view, format });
    // A reload re-joins the same place, unless the shopping window it had
    // has ended meanwhile: joining then would silently queue the buyer again.
    if (this.place?.until && this.place.until <= Date.now()) {
      this.#expirePlace();
    } else if (this.place) {
      this.phase = 'joining';
      this.seats.restore();
    }
  }

  /** Draws the page, loads the events and connects; ticks once a second. */
  start() {
    this.render();
    this.#loadEvents();
    this.coupons.start();
    this.socket.start();
    setInterval(() => this.#tick(), 1000);
  }

  /** The events on sale, from GET /api/v1/events (empty until loaded). */
  get events() {
    return this.#events;
  }

  serverNow() {
    return Date.now() + this.clockSkewMs;
  }

  /** The currency of the place's event, for prices. */
  currency() {
    return this.place?.currency ?? this.#events.find((e) => e.id === this.place?.event)?.currency;
  }

  joinQueue(event) {
    this.#view.hideAlert();
    this.#view.notice('');
    this.#setPlace({ event: event.id, name: event.name, currency: event.currency, start: null });
    this.phase = 'joining';
    this.#queue = null;
    this.render();
    this.#view.focusRoom();
    if (this.socket.isOpen) {
      this.#sendJoin();
      this.seats.watch(); // anyone may watch: the map is a preview while waiting
    }
    // else: the next `hello` joins and watches
  }

  async leaveQueue() {
    if (!this.place) return;
    const { model } = this.seats;
    if (!this.#view.confirm(leaveQuestion(this.phase, model.mine.size > 0))) return;
    const { event, name } = this.place;
    try {
      // Leaving does not end holds on the server: let go of them first.
      if (this.socket.isOpen && model.mine.size) {
        await this.socket.request({ type: 'release', event, seats: [...model.mine] }).catch(() => {});
      }
      if (this.socket.isOpen) await this.socket.request({ type: 'leave', event });
      // Offline there is no way to tell the server: the place simply lapses
      // once the grace period for disconnected buyers runs out.
    } catch (err) {
      if (err.code !== 'disconnected' && err.code !== 'timeout') {
        this.#view.alert(describeError(err));
        return;
      }
    }
    this.forgetPlace(`You left the queue for ${name ?? event}.`);
  }

  /** Back to the event list, with a note that says why. */
  forgetPlace(notice = '') {
    this.seats.unwatch();
    this.seats.forget();
    this.#setPlace(null);
    this.phase = 'browse';
    this.#queue = null;
    this.#pass = null;
    this.#view.notice(notice);
    this.render();
    this.#view.focusEvents();
    this.#loadEvents(); // refresh what changed meanwhile (paused badges)
  }

  /** The buyer's holds changed: checking out is about them. */
  onHolds() {
    this.checkout?.render(); // made after the seats, which restore holds first
  }

  /** Applies a reply or push from the server to the page. */
  applyFrame(frame) {
    const ours = this.place && frame.event === this.place.event;
    switch (frame.type) {
      case 'queue':
        if (ours) this.#onQueue(frame);
        break;
      case 'admitted':
        if (ours) this.#onAdmitted(frame);
        break;
      case 'left':
        // The window ended on the server's clock: the same as our countdown
        // reaching zero, whichever comes first.
        if (ours && frame.reason === 'window_ended') {
          this.seats.unwatch();
          this.#expirePlace();
          this.render();
        } else if (ours) this.forgetPlace(leftNotice(frame.reason, this.place.name ?? frame.event));
        break;
      case 'seatmap':
        if (ours) this.seats.onSeatmap(frame);
        break;
      case 'seats':
        if (ours) this.seats.onDiff(frame);
        break;
      case 'hold_expired':
        if (ours) this.seats.onHoldExpired(frame);
        break;
      case 'coupons':
        this.coupons.onCoupons(frame);
        break;
      case 'coupon':
        this.coupons.onCoupon(frame);
        break;
      case 'orders':
        this.checkout.onOrders(frame);
        break;
      case 'order':
        this.checkout.onOrder(frame);
        this.coupons.refreshMine(); // a coupon is used, kept or given back
        break;
      case 'payment':
        this.checkout.onPayment(frame);
        break;
      case 'error':
        this.#view.alert(describeError(frame));
        break;
      default:
        break; // message types added to the protocol later are not ours yet
    }
  }

  render() {
    const view = this.#view;
    view.title(this.phase, this.#queue);
    this.#renderConnection();
    view.identity(this.#identity);
    view.events(this.phase, this.#events, this.#eventsError);
    view.room({
      phase: this.phase,
      name: this.place?.name ?? this.#endedName ?? '',
      queue: this.#queue,
      start: this.place?.start,
      expiresAtMs: this.#expiresAtMs,
      now: this.serverNow(),
    });
    this.seats.render();
    this.coupons.render();
    this.checkout.render();
  }

  #renderConnection() {
    this.#view.connection(this.#conn, Date.now());
  }

  #opened(hello) {
    this.#failedOpens = 0;
    this.#view.hideAlert('connect');
    this.clockSkewMs = Date.parse(hello.server_time) - Date.now() || 0;
    // The server keeps a disconnected buyer's place for a grace period;
    // joining again is how this socket claims it back. A new socket
    // watches nothing: ask for the seat map afresh.
    if (this.place && (this.phase !== 'admitted' || this.#expiresAtMs > this.serverNow())) {
      this.#sendJoin();
      this.seats.watch();
    }
    this.seats.render(); // hold buttons work again
    this.coupons.onOpen(); // the buyer's coupons, afresh
    this.checkout.onOpen(); // and their orders
  }

  async #socketUrl() {
    this.#identity = await guestIdentity();
    this.#view.identity(this.#identity);
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    return `${scheme}://${location.host}/ws?token=${encodeURIComponent(this.#identity.token)}`;
  }

  /** Drops a token the server no longer accepts (expired, or signed by a
   *  server that has since been reset) so that the next connect mints one. */
  async #checkToken() {
    if (!this.#identity) return;
    try {
      // Any authenticated route will do: the token is checked before the event.
      await api(`/api/v1/events/${encodeURIComponent(this.place?.event ?? '-')}/queue`, {
        token: this.#identity.token,
      });
    } catch (err) {
      if (err.code === 'unauthorized') {
        forgetGuest();
        this.#identity = null;
      }
    }
  }

  #sendJoin() {
    const event = this.place.event;
    this.socket.request({ type: 'join', event }).then(
      (frame) => this.applyFrame(frame),
      (err) => {
        if (this.place?.event !== event) return;
        // A lost connection re-joins by itself on the next `hello`.
        if (err.code === 'disconnected' || err.code === 'timeout') return;
        if (err.code === 'rate_limited') {
          this.#view.alert('The server is busy. Retrying in a moment…', 'join');
          setTimeout(
            () => this.place?.event === event && this.socket.isOpen && this.#sendJoin(),
            2000 + Math.random() * 2000,
          );
          return;
        }
        this.forgetPlace();
        this.#view.alert(describeError(err));
      },
    );
  }

  #onQueue(frame) {
    // A position computed just before the admission can arrive just after
    // it; once admitted, a buyer never goes back to waiting for this place.
    if (this.phase === 'admitted') return;
    this.#view.hideAlert('join');
    const start = progressStart(this.place.start, frame.position);
    if (start !== this.place.start) this.#setPlace({ ...this.place, start });
    this.phase = 'waiting';
    this.#queue = frame;
    this.render();
  }

  #onAdmitted(frame) {
    this.#view.hideAlert('join');
    this.phase = 'admitted';
    this.#pass = frame.pass;
    this.#expiresAtMs = Date.parse(frame.expires_at);
    this.#setPlace({ ...this.place, until: this.#expiresAtMs });
    this.render();
    this.#view.focusRoom(); // the biggest news of the visit: make sure it is heard
  }

  /** The shopping window ended: the place is spent, its name still shown.
   *  The server releases the holds of an ended window itself. */
  #expirePlace() {
    this.#endedName = this.place.name;
    saveJson(KEYS.place, null);
    this.place = null;
    this.phase = 'expired';
    this.seats.forget();
  }

  #setPlace(place) {
    this.place = place;
    saveJson(KEYS.place, place);
  }

  /** The event list needs no token; it retries until it loads. */
  async #loadEvents(attempt = 0) {
    try {
      this.#events = await api('/api/v1/events');
      this.#eventsError = this.#events.length ? null : 'Nothing is on sale right now.';
    } catch (err) {
      this.#eventsError = `Could not load events (${describeError(err)}). Retrying…`;
      setTimeout(() => this.#loadEvents(attempt + 1), Math.min(RECONNECT_CAP_MS, 1000 * 2 ** attempt));
    }
    this.render();
  }

  /** Once a second: the countdowns, the reconnect timer, and the end of the
   *  window. */
  #tick() {
    if (this.phase === 'admitted' && this.#expiresAtMs <= this.serverNow()) {
      this.seats.unwatch();
      this.#expirePlace();
      this.render();
    }
    if (this.phase === 'admitted') {
      this.#view.countdown(this.#expiresAtMs, this.serverNow());
      this.seats.tick();
      this.checkout.tick();
    }
    if (this.#conn.status === 'retrying') this.#renderConnection();
  }
}
