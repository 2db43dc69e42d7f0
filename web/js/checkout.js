// Checkout, payment and the buyer's orders the way a buyer reads them: the
// coupon choices, the `checkout` request, an order's lines and totals,
// where it stands once a `payment` answer is counted in, which buttons
// work, the countdown to its expiry, what went wrong, and the list of
// orders. Works on the server's `order` objects (the `order` message, the
// `orders` answer) and `payment` messages. Pure: no DOM, no clock reads
// (callers pass `now`, in ms on the server's clock), no randomness (callers
// pass it), so `node --test` imports it as is.

import { couponView, liveCoupons, sentence } from './coupons.js';
import { describeError } from './errors.js';
import { formatClock, formatSeatList } from './format.js';

/** The coupon choice that lets the server pick (and say why). */
export const BEST_COUPON = 'best';
/** The coupon choice for none (an absent `coupon` on the wire). */
export const NO_COUPON = '';

/**
 * The demo payment sandbox's outcomes, chosen by the `payment_key`'s
 * prefix. `lost` is left out: it ends the same as `slow` for a buyer, and
 * only later.
 */
export const PAYMENT_OUTCOMES = [
  { prefix: 'ok', label: 'Approved' },
  { prefix: 'decline', label: 'Declined by the card issuer' },
  { prefix: 'flaky', label: 'Flaky: fails twice, then approved' },
  { prefix: 'slow', label: 'Slow: approved after a delay' },
];

/** Order statuses in words, for the list and the panel's heading. */
export const STATUS_WORDS = {
  pending: 'Awaiting payment',
  paying: 'Payment in progress',
  paid: 'Paid',
  failed: 'Declined',
  expired: 'Expired',
  refunded: 'Refunded',
  cancelled: 'Cancelled',
};

/** Statuses an order never leaves (a `paid` one may still be refunded). */
const FINAL = new Set(['failed', 'expired', 'refunded', 'cancelled']);

/** A fresh sandbox payment key: `<prefix>-<random>`, one per attempt (the
 *  sandbox keeps outcomes per key, like the real gateway). */
export function paymentKey(prefix, random) {
  if (!PAYMENT_OUTCOMES.some((o) => o.prefix === prefix)) throw new Error(`unknown payment outcome ${prefix}`);
  return `${prefix}-${random}`;
}

/** The `checkout` message for the coupon choice (BEST_COUPON, a coupon id,
 *  or NO_COUPON, which leaves `coupon` out). */
export function checkoutRequest(event, choice) {
  return choice ? { type: 'checkout', event, coupon: choice } : { type: 'checkout', event };
}

/** The buyer's coupons that may apply to `event`, still good at `now`. */
export function couponsFor(coupons, event, now) {
  return liveCoupons(coupons, now).filter((c) => c.events == null || c.events.includes(event));
}

/**
 * The coupon select's options, `[{value, label}]`: the best coupon (the
 * default), none, then each of `coupons` (see couponsFor) by name and terms.
 * `ctx` is coupons.js' offer context (format, currency, tier names).
 */
export function couponChoices(coupons, ctx) {
  return [
    { value: BEST_COUPON, label: 'Best coupon (we pick the biggest saving)' },
    { value: NO_COUPON, label: 'No coupon' },
    ...coupons.map((coupon) => {
      const { name, terms } = couponView(coupon, { ...ctx, eventNames: [] });
      return { value: coupon.coupon, label: terms ? `${name} · ${terms}` : name };
    }),
  ];
}

/** The choice to keep selected: `wanted` while it is still offered, else
 *  the best coupon. */
export function keptChoice(choices, wanted) {
  return choices.some((c) => c.value === wanted) ? wanted : BEST_COUPON;
}

/**
 * Where `order` stands with its payment counted in: its own status, unless
 * it is still `pending` and a `payment` about it says more (`paid`,
 * `failed`, or `paying` while the outcome is not known), or a `pay` is on
 * its way (`paying`). `none` without an order.
 */
export function orderState(order, payment = null, paying = false) {
  if (!order) return 'none';
  if (order.status !== 'pending') return order.status;
  if (payment?.order === order.order) {
    if (payment.status === 'paid') return 'paid';
    if (payment.status === 'failed') return 'failed';
    return 'paying';
  }
  return paying ? 'paying' : 'pending';
}

/** A server's reason as the end of a sentence: "not paid in time." */
function clause(reason) {
  const text = String(reason ?? '').trim();
  if (!text) return '';
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/**
 * What the order came to, `{kind: ok | info | warn | error, text}`, or
 * null while it simply waits to be paid. The reason is the order's own,
 * else the `payment`'s.
 */
export function outcomeOf(order, payment = null, paying = false) {
  const state = orderState(order, payment, paying);
  const reason = order?.reason ?? (payment?.order === order?.order ? payment?.reason : null);
  switch (state) {
    case 'paying':
      return { kind: 'info', text: 'Waiting for the payment to be confirmed…' };
    case 'paid':
      return { kind: 'ok', text: 'Paid — your seats are booked.' };
    case 'failed':
      return { kind: 'error', text: reason ? `Declined: ${clause(reason)}` : 'Declined.' };
    case 'refunded':
      return { kind: 'warn', text: reason ? `Refunded: ${clause(reason)}` : 'Refunded.' };
    case 'expired':
      return { kind: 'warn', text: `Expired: ${clause(reason) || 'it was not paid in time.'}` };
    case 'cancelled':
      return { kind: 'warn', text: 'Cancelled. Seats you still hold stay yours until their hold ends.' };
    default:
      return null;
  }
}

/** "Pay within 9:41" while `order` can be paid; empty otherwise. */
export function countdownText(order, now, state = orderState(order)) {
  if (state !== 'pending' && state !== 'paying') return '';
  const left = Date.parse(order.expires_at) - now;
  return left > 0 ? `Pay within ${formatClock(left)}` : 'Time is up: this order is expiring.';
}

/**
 * Which of the panel's controls show and work. `holds` is how many seats
 * the buyer holds at the event; `live` that the socket is open; `busy`
 * that a request of the panel's is on its way.
 */
export function panelControls({ order, state, holds, live, busy, now }) {
  const open = state === 'pending' || state === 'paying';
  const payable = state === 'pending' && Date.parse(order.expires_at) > now;
  return {
    // A new order (or another try) once the last one is settled or gone.
    checkout: { shown: holds > 0 && !open, enabled: live && !busy },
    pay: { shown: open, enabled: live && !busy && payable },
    cancel: { shown: open, enabled: live && !busy && state === 'pending' },
    // The server says whether the event's refund policy allows it.
    refund: { shown: state === 'paid' && order?.status === 'paid', enabled: live && !busy },
  };
}

/** The words for `order`: its lines (seat, tier name, price), totals, the
 *  coupon and why it was picked. `couponName(id)` names a coupon; null
 *  when unknown. */
export function orderView(order, { format, tierNames = new Map(), couponName = () => null }) {
  const money = (n) => format.money(n, order.currency);
  const name = order.coupon ? couponName(order.coupon) : null;
  return {
    id: order.order,
    heading: `Order for ${format.plural(order.seats.length, 'seat', 'seats')}`,
    lines: order.lines.map((line) => ({ seat: line.seat, tier: tierNames.get(line.tier) ?? line.tier, price: money(line.price) })),
    subtotal: money(order.subtotal),
    discount: order.discount > 0 ? `−${money(order.discount)}` : money(0),
    total: money(order.total),
    coupon: order.coupon ? `Coupon: ${name ?? 'a coupon of yours'}` : 'No coupon',
    couponReason: order.coupon_reason ?? '',
    payLabel: `Pay ${money(order.total)}`,
  };
}

/**
 * What a failed `checkout`, `pay` or `cancel_order` says, next to its
 * button: the server's message where it explains (a coupon that does not
 * apply, a payment in progress), our words where it does not.
 */
export function requestErrorText(action, err) {
  switch (err.code) {
    case 'not_active':
      return sentence(err.message) || 'That coupon does not apply to this order.';
    case 'bad_request':
      return sentence(err.message) || (action === 'checkout' ? 'You hold no seats to check out. Hold some first.' : 'The server could not do that.');
    case 'conflict':
      return sentence(err.message) || 'A payment for this order is in progress. Wait for its outcome.';
    case 'forbidden':
      return sentence(err.message) || 'That is not allowed for this order.';
    case 'order_expired':
      return 'This order expired before it was paid. Check out again to make a new one.';
    case 'not_admitted':
      return 'Your shopping window is not open, so you cannot check out or pay.';
    case 'not_found':
      return 'This order is no longer available.';
    case 'disconnected':
      return 'Not connected to the server, so nothing was sent. Try again once it says Live.';
    case 'timeout':
      return action === 'pay'
        ? 'The server did not answer in time. The payment may still go through: its outcome shows here as soon as we hear.'
        : 'The server did not answer in time. My orders shows what came of it.';
    default:
      return sentence(describeError(err));
  }
}

/** Newest first: by `created_at`, then by id. */
function newestFirst(a, b) {
  return Date.parse(b.created_at) - Date.parse(a.created_at) || (a.order < b.order ? 1 : a.order > b.order ? -1 : 0);
}

/** `orders` sorted newest first, a copy. */
export function sortOrders(orders) {
  return [...orders].sort(newestFirst);
}

/** `orders` with `order` put in (replacing the one with its id), newest first. */
export function mergeOrder(orders, order) {
  return sortOrders([...orders.filter((o) => o.order !== order.order), order]);
}

/**
 * Which order the checkout panel is about: the one it was about while the
 * list still has it, else the event's newest order that is still open.
 * Returns the order id, or null.
 */
export function currentOrderId(orders, event, currentId) {
  if (currentId && orders.some((o) => o.order === currentId)) return currentId;
  return orders.find((o) => o.event === event && o.status === 'pending')?.order ?? null;
}

/** Whether news of `order` should take the panel over from `current`: a
 *  newer order of the event (another tab's checkout), or the same one. */
export function takesOver(order, current, event) {
  if (order.event !== event) return false;
  if (!current || current.order === order.order) return true;
  return newestFirst(order, current) < 0;
}

/** Whether an order will not change any more by itself (a paid one may
 *  still be refunded). */
export function isFinal(order) {
  return FINAL.has(order.status);
}

/** One order of "My orders": `{id, status, statusText, seats, total, when,
 *  event}`. `eventName(id)` names an event; null when unknown. */
export function orderListItem(order, { format, eventName = () => null }) {
  const when = order.paid_at ? `paid ${format.date(order.paid_at)}` : `ordered ${format.date(order.created_at)}`;
  return {
    id: order.order,
    status: order.status,
    statusText: STATUS_WORDS[order.status] ?? order.status,
    seats: formatSeatList(order.seats),
    total: format.money(order.total, order.currency),
    when: `${when[0].toUpperCase()}${when.slice(1)}`,
    event: eventName(order.event) ?? '',
  };
}
