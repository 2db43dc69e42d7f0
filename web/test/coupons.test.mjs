// Coupon campaigns and coupons in words: terms, stock, state, claim
// outcomes, order.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  amountText,
  availabilityText,
  campaignState,
  campaignView,
  claimOutcome,
  couponView,
  discountTerms,
  heldOutcome,
  isConnectionOutcome,
  liveCoupons,
  mergeCampaigns,
  offerContext,
  saysTerms,
  sentence,
  sortCampaigns,
  stockText,
} from '../js/coupons.js';
import { RequestError } from '../js/errors.js';
import { Format } from '../js/format.js';

const format = new Format('en', { timeZone: 'UTC' });
const NOW = Date.parse('2026-12-01T12:00:00Z');
const EVENTS = [
  {
    id: 'demo-live',
    name: 'QueueTicket Live: Demo Night',
    currency: 'KRW',
    tiers: [{ id: 'vip', name: 'VIP', price: 198_000 }, { id: 'r', name: 'R', price: 165_000 }],
  },
  { id: 'us-gig', name: 'Brooklyn Gig', currency: 'USD', tiers: [{ id: 'ga', name: 'General', price: 4500 }] },
];
const KRW = { format, ...offerContext(EVENTS, ['demo-live']) };

/** A campaign as GET /api/v1/events/{event}/campaigns lists it. */
function campaign(fields) {
  return {
    id: 'demo-10000-off',
    name: '10,000 won off (first 300 buyers)',
    kind: 'fixed',
    value: 10_000,
    max_discount: null,
    min_spend: 50_000,
    stock: 300,
    remaining: 300,
    starts_at: '2026-12-01T00:00:00Z',
    ends_at: '2026-12-31T16:32:41.05Z',
    tiers: null,
    active: true,
    ...fields,
  };
}

const PERCENT = { id: 'demo-10-percent', name: '10% off, up to 30,000 won', kind: 'percent', value: 10, max_discount: 30_000, min_spend: 0, stock: 1000, remaining: 1000 };

/** A `coupon` message as the server sends it. */
function coupon(fields) {
  return {
    type: 'coupon',
    coupon: 'cp-32cbf84360142f3ca9b06ad0245dea2f',
    campaign: 'demo-10000-off',
    name: '10,000 won off (first 300 buyers)',
    kind: 'fixed',
    value: 10_000,
    max_discount: null,
    min_spend: 50_000,
    expires_at: '2026-12-31T16:32:41.05Z',
    claimed_at: '2026-12-01T16:33:23.003Z',
    events: ['demo-live'],
    tiers: null,
    req: 2,
    ...fields,
  };
}

describe('what a coupon takes off', () => {
  test('fixed with a minimum spend: the currency word is said once', () => {
    assert.equal(discountTerms(campaign({}), KRW), '10,000 won off, min. spend 50,000');
    assert.equal(discountTerms(campaign({ min_spend: 0 }), KRW), '10,000 won off', 'no minimum, no "min. spend 0"');
  });

  test('percent with a cap, and with a cap and a minimum', () => {
    assert.equal(discountTerms(campaign(PERCENT), KRW), '10% off, up to 30,000 won');
    assert.equal(discountTerms(campaign({ ...PERCENT, min_spend: 100_000 }), KRW), '10% off, up to 30,000 won, min. spend 100,000');
    assert.equal(discountTerms(campaign({ ...PERCENT, max_discount: null }), KRW), '10% off');
    assert.equal(discountTerms(campaign({ ...PERCENT, min_spend: 20_000, max_discount: null }), KRW), '10% off, min. spend 20,000 won');
  });

  test('tiers by name, never by id', () => {
    assert.equal(discountTerms(campaign({ min_spend: 0, tiers: ['vip'] }), KRW), '10,000 won off, VIP seats only');
    assert.equal(discountTerms(campaign({ min_spend: 0, tiers: ['vip', 'r'] }), KRW), '10,000 won off, VIP and R seats only');
    assert.equal(discountTerms(campaign({ min_spend: 0, tiers: ['vip', 'x-secret'] }), KRW), '10,000 won off, some seat tiers only');
  });

  test('currencies with a minor unit carry their symbol; an unknown currency is a number', () => {
    const usd = { format, ...offerContext(EVENTS, ['us-gig']) };
    assert.equal(discountTerms(campaign({ value: 500, min_spend: 5000 }), usd), '$5.00 off, min. spend $50.00');
    const mixed = { format, ...offerContext(EVENTS) };
    assert.equal(mixed.currency, null, 'two currencies: none of them');
    assert.equal(discountTerms(campaign({}), mixed), '10,000 off, min. spend 50,000');
    assert.equal(amountText(1234, 'KRW', format), '1,234 won');
    assert.equal(amountText(1234, 'KRW', format, { unit: false }), '1,234');
  });
});

describe('stock and state', () => {
  test('how many are left, with the plural right', () => {
    assert.equal(stockText(campaign({ remaining: 300 }), format), '300 coupons left');
    assert.equal(stockText(campaign({ remaining: 1000 }), format), '1,000 coupons left');
    assert.equal(stockText(campaign({ remaining: 2 }), format), '2 coupons left');
    assert.equal(stockText(campaign({ remaining: 1 }), format), '1 coupon left');
    assert.equal(stockText(campaign({ remaining: 0 }), format), 'Sold out');
    assert.equal(stockText(campaign({ stock: null, remaining: null }), format), null, 'unlimited');
  });

  test('open, upcoming, paused, sold out, ended', () => {
    assert.equal(campaignState(campaign({}), NOW), 'open');
    assert.equal(campaignState(campaign({ active: false, starts_at: '2026-12-02T09:00:00Z' }), NOW), 'upcoming');
    assert.equal(campaignState(campaign({ active: false }), NOW), 'paused', 'started, not ended, not active');
    assert.equal(campaignState(campaign({ remaining: 0 }), NOW), 'sold_out');
    assert.equal(campaignState(campaign({ ends_at: '2026-12-01T11:59:59Z' }), NOW), 'ended', 'the clock ends it between two reads');
  });

  test('the availability line says how many, until when, with the time zone', () => {
    assert.equal(availabilityText(campaign({}), NOW, format), '300 coupons left · claim by Thu, Dec 31, 2026, 04:32 PM UTC');
    assert.equal(availabilityText(campaign({ stock: null, remaining: null }), NOW, format), 'No limit · claim by Thu, Dec 31, 2026, 04:32 PM UTC');
    assert.equal(availabilityText(campaign({ active: false, starts_at: '2026-12-02T09:00:00Z' }), NOW, format), 'Opens Wed, Dec 2, 2026, 09:00 AM UTC');
    assert.equal(availabilityText(campaign({ active: false }), NOW, format), 'Paused by the organiser');
    assert.equal(availabilityText(campaign({ remaining: 0 }), NOW, format), 'Sold out');
  });

  test('the listed campaign: claimable only while open', () => {
    assert.deepEqual(campaignView(campaign({}), NOW, KRW), {
      id: 'demo-10000-off',
      name: '10,000 won off (first 300 buyers)',
      terms: '10,000 won off, min. spend 50,000',
      availability: '300 coupons left · claim by Thu, Dec 31, 2026, 04:32 PM UTC',
      claimable: true,
    });
    assert.equal(campaignView(campaign({ remaining: 0 }), NOW, KRW).claimable, false);
    assert.equal(campaignView(campaign(PERCENT), NOW, KRW).terms, '', 'a name that says the terms: not said twice');
    assert.equal(campaignView(campaign({ active: false }), NOW, KRW).claimable, false);
  });
});

describe('order', () => {
  test('claimable first, then opening soonest, paused, sold out; ties by end, then name', () => {
    const list = [
      campaign({ id: 'gone', name: 'Gone', remaining: 0 }),
      campaign({ id: 'later', name: 'Later', active: false, starts_at: '2026-12-20T00:00:00Z' }),
      campaign({ id: 'paused', name: 'Paused', active: false }),
      campaign({ id: 'soon', name: 'Soon', active: false, starts_at: '2026-12-02T00:00:00Z' }),
      campaign({ id: 'b', name: 'B open' }),
      campaign({ id: 'a', name: 'A open' }),
      campaign({ id: 'ending', name: 'Z ending first', ends_at: '2026-12-05T00:00:00Z' }),
    ];
    assert.deepEqual(sortCampaigns(list, NOW).map((c) => c.id), ['ending', 'a', 'b', 'soon', 'later', 'paused', 'gone']);
    assert.equal(list[0].id, 'gone', 'the input is left as it was');
  });

  test('a campaign of several events is listed once', () => {
    const shared = campaign({ id: 'shared' });
    const merged = mergeCampaigns([
      { event: 'demo-live', campaigns: [shared, campaign({ id: 'own' })] },
      { event: 'us-gig', campaigns: [shared] },
    ]);
    assert.deepEqual(merged.map((m) => [m.campaign.id, m.events]), [['shared', ['demo-live', 'us-gig']], ['own', ['demo-live']]]);
  });

  test('my coupons: expired ones dropped, soonest to expire first', () => {
    const coupons = [
      coupon({ coupon: 'late', name: 'B', expires_at: '2026-12-31T00:00:00Z' }),
      coupon({ coupon: 'expired', expires_at: '2026-12-01T11:00:00Z' }),
      coupon({ coupon: 'soon', name: 'Z', expires_at: '2026-12-02T00:00:00Z' }),
      coupon({ coupon: 'late-a', name: 'A', expires_at: '2026-12-31T00:00:00Z' }),
    ];
    assert.deepEqual(liveCoupons(coupons, NOW).map((c) => c.coupon), ['soon', 'late-a', 'late']);
  });
});

describe('my coupons', () => {
  test('a coupon: its name, what it takes off, its expiry with the zone, its event by name', () => {
    const ctx = { format, ...offerContext(EVENTS, coupon({}).events) };
    assert.deepEqual(couponView(coupon({}), ctx), {
      name: '10,000 won off (first 300 buyers)',
      terms: '10,000 won off, min. spend 50,000',
      expiry: 'Valid until Thu, Dec 31, 2026, 04:32 PM UTC',
      events: 'For QueueTicket Live: Demo Night',
    });
  });

  test('terms the name already says are left out', () => {
    assert.ok(saysTerms('10% off, up to 30,000 won', '10% off, up to 30,000 won'));
    assert.ok(saysTerms('10% Off — up to 30,000 won!', '10% off, up to 30,000 won'), 'case and punctuation aside');
    assert.ok(!saysTerms('10,000 won off (first 300 buyers)', '10,000 won off, min. spend 50,000'));
    const ctx = { format, ...offerContext(EVENTS, ['demo-live']) };
    assert.equal(couponView(coupon({ ...PERCENT, expires_at: '2026-12-31T16:32:41.05Z' }), ctx).terms, '');
  });

  test('a coupon for any event names none', () => {
    const ctx = { format, ...offerContext(EVENTS, null) };
    assert.equal(couponView(coupon({ events: null }), ctx).events, '');
  });

  test('the expiry follows the zone it is shown in', () => {
    const seoul = new Format('en', { timeZone: 'Asia/Seoul' });
    const ctx = { ...KRW, format: seoul };
    assert.equal(couponView(coupon({}), ctx).expiry, 'Valid until Fri, Jan 1, 2027, 01:32 AM GMT+9');
  });
});

describe('claim outcomes', () => {
  test('a claimed coupon is yours, with its terms', () => {
    assert.deepEqual(claimOutcome(coupon({}), KRW), {
      kind: 'ok',
      text: 'Yours: 10,000 won off, min. spend 50,000. Valid until Thu, Dec 31, 2026, 04:32 PM UTC.',
    });
    assert.deepEqual(heldOutcome(coupon({}), KRW), claimOutcome(coupon({}), KRW), 'the same once listed in my coupons');
  });

  test('each refusal in words, from an error frame or a RequestError', () => {
    const says = (code, message = '') => claimOutcome(new RequestError(code, message), KRW);
    assert.deepEqual(says('already_claimed', 'you already have a coupon from this campaign'), {
      kind: 'warn',
      text: 'Already claimed: it is one per buyer, and you have had yours.',
    });
    assert.match(says('sold_out').text, /^Sold out/);
    assert.equal(says('not_found', 'campaign not found').text, 'This offer is no longer available.');
    assert.match(says('rate_limited').text, /^Too many tries/);
    assert.equal(says('unavailable').kind, 'error');
    assert.match(claimOutcome({ type: 'error', code: 'sold_out', message: 'sold out', req: 3 }, KRW).text, /^Sold out/);
  });

  test('not active: the server says why, as a sentence', () => {
    for (const message of ['this campaign has not started yet', 'this campaign has ended', 'this campaign is paused']) {
      const outcome = claimOutcome({ type: 'error', code: 'not_active', message }, KRW);
      assert.equal(outcome.kind, 'warn');
      assert.equal(outcome.text, sentence(message));
    }
    assert.equal(sentence('this campaign is paused'), 'This campaign is paused.');
    assert.equal(sentence('Already a sentence!'), 'Already a sentence!');
    assert.equal(claimOutcome({ type: 'error', code: 'not_active' }, KRW).text, 'This offer cannot be claimed right now.');
  });

  test('connection problems say nothing was claimed, or that it may have been', () => {
    const lost = claimOutcome(new RequestError('disconnected', 'The connection was lost.'), KRW);
    assert.equal(lost.kind, 'error');
    assert.match(lost.text, /^Not connected to the server, so nothing was claimed/);
    assert.match(claimOutcome(new RequestError('timeout', ''), KRW).text, /may have gone through/);
    assert.ok(isConnectionOutcome(new RequestError('disconnected', '')));
    assert.ok(isConnectionOutcome(new RequestError('timeout', '')));
    assert.ok(!isConnectionOutcome(new RequestError('sold_out', '')));
    assert.ok(!isConnectionOutcome(coupon({})));
  });

  test('an unknown code falls back to the server message', () => {
    assert.deepEqual(claimOutcome({ type: 'error', code: 'internal', message: 'something broke' }, KRW), { kind: 'error', text: 'Something broke.' });
  });
});
