// The checkout panel's and "My orders"' behaviour: checking out the seats
// the buyer holds with a coupon choice, paying through the demo sandbox,
// cancelling (or refunding) an order, and the buyer's orders (asked for on
// every `hello`, then kept up to date by the `order` and `payment` pushes
// that reach every socket of the buyer, from this tab or another). The
// words come from checkout.js; the View draws them.

import {
  BEST_COUPON,
  checkoutRequest,
  countdownText,
  couponChoices,
  couponsFor,
  currentOrderId,
  keptChoice,
  mergeOrder,
  orderListItem,
  orderState,
  orderView,
  outcomeOf,
  panelControls,
  paymentKey,
  requestErrorText,
  sortOrders,
  STATUS_WORDS,
  takesOver,
} from './checkout.js';
import { offerContext } from './coupons.js';
import { describeError } from './errors.js';

/** A failed read of the orders is tried again after this long. */
const ORDERS_RETRY_MS = 5_000;

/** A random part for a payment key: 12 bytes as hex. crypto.getRandomValues
 *  works on plain http too, where randomUUID does not. */
function randomPart() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Strips what makes a frame a message: the rest is the order object. */
function orderOf(frame) {
  const { type, req, ...order } = frame;
  return order;
}

export class CheckoutPanel {
  /** The page: its `place`, `phase`, `events`, `serverNow()`, its `seats`
   *  (the holds) and `coupons` (the buyer's coupons). */
  #page;
  #socket;
  #view;
  #format;
  /** The buyer's orders, newest first; null before the first answer. */
  #orders = null;
  #ordersError = null;
  #asks = 0;
  /** The id of the order the panel is about, or null. */
  #currentId = null;
  /** order id -> the last `payment` heard of it. */
  #payments = new Map();
  /** `checkout`, `pay` or `cancel` while one is on its way, else null. */
  #busy = null;
  /** `{text, kind}` under the panel's buttons, or null. */
  #message = null;
  /** The coupon choice the buyer made. */
  #choice = BEST_COUPON;
  /** coupon id -> name, of every coupon seen: a coupon an order uses
   *  leaves the buyer's list of unused ones. */
  #couponNames = new Map();

  constructor({ page, socket, view, format }) {
    this.#page = page;
    this.#socket = socket;
    this.#view = view;
    this.#format = format;
  }

  /** A new socket (after each `hello`): orders may have changed meanwhile,
   *  and a connection failure beside a button is old news. */
  onOpen() {
    if (this.#message?.connection) this.#message = null;
    this.refresh();
    this.render();
  }

  /** Asks the socket for the buyer's orders. */
  refresh() {
    if (!this.#socket.isOpen) return;
    const ask = ++this.#asks;
    this.#socket.request({ type: 'orders' }).then(
      (frame) => {
        if (ask === this.#asks) this.onOrders(frame);
      },
      (err) => {
        if (ask !== this.#asks || err.code === 'disconnected') return; // the next `hello` asks again
        this.#ordersError = err;
        this.render();
        setTimeout(() => ask === this.#asks && this.refresh(), ORDERS_RETRY_MS);
      },
    );
  }

  /** An `orders` answer: the whole list (or one event's part of it). */
  onOrders(frame) {
    const fresh = frame.orders ?? [];
    const kept = frame.event ? (this.#orders ?? []).filter((o) => o.event !== frame.event) : [];
    this.#orders = sortOrders([...kept, ...fresh]);
    this.#ordersError = null;
    const event = this.#page.place?.event;
    this.#currentId = currentOrderId(this.#orders, event, this.#currentId);
    for (const order of fresh) this.#page.seats.onOrder(order);
    this.render();
  }

  /** An `order`, answering us or pushed (any tab of this buyer). */
  onOrder(frame) {
    const order = orderOf(frame);
    const current = this.#current();
    this.#orders = mergeOrder(this.#orders ?? [], order);
    if (takesOver(order, current, this.#page.place?.event)) {
      if (order.order !== this.#currentId) this.#message = null; // about another order
      this.#currentId = order.order;
    }
    this.#page.seats.onOrder(order);
    this.render();
  }

  /** A `payment`, answering us or pushed. */
  onPayment(frame) {
    const payment = orderOf(frame);
    this.#payments.set(payment.order, payment);
    this.render();
  }

  /** Checks out every seat held at the place's event with the coupon choice. */
  async checkout(choice) {
    const event = this.#page.place?.event;
    if (!event || this.#busy) return;
    this.#choice = choice;
    await this.#send('checkout', checkoutRequest(event, choice), (frame) => this.onOrder(frame));
  }

  /** Pays the panel's order with a fresh sandbox key for `outcome`. */
  async pay(outcome) {
    const order = this.#current();
    if (!order || this.#busy) return;
    const msg = { type: 'pay', order: order.order, payment_key: paymentKey(outcome, randomPart()) };
    this.#payments.delete(order.order); // a new attempt: what the last one said is old
    await this.#send('pay', msg, (frame) => this.onPayment(frame));
  }

  /** Cancels the panel's unpaid order, or has its paid one refunded. */
  async cancel() {
    const order = this.#current();
    if (!order || this.#busy) return;
    await this.#send('cancel', { type: 'cancel_order', order: order.order }, (frame) => this.onOrder(frame));
  }

  /** Once a second while admitted: the countdown to the order's expiry. */
  tick() {
    const order = this.#current();
    if (!order) return;
    const state = orderState(order, this.#payments.get(order.order), this.#busy === 'pay');
    this.#view.orderCountdown(countdownText(order, this.#page.serverNow(), state));
    // The last second passed: Pay stops working before the server says so.
    if (state === 'pending' && Date.parse(order.expires_at) <= this.#page.serverNow()) this.render();
  }

  render() {
    const page = this.#page;
    const event = page.place?.event;
    const now = page.serverNow();
    const live = this.#socket.isOpen;
    const order = this.#current();
    const payment = order ? this.#payments.get(order.order) : null;
    const state = orderState(order, payment, this.#busy === 'pay');
    const holds = page.seats.model.mine.size;
    const ctx = this.#context(event);
    const mine = event ? couponsFor(page.coupons.mine, event, now) : [];
    for (const c of mine) this.#couponNames.set(c.coupon, c.name);
    const choices = couponChoices(mine, ctx);
    this.#choice = keptChoice(choices, this.#choice);
    const controls = order
      ? panelControls({ order, state, holds, live, busy: Boolean(this.#busy), now })
      : { checkout: { shown: holds > 0, enabled: live && !this.#busy } };
    this.#view.checkout({
      visible: page.phase === 'admitted' && (holds > 0 || Boolean(order)),
      choices,
      choice: this.#choice,
      checkingOut: this.#busy === 'checkout',
      controls,
      order: order
        ? {
            ...orderView(order, { format: this.#format, tierNames: ctx.tierNames, couponName: (id) => this.#couponNames.get(id) ?? null }),
            state,
            stateText: STATUS_WORDS[state] ?? state,
            countdown: countdownText(order, now, state),
            outcome: outcomeOf(order, payment, this.#busy === 'pay'),
            paying: this.#busy === 'pay',
            cancelling: this.#busy === 'cancel',
          }
        : null,
      message: this.#message,
    });
    const orders = this.#orders ?? [];
    this.#view.orders({
      items: orders.map((o) => orderListItem(o, { format: this.#format, eventName: (id) => page.events.find((e) => e.id === id)?.name ?? null })),
      status: this.#ordersStatus(orders.length, live),
      stale: !live,
    });
  }

  /** The order the panel is about, as last heard. */
  #current() {
    return this.#orders?.find((o) => o.order === this.#currentId) ?? null;
  }

  /** Sends one of the panel's requests; `onReply` takes the answer, an
   *  error shows under the buttons. */
  async #send(action, msg, onReply) {
    this.#busy = action;
    this.#message = null;
    this.render();
    try {
      onReply(await this.#socket.request(msg));
    } catch (err) {
      const connection = err.code === 'disconnected' || err.code === 'timeout';
      this.#message = { text: requestErrorText(action, err), kind: connection ? 'error' : 'warn', connection };
      // What the order is now, after a refusal or a dropped answer.
      if (err.code === 'order_expired' || err.code === 'conflict' || err.code === 'timeout') this.refresh();
    } finally {
      this.#busy = null;
    }
    this.render();
  }

  #context(event) {
    const events = [...this.#page.events];
    const { place } = this.#page;
    if (place && !events.some((e) => e.id === place.event)) events.push({ id: place.event, name: place.name, currency: place.currency, tiers: [] });
    return { format: this.#format, ...offerContext(events, event ? [event] : null) };
  }

  #ordersStatus(count, live) {
    if (this.#ordersError) return `Could not load your orders (${describeError(this.#ordersError)}). Retrying…`;
    if (this.#orders === null) return live ? 'Loading your orders…' : 'Your orders show here once we are connected.';
    return count ? '' : 'No orders yet. Orders you check out show here, newest first.';
  }
}
