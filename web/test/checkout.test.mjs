// Checkout, payment and orders in words: the request, coupon choices, where
// an order stands with its payment, outcomes, the countdown, which buttons
// work, errors, and the order list.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  BEST_COUPON,
  NO_COUPON,
  PAYMENT_OUTCOMES,
  checkoutRequest,
  countdownText,
  couponChoices,
  couponsFor,
  currentOrderId,
  isFinal,
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
  takesOver,
} from '../js/checkout.js';
import { offerContext } from '../js/coupons.js';
import { RequestError } from '../js/errors.js';
import { Format } from '../js/format.js';

const format = new Format('en-US', { timeZone: 'UTC' });
const NOW = Date.parse('2026-12-01T12:00:00Z');
const iso = (ms) => new Date(ms).toISOString();
const EVENTS = [
  {
    id: 'demo-live',
    name: 'QueueTicket Live: Demo Night',
    currency: 'KRW',
    tiers: [{ id: 'vip', name: 'VIP', price: 198_000 }, { id: 'a', name: 'A', price: 99_000 }],
  },
];
const CTX = { format, ...offerContext(EVENTS, ['demo-live']) };

/** A pending order of two VIP seats with 30,000 off, made at NOW. */
function order(fields = {}) {
  return {
    order: 'ord-1',
    event: 'demo-live',
    seats: ['C-1-11', 'C-1-12'],
    lines: [
      { seat: 'C-1-11', tier: 'vip', price: 198_000 },
      { seat: 'C-1-12', tier: 'vip', price: 198_000 },
    ],
    subtotal: 396_000,
    discount: 30_000,
    total: 366_000,
    currency: 'KRW',
    coupon: 'cp-1',
    coupon_reason: '“10% off, up to 30,000 won” saves 30,000, the largest discount among your 2 coupons that apply to this order.',
    status: 'pending',
    expires_at: iso(NOW + 600_000),
    created_at: iso(NOW),
    ...fields,
  };
}

function coupon(fields = {}) {
  return {
    coupon: 'cp-1',
    campaign: 'demo-10-percent',
    name: '10% off, up to 30,000 won',
    kind: 'percent',
    value: 10,
    max_discount: 30_000,
    min_spend: 0,
    expires_at: iso(NOW + 86_400_000),
    claimed_at: iso(NOW - 60_000),
    events: ['demo-live'],
    tiers: null,
    ...fields,
  };
}

describe('the checkout request and the coupon choice', () => {
  test('best and a coupon id are sent as `coupon`; no coupon leaves it out', () => {
    assert.deepEqual(checkoutRequest('demo-live', BEST_COUPON), { type: 'checkout', event: 'demo-live', coupon: 'best' });
    assert.deepEqual(checkoutRequest('demo-live', 'cp-7'), { type: 'checkout', event: 'demo-live', coupon: 'cp-7' });
    assert.deepEqual(checkoutRequest('demo-live', NO_COUPON), { type: 'checkout', event: 'demo-live' });
  });

  test('the choices: best first, then none, then each coupon by name and terms', () => {
    const fixed = coupon({
      coupon: 'cp-2',
      name: '10,000 won off (first 300 buyers)',
      kind: 'fixed',
      value: 10_000,
      max_discount: null,
      min_spend: 50_000,
    });
    const choices = couponChoices([coupon(), fixed], CTX);
    assert.deepEqual(choices.map((c) => c.value), ['best', '', 'cp-1', 'cp-2']);
    assert.match(choices[0].label, /^Best coupon/);
    assert.equal(choices[1].label, 'No coupon');
    assert.equal(choices[2].label, '10% off, up to 30,000 won', 'a name that says the terms is not followed by them');
    assert.equal(choices[3].label, '10,000 won off (first 300 buyers) · 10,000 won off, min. spend 50,000');
  });

  test("only the coupons for the event that are still good, soonest to expire first; a vanished choice falls back to best", () => {
    const later = coupon({ coupon: 'cp-late', expires_at: iso(NOW + 2 * 86_400_000) });
    const other = coupon({ coupon: 'cp-other', events: ['another-event'] });
    const anyEvent = coupon({ coupon: 'cp-any', events: null });
    const gone = coupon({ coupon: 'cp-gone', expires_at: iso(NOW - 1) });
    const usable = couponsFor([later, other, anyEvent, gone, coupon()], 'demo-live', NOW);
    assert.deepEqual(usable.map((c) => c.coupon).sort(), ['cp-1', 'cp-any', 'cp-late']);
    assert.equal(usable.at(-1).coupon, 'cp-late');
    const choices = couponChoices(usable, CTX);
    assert.equal(keptChoice(choices, 'cp-late'), 'cp-late');
    assert.equal(keptChoice(choices, NO_COUPON), NO_COUPON);
    assert.equal(keptChoice(choices, 'cp-gone'), BEST_COUPON);
  });

  test('a payment key is the outcome prefix and a random part; the demo offers ok, decline, flaky and slow', () => {
    assert.deepEqual(PAYMENT_OUTCOMES.map((o) => o.prefix), ['ok', 'decline', 'flaky', 'slow']);
    assert.equal(paymentKey('slow', 'a1b2c3'), 'slow-a1b2c3');
    assert.throws(() => paymentKey('forged', 'x'), /unknown payment outcome/);
  });
});

describe('where an order stands', () => {
  test("the order's status rules, unless it is pending and a payment about it says more", () => {
    assert.equal(orderState(null), 'none');
    assert.equal(orderState(order()), 'pending');
    assert.equal(orderState(order(), null, true), 'paying', 'a pay on its way');
    assert.equal(orderState(order(), { order: 'ord-1', status: 'pending' }), 'paying');
    assert.equal(orderState(order(), { order: 'ord-1', status: 'paid' }), 'paid', 'the answer can beat the order push');
    assert.equal(orderState(order(), { order: 'ord-1', status: 'failed', reason: 'x' }), 'failed');
    assert.equal(orderState(order(), { order: 'ord-0', status: 'paid' }), 'pending', "another order's payment");
    assert.equal(orderState(order({ status: 'paid' }), { order: 'ord-1', status: 'pending' }), 'paid', 'the push is newer news');
    assert.equal(orderState(order({ status: 'expired' })), 'expired');
  });

  test('the outcome in words, with the reason given', () => {
    assert.equal(outcomeOf(order()), null, 'nothing to say while it waits to be paid');
    assert.deepEqual(outcomeOf(order(), { order: 'ord-1', status: 'pending' }), { kind: 'info', text: 'Waiting for the payment to be confirmed…' });
    assert.deepEqual(outcomeOf(order({ status: 'paid' })), { kind: 'ok', text: 'Paid — your seats are booked.' });
    const declined = outcomeOf(order({ status: 'failed', reason: 'the card company rejected the payment' }));
    assert.deepEqual(declined, { kind: 'error', text: 'Declined: the card company rejected the payment.' });
    assert.equal(
      outcomeOf(order(), { order: 'ord-1', status: 'failed', reason: 'card rejected (REJECT_CARD_PAYMENT)' }).text,
      'Declined: card rejected (REJECT_CARD_PAYMENT).',
      "the payment's reason while the order push is on its way",
    );
    assert.equal(outcomeOf(order({ status: 'refunded', reason: 'cancelled by the buyer.' })).text, 'Refunded: cancelled by the buyer.');
    assert.equal(outcomeOf(order({ status: 'expired', reason: 'not paid in time' })).text, 'Expired: not paid in time.');
    assert.equal(outcomeOf(order({ status: 'expired' })).text, 'Expired: it was not paid in time.');
    assert.match(outcomeOf(order({ status: 'cancelled' })).text, /^Cancelled\./);
    assert.ok(!isFinal(order()) && !isFinal(order({ status: 'paid' })) && isFinal(order({ status: 'cancelled' })));
  });

  test('the countdown runs while the order can be paid', () => {
    assert.equal(countdownText(order(), NOW), 'Pay within 10:00');
    assert.equal(countdownText(order(), NOW + 599_000 - 19_000), 'Pay within 0:20');
    assert.equal(countdownText(order(), NOW + 600_000), 'Time is up: this order is expiring.');
    assert.equal(countdownText(order(), NOW, 'paying'), 'Pay within 10:00');
    assert.equal(countdownText(order({ status: 'paid' }), NOW), '');
  });
});

describe('which buttons work', () => {
  const controls = (o, state, more = {}) => panelControls({ order: o, state, holds: 2, live: true, busy: false, now: NOW, ...more });

  test('a pending order: pay or cancel, no second checkout', () => {
    const c = controls(order(), 'pending');
    assert.deepEqual(c, {
      checkout: { shown: false, enabled: true },
      pay: { shown: true, enabled: true },
      cancel: { shown: true, enabled: true },
      refund: { shown: false, enabled: true },
    });
    assert.equal(controls(order(), 'pending', { live: false }).pay.enabled, false, 'not while disconnected');
    assert.equal(controls(order(), 'pending', { busy: true }).cancel.enabled, false, 'not while a request is on its way');
    assert.equal(controls(order(), 'pending', { now: NOW + 600_000 }).pay.enabled, false, 'not once it expired');
  });

  test('while the payment is in flight nothing can be pressed', () => {
    const c = controls(order(), 'paying');
    assert.equal(c.pay.shown && !c.pay.enabled, true);
    assert.equal(c.cancel.shown && !c.cancel.enabled, true);
    assert.equal(c.checkout.shown, false);
  });

  test('after a decline or a cancel the held seats may be checked out again; a paid order may be refunded', () => {
    assert.equal(controls(order({ status: 'failed' }), 'failed').checkout.shown, true);
    assert.equal(controls(order({ status: 'cancelled' }), 'cancelled').pay.shown, false);
    assert.equal(controls(order({ status: 'cancelled' }), 'cancelled', { holds: 0 }).checkout.shown, false, 'nothing held');
    const paid = controls(order({ status: 'paid' }), 'paid', { holds: 0 });
    assert.deepEqual([paid.refund.shown, paid.pay.shown, paid.cancel.shown], [true, false, false]);
    assert.equal(controls(order(), 'paid').refund.shown, false, 'not before the order itself says paid');
  });
});

describe('an order in words', () => {
  test('lines with tier names and prices, totals, the coupon and why', () => {
    const view = orderView(order(), { format, tierNames: CTX.tierNames, couponName: (id) => (id === 'cp-1' ? '10% off, up to 30,000 won' : null) });
    assert.deepEqual(view, {
      id: 'ord-1',
      heading: 'Order for 2 seats',
      lines: [
        { seat: 'C-1-11', tier: 'VIP', price: '₩198,000' },
        { seat: 'C-1-12', tier: 'VIP', price: '₩198,000' },
      ],
      subtotal: '₩396,000',
      discount: '−₩30,000',
      total: '₩366,000',
      coupon: 'Coupon: 10% off, up to 30,000 won',
      couponReason: '“10% off, up to 30,000 won” saves 30,000, the largest discount among your 2 coupons that apply to this order.',
      payLabel: 'Pay ₩366,000',
    });
  });

  test('no coupon, an unknown tier, and a currency with cents', () => {
    const usd = order({
      seats: ['GA-1'],
      lines: [{ seat: 'GA-1', tier: 'ga', price: 4500 }],
      subtotal: 4500,
      discount: 0,
      total: 4500,
      currency: 'USD',
      coupon: null,
      coupon_reason: undefined,
    });
    const view = orderView(usd, { format });
    assert.equal(view.heading, 'Order for 1 seat');
    assert.deepEqual(view.lines, [{ seat: 'GA-1', tier: 'ga', price: '$45.00' }]);
    assert.equal(view.discount, '$0.00');
    assert.equal(view.coupon, 'No coupon');
    assert.equal(view.couponReason, '');
    assert.equal(orderView(order(), { format }).coupon, 'Coupon: a coupon of yours', 'a coupon no longer in the list');
  });
});

describe('what a refusal says', () => {
  const err = (code, message = '') => new RequestError(code, message);

  test("the server's reason where it explains", () => {
    assert.equal(requestErrorText('checkout', err('not_active', 'this coupon needs a VIP seat')), 'This coupon needs a VIP seat.');
    assert.equal(requestErrorText('checkout', err('not_active')), 'That coupon does not apply to this order.');
    assert.equal(requestErrorText('checkout', err('bad_request', 'no held seats to check out: hold some first')), 'No held seats to check out: hold some first.');
    assert.equal(requestErrorText('checkout', err('bad_request')), 'You hold no seats to check out. Hold some first.');
    assert.equal(requestErrorText('pay', err('conflict', 'another payment for this order is in progress')), 'Another payment for this order is in progress.');
    assert.equal(requestErrorText('cancel', err('forbidden', "this event's refund policy does not allow a refund now")), "This event's refund policy does not allow a refund now.");
  });

  test('our words where it does not', () => {
    assert.match(requestErrorText('pay', err('order_expired', 'order expired')), /^This order expired before it was paid\./);
    assert.match(requestErrorText('checkout', err('not_admitted', 'x')), /^Your shopping window is not open/);
    assert.match(requestErrorText('pay', err('disconnected')), /^Not connected to the server, so nothing was sent\./);
    assert.match(requestErrorText('pay', err('timeout')), /The payment may still go through/);
    assert.match(requestErrorText('checkout', err('timeout')), /My orders shows/);
    assert.equal(requestErrorText('pay', err('internal', 'something broke')), 'Something broke.');
  });
});

describe('the order list', () => {
  const a = order({ order: 'ord-a', created_at: iso(NOW - 60_000), status: 'cancelled' });
  const b = order({ order: 'ord-b', created_at: iso(NOW) });
  const c = order({ order: 'ord-c', created_at: iso(NOW + 1_000), event: 'another-event' });

  test('newest first; a changed order replaces its old self', () => {
    assert.deepEqual(sortOrders([a, c, b]).map((o) => o.order), ['ord-c', 'ord-b', 'ord-a']);
    const merged = mergeOrder([b, a], { ...b, status: 'paid' });
    assert.deepEqual(merged.map((o) => [o.order, o.status]), [['ord-b', 'paid'], ['ord-a', 'cancelled']]);
    assert.deepEqual(mergeOrder([b, a], c).map((o) => o.order), ['ord-c', 'ord-b', 'ord-a']);
  });

  test("the panel's order: the one it had, else the event's newest open one", () => {
    const list = sortOrders([a, b, c]);
    assert.equal(currentOrderId(list, 'demo-live', null), 'ord-b');
    assert.equal(currentOrderId(list, 'demo-live', 'ord-a'), 'ord-a');
    assert.equal(currentOrderId(list, 'demo-live', 'ord-gone'), 'ord-b');
    assert.equal(currentOrderId([a], 'demo-live', null), null, 'a settled order is history, not the checkout');
    assert.equal(currentOrderId(list, undefined, null), null, 'no place, no checkout');
  });

  test('news of a newer order of the event takes the panel over; an older one or another event does not', () => {
    assert.equal(takesOver(b, null, 'demo-live'), true);
    assert.equal(takesOver(b, a, 'demo-live'), true, "another tab's new checkout");
    assert.equal(takesOver(a, b, 'demo-live'), false, 'an older order changing (say, refunded)');
    assert.equal(takesOver({ ...b, status: 'paid' }, b, 'demo-live'), true, 'the same order');
    assert.equal(takesOver(c, b, 'demo-live'), false);
  });

  test('an item says its state, seats, total and when', () => {
    const eventName = (id) => EVENTS.find((e) => e.id === id)?.name ?? null;
    assert.deepEqual(orderListItem(b, { format, eventName }), {
      id: 'ord-b',
      status: 'pending',
      statusText: 'Awaiting payment',
      seats: 'C-1-11 and C-1-12',
      total: '₩366,000',
      when: 'Ordered Tue, Dec 1, 2026, 12:00 PM',
      event: 'QueueTicket Live: Demo Night',
    });
    const paid = orderListItem({ ...b, status: 'paid', paid_at: iso(NOW + 90_000) }, { format });
    assert.deepEqual([paid.statusText, paid.when, paid.event], ['Paid', 'Paid Tue, Dec 1, 2026, 12:01 PM', '']);
    assert.equal(orderListItem({ ...b, status: 'failed' }, { format }).statusText, 'Declined');
  });
});
