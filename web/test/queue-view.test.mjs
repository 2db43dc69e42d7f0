// What the waiting room shows for a `queue` or `admitted` message.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Format } from '../js/format.js';
import { admittedPanel, leaveQuestion, leftNotice, pageTitle, progressStart, queuePanel } from '../js/queue-view.js';

const fmt = new Format('en', { timeZone: 'UTC' });
const NBSP = '\u00a0';

/** A `queue` message as the server sends it. */
function queue(fields) {
  return { type: 'queue', event: 'demo-live', position: 4, waiting: 4, eta_s: 120, eta_low_s: 120, eta_high_s: 240, rate_per_min: 2, paused: false, ...fields };
}

describe('the waiting panel', () => {
  test('#4 of 4 while paused: place, people ahead, ETA band until resumed', () => {
    const panel = queuePanel(queue({ paused: true, rate_per_min: 0 }), 4, fmt);
    assert.deepEqual(panel, {
      position: 'You are #4 of 4',
      ahead: '3 people ahead of you',
      progress: 20,
      progressText: '20% of the way to the front',
      eta: `about 2${NBSP}min, between 2 and 4${NBSP}min once admissions resume`,
      rate: 'paused: nobody is admitted right now',
      paused: true,
    });
  });

  test('the rate while admitting, in people a minute', () => {
    const panel = queuePanel(queue({ rate_per_min: 6000, eta_s: 1, eta_low_s: 1, eta_high_s: 1 }), 4, fmt);
    assert.equal(panel.rate, '6,000 people a minute');
    assert.equal(panel.eta, `about 1${NBSP}s`, 'no "once admissions resume" while not paused');
    assert.equal(panel.paused, false);
  });

  test('one person ahead, and next in line', () => {
    assert.equal(queuePanel(queue({ position: 2 }), 4, fmt).ahead, '1 person ahead of you');
    assert.equal(queuePanel(queue({ position: 1 }), 4, fmt).ahead, "You're next in line.");
  });

  test('big lines are grouped', () => {
    assert.equal(queuePanel(queue({ position: 12_345, waiting: 20_000 }), 20_000, fmt).position, 'You are #12,345 of 20,000');
  });

  test('progress runs from the first position seen, never 0 or 100 %', () => {
    assert.equal(queuePanel(queue({ position: 1 }), 99, fmt).progress, 99);
    assert.equal(queuePanel(queue({ position: 50 }), 99, fmt).progress, 50);
    assert.equal(queuePanel(queue({ position: 4 }), null, fmt).progress, 20, 'no start yet: the position is it');
    assert.equal(queuePanel(queue({ position: 9 }), 4, fmt).progress, 10, 'a start below the position is raised to it');
  });

  test('the far end of the bar is the largest position seen', () => {
    assert.equal(progressStart(null, 7), 7);
    assert.equal(progressStart(undefined, 7), 7);
    assert.equal(progressStart(7, 3), 7);
    assert.equal(progressStart(7, 9), 9);
  });
});

describe('the admitted panel', () => {
  test('when the window closes and the countdown to it', () => {
    const end = Date.UTC(2025, 0, 1, 13, 5);
    assert.deepEqual(admittedPanel(end, end - 600_000, fmt), { windowEnd: 'Your window closes at 01:05 PM.', countdown: '10:00' });
    assert.equal(admittedPanel(end, end + 3_000, fmt).countdown, '0:00');
  });
});

describe('titles and notices', () => {
  test('the tab title carries the news', () => {
    assert.equal(pageTitle('waiting', queue({ position: 1234 }), fmt), '#1,234 in line · QueueTicket');
    assert.equal(pageTitle('waiting', null, fmt), 'QueueTicket', 'no position yet');
    assert.equal(pageTitle('admitted', null, fmt), "It's your turn! · QueueTicket");
    assert.equal(pageTitle('expired', null, fmt), 'Window ended · QueueTicket');
    assert.equal(pageTitle('browse', null, fmt), 'QueueTicket');
  });

  test('why a place was lost', () => {
    assert.equal(leftNotice('left', 'Demo Night'), 'You left the queue for Demo Night.');
    assert.equal(leftNotice('ended', 'Demo Night'), 'The sale for Demo Night has ended.');
    assert.match(leftNotice('gone', 'Demo Night'), /^Your place in line for Demo Night is no longer held: the page was disconnected/);
  });

  test('what leaving asks', () => {
    assert.equal(leaveQuestion('waiting', false), 'Leave the queue? You will lose your place in line.');
    assert.equal(leaveQuestion('admitted', false), 'Give up your turn? You would have to queue again.');
    assert.match(leaveQuestion('admitted', true), /Your held seats are released/);
  });
});
