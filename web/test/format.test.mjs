// The formatting helpers: durations, ETA bands, countdowns, money, lists.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Format, durationParts, formatClock, formatList, formatSeatList } from '../js/format.js';

const fmt = new Format('en', { timeZone: 'UTC' });
const NBSP = '\u00a0';

describe('durations', () => {
  test('seconds, minutes, then hours with one decimal below ten', () => {
    assert.deepEqual(durationParts(0.2), [1, 's'], 'never "0 s"');
    assert.deepEqual(durationParts(59), [59, 's']);
    assert.deepEqual(durationParts(60), [1, 'min']);
    assert.deepEqual(durationParts(150), [3, 'min']);
    assert.deepEqual(durationParts(3600), [1, 'h']);
    assert.deepEqual(durationParts(5400), [1.5, 'h']);
    assert.deepEqual(durationParts(12 * 3600 + 1200), [12, 'h']);
  });

  test('a number and its unit stay together', () => {
    assert.equal(fmt.duration(240), `4${NBSP}min`);
    assert.equal(fmt.duration(5400), `1.5${NBSP}h`);
  });
});

describe('ETA bands', () => {
  test('the unit is said once when both ends share it', () => {
    assert.equal(fmt.eta({ eta_s: 120, eta_low_s: 120, eta_high_s: 240 }), `about 2${NBSP}min, between 2 and 4${NBSP}min`);
  });

  test('ends in different units each carry theirs', () => {
    assert.equal(fmt.eta({ eta_s: 50, eta_low_s: 30, eta_high_s: 90 }), `about 50${NBSP}s, between 30${NBSP}s and 2${NBSP}min`);
  });

  test('a band that is one value is only the estimate', () => {
    assert.equal(fmt.eta({ eta_s: 30, eta_low_s: 29.6, eta_high_s: 30.4 }), `about 30${NBSP}s`);
    assert.equal(fmt.eta({ eta_s: 30, eta_low_s: 30, eta_high_s: 32 }), `about 30${NBSP}s, between 30 and 32${NBSP}s`);
  });

  test('beyond a day is said in words', () => {
    assert.equal(fmt.eta({ eta_s: 90_000, eta_low_s: 80_000, eta_high_s: 100_000 }), 'more than a day');
    assert.equal(
      fmt.eta({ eta_s: 7200, eta_low_s: 1800, eta_high_s: 200_000 }),
      `about 2${NBSP}h, between 30${NBSP}min and more than a day`,
    );
  });
});

describe('countdown clock', () => {
  test('minutes and seconds, rounded', () => {
    assert.equal(formatClock(600_004), '10:00', 'a few ms over ten minutes is 10:00, not 10:01');
    assert.equal(formatClock(599_400), '9:59');
    assert.equal(formatClock(9_000), '0:09');
  });

  test('hours when there are any; never below zero', () => {
    assert.equal(formatClock(3_723_000), '1:02:03');
    assert.equal(formatClock(-5_000), '0:00');
  });
});

describe('money', () => {
  test('amounts are in the minor unit of their currency', () => {
    assert.equal(fmt.money(198_000, 'KRW'), '₩198,000', 'KRW has no minor unit');
    assert.equal(fmt.money(1234, 'USD'), '$12.34');
    assert.equal(fmt.money(1234, 'USD'), '$12.34', 'the cached formatter gives the same');
  });

  test('no currency, or an invalid code, still shows the number', () => {
    assert.equal(fmt.money(1234), '1,234');
    assert.equal(fmt.money(12_345, 'EURO'), '12,345 EURO');
  });
});

describe('words and lists', () => {
  test('plural agrees with the count', () => {
    assert.equal(fmt.plural(1, 'seat', 'seats'), '1 seat');
    assert.equal(fmt.plural(2400, 'seat', 'seats'), '2,400 seats');
    assert.equal(fmt.plural(0, 'seat', 'seats'), '0 seats');
  });

  test('seat lists join with commas and a final "and"', () => {
    assert.equal(formatSeatList([]), '');
    assert.equal(formatSeatList(['C-1-3']), 'C-1-3');
    assert.equal(formatSeatList(['C-1-3', 'C-1-4']), 'C-1-3 and C-1-4');
    assert.equal(formatSeatList(['C-1-3', 'C-1-4', 'C-1-5']), 'C-1-3, C-1-4 and C-1-5');
    assert.equal(formatList(['VIP', 'R', 'S']), 'VIP, R and S');
  });

  test('dates and times in the locale and zone given', () => {
    assert.equal(fmt.date('2025-03-07T19:30:00Z'), 'Fri, Mar 7, 2025, 07:30 PM');
    assert.equal(fmt.time(Date.UTC(2025, 0, 1, 13, 5)), '01:05 PM');
    assert.equal(fmt.number(1234567), '1,234,567');
  });

  test('a date a buyer acts on later carries its time zone', () => {
    assert.equal(fmt.dateWithZone('2026-12-31T16:32:41Z'), 'Thu, Dec 31, 2026, 04:32 PM UTC');
    const seoul = new Format('en', { timeZone: 'Asia/Seoul' });
    assert.equal(seoul.dateWithZone('2026-12-31T16:32:41Z'), 'Fri, Jan 1, 2027, 01:32 AM GMT+9');
  });
});
