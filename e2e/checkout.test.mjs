// The buyer page's checkout, payment and "My orders" in a real Chromium
// against the real server and its embedded payment sandbox: for each demo
// outcome (ok, decline, flaky, slow) a new guest joins the demo event,
// holds seats, checks out and pays, and sees what came of it; the best
// coupon with its discount line and reason; another buyer's page seeing
// the paid seats drawn as sold; a second tab of the same buyer following
// the order live; a coupon that does not apply; cancelling an unpaid order
// and refunding a paid one; and "My orders" listing each order's state.
//
// The scenarios run in order on one server, each with its own guest and
// its own seats; the refund scenario follows on from the first.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { eventually as poll } from './support/eventually.mjs';
import { Server } from './support/server.mjs';

const ARTIFACTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'artifacts');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
// A request's reply, or a push after it (the outbox relay wakes at once).
const REPLY_MS = 8_000;
// `flaky` and `slow` end paid within this with the server's default retry
// and reconciliation settings (the contract allows 60 s; these take less).
const SETTLE_MS = 30_000;
const FIXED = '10,000 won off (first 300 buyers)';
const PERCENT = '10% off, up to 30,000 won';
const KRW = (n) => new Intl.NumberFormat('en-US', { style: 'currency', currency: 'KRW' }).format(n);

let server;
let browser;
/** Uncaught errors of every page, checked after the last scenario. */
const pageErrors = [];

/** Polls `read` until `check` accepts its value (REPLY_MS unless given). */
const eventually = (what, read, check, timeoutMs = REPLY_MS) => poll(what, read, check, timeoutMs);

/** Waits until the visible `locator`'s text matches `pattern`; returns the text. */
function textOf(locator, pattern, timeoutMs) {
  return eventually(
    `text of ${locator} should match ${pattern}`,
    async () => ((await locator.isVisible()) ? (await locator.textContent()).replace(/\s+/g, ' ').trim() : '(hidden)'),
    (text) => pattern.test(text),
    timeoutMs,
  );
}

async function openPage(context) {
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('dialog', (dialog) => dialog.accept()); // "Cancel this paid order…?"
  await page.goto(server.base);
  await textOf(page.locator('#conn'), /^Live$/);
  return page;
}

/** A new guest in a browser context of their own. */
async function newBuyer() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'UTC' });
  return openPage(context);
}

const stored = (page, key) => page.evaluate((k) => JSON.parse(localStorage.getItem(k)), key);

/** Joins the demo event (its queue admits at once) and waits for the map. */
async function admit(page) {
  await page.getByRole('button', { name: /join the queue/i }).click();
  await textOf(page.locator('#admitted h1'), /^It's your turn!$/);
  await textOf(page.locator('#seatmap-summary'), /^2,400 seats, /);
}

/**
 * How the page shows a seat: its look from `window.queueticket`, the colour
 * painted at its centre, and the legend's colour for that look (see
 * buyer-page.test.mjs).
 */
function seatOnMap(page, id) {
  return page.evaluate((seatId) => {
    const seat = window.queueticket.seat(seatId);
    if (!seat) return null;
    const canvas = document.getElementById('seat-canvas');
    const k = canvas.width / canvas.getBoundingClientRect().width;
    const [r, g, b, a] = canvas.getContext('2d').getImageData(Math.floor(seat.x * k), Math.floor(seat.y * k), 1, 1).data;
    const entry = seat.look === 'free' ? `[data-tier="${seat.tier}"]` : `[data-look="${seat.look}"]`;
    const swatch = document.querySelector(`#legend ${entry} .swatch`);
    return {
      look: seat.look,
      status: seat.status,
      drawn: a === 255 ? `rgb(${r}, ${g}, ${b})` : `transparent (${a})`,
      legend: swatch && getComputedStyle(swatch).backgroundColor,
    };
  }, id);
}

async function seatsShow(page, ids, look, timeoutMs = REPLY_MS) {
  await eventually(
    `${ids.join(', ')} drawn as ${look}`,
    () => Promise.all(ids.map((id) => seatOnMap(page, id))),
    (seats) => seats.every((seat) => seat?.look === look && seat.drawn === seat.legend),
    timeoutMs,
  );
}

async function clickSeat(page, id) {
  const seat = await page.evaluate((seatId) => window.queueticket.seat(seatId), id);
  assert.ok(seat, `${id} is on the map`);
  await page.locator('#seat-canvas').click({ position: { x: seat.x, y: seat.y } });
}

/** Picks `ids` on the map and holds them. */
async function hold(page, ids) {
  for (const id of ids) await clickSeat(page, id);
  await page.getByRole('button', { name: `Hold ${ids.length} seat${ids.length === 1 ? '' : 's'}` }).click();
  await seatsShow(page, ids, 'mine');
}

/** The checkout panel's parts, as a buyer finds them. */
function panel(page) {
  const view = page.locator('#checkout-view');
  return {
    view,
    coupon: page.getByLabel('Coupon', { exact: true }),
    checkOut: view.getByRole('button', { name: 'Check out', exact: true }),
    order: page.locator('#order'),
    state: page.locator('#order-state'),
    lines: page.locator('#order-lines tbody tr'),
    subtotal: page.locator('#order-subtotal'),
    discount: page.locator('#order-discount'),
    total: page.locator('#order-total'),
    couponLine: page.locator('#order-coupon'),
    reason: page.locator('#order-coupon-reason'),
    countdown: page.locator('#order-countdown'),
    pay: page.locator('#pay'), // "Pay ₩99,000", "Paying…"
    cancel: view.getByRole('button', { name: 'Cancel order', exact: true }),
    refund: view.getByRole('button', { name: 'Cancel and refund', exact: true }),
    outcome: page.locator('#order-outcome'),
    message: page.locator('#checkout-message'),
  };
}

/** Checks out with the coupon choice `coupon` (an option's label or value;
 *  the one selected when absent); waits for the pending order. Returns its id. */
async function checkOut(page, coupon) {
  const p = panel(page);
  await p.view.waitFor();
  if (coupon) await p.coupon.selectOption(coupon);
  await p.checkOut.click();
  await textOf(p.state, /^Awaiting payment$/);
  return p.order.getAttribute('data-order');
}

/** Chooses the demo payment outcome and presses Pay. */
async function pay(page, outcome) {
  const p = panel(page);
  await page.locator(`#payment-outcomes input[value="${outcome}"]`).check();
  await p.pay.click();
}

/** "My orders" as listed: `[{order, status, text}]`, newest first. */
function myOrders(page) {
  return page.locator('#orders > li').evaluateAll((lis) =>
    lis.map((li) => ({ order: li.dataset.order, status: li.dataset.status, text: li.innerText.replace(/\s+/g, ' ').trim() })),
  );
}

/** The page's buyer's orders on the server, newest first. */
async function ordersOnServer(page) {
  const { token } = await stored(page, 'qt.guest');
  const res = await server.call('GET', '/api/v1/me/orders', { token });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.items;
}

/** Approved charges the sandbox recorded for `order`. */
async function charges(order) {
  const res = await server.call('GET', `/pg-sandbox/v1/charges?orderId=${encodeURIComponent(order)}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.charges;
}

async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

describe('checkout on the buyer page', { timeout: 120_000 }, () => {
  let payer; // the buyer of the first scenario, who pays ok
  let watcher; // another buyer's page, watching the map
  let paidOrder;
  const paidSeats = ['C-1-11', 'C-1-12'];

  before(async () => {
    server = await Server.start(['--guest-per-min', '600']);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('ok: the best coupon is picked and explained, the payment books the seats, another buyer sees them sold', async () => {
    watcher = await newBuyer();
    await admit(watcher);
    await seatsShow(watcher, paidSeats, 'free');

    payer = await newBuyer();
    for (const name of [FIXED, PERCENT]) {
      await payer.getByRole('button', { name: `Claim ${name}`, exact: true }).click();
    }
    await eventually('both coupons in my coupons', () => payer.locator('#my-coupons > li').count(), (n) => n === 2);
    await admit(payer);
    const p = panel(payer);
    assert.ok(!(await p.view.isVisible()), 'no checkout before any seat is held');
    await hold(payer, paidSeats);

    // The coupon choice: best (the default), none, and each coupon.
    await p.view.waitFor();
    const options = (await p.coupon.locator('option').allInnerTexts()).map((t) => t.trim());
    assert.equal(options.length, 4, JSON.stringify(options));
    assert.match(options[0], /^Best coupon/);
    assert.equal(options[1], 'No coupon');
    assert.ok(options.some((o) => o.startsWith(FIXED)) && options.some((o) => o.startsWith(PERCENT)), JSON.stringify(options));
    assert.match(await p.coupon.inputValue(), /^best$/);

    paidOrder = await checkOut(payer);
    const lines = (await p.lines.allInnerTexts()).map((t) => t.replace(/\s+/g, ' ').trim());
    assert.deepEqual(lines, [`C-1-11 VIP ${KRW(198_000)}`, `C-1-12 VIP ${KRW(198_000)}`]);
    assert.equal(await p.subtotal.textContent(), KRW(396_000));
    // 10% of 396,000 is capped at 30,000, which beats 10,000 off.
    assert.equal(await p.discount.textContent(), `−${KRW(30_000)}`);
    assert.equal(await p.total.textContent(), KRW(366_000));
    await textOf(p.couponLine, new RegExp(`^Coupon: ${PERCENT}$`));
    await textOf(p.reason, /^“10% off, up to 30,000 won” saves 30,000, the largest discount among your 2 coupons that apply to this order/);
    const countdown = await textOf(p.countdown, /^Pay within \d+:\d\d$/);
    await textOf(p.countdown, new RegExp(`^(?!${countdown}$)Pay within \\d+:\\d\\d$`), 3_000); // it ticks
    assert.equal(await p.pay.textContent(), `Pay ${KRW(366_000)}`);
    await screenshot(payer, 'checkout-order');

    await pay(payer, 'ok');
    await textOf(p.outcome, /^Paid — your seats are booked\.$/);
    assert.equal(await p.outcome.getAttribute('data-kind'), 'ok');
    await textOf(p.state, /^Paid$/);
    assert.ok(!(await p.pay.isVisible()), 'nothing left to pay');
    await seatsShow(payer, paidSeats, 'sold');
    await textOf(payer.locator('#seat-message-text'), /^C-1-11 and C-1-12 are booked for you\.$/);
    await seatsShow(watcher, paidSeats, 'sold');
    const store = await server.seatStatuses();
    assert.deepEqual(paidSeats.map((id) => store[id]), ['sold', 'sold']);
    assert.ok(!(await payer.locator('#hold-list li').count()), 'the seats are no longer held, they are booked');

    // My orders has it, with its state; the server and the gateway agree.
    const [listed] = await eventually('the order in my orders', () => myOrders(payer), (list) => list[0]?.status === 'paid');
    assert.equal(listed.order, paidOrder);
    assert.match(listed.text, new RegExp(`^C-1-11 and C-1-12 Paid ${KRW(366_000)} · Paid \\w{3}, `));
    const [onServer] = await ordersOnServer(payer);
    assert.equal(onServer.order, paidOrder);
    assert.equal(onServer.status, 'paid');
    assert.equal(onServer.discount, 30_000);
    const approved = await charges(paidOrder);
    assert.deepEqual(approved.map((c) => [c.amount, c.status]), [[366_000, 'DONE']], 'charged once, the order total');
    await screenshot(payer, 'checkout-paid');
  });

  test('a paid order can be cancelled and refunded: the page says so and the seats go back on sale', async () => {
    const p = panel(payer);
    await p.refund.click();
    await textOf(p.outcome, /^Refunded: .+\.$/);
    await textOf(p.state, /^Refunded$/);
    await seatsShow(watcher, paidSeats, 'free');
    await eventually('refunded in my orders', () => myOrders(payer), (list) => list[0]?.status === 'refunded');
    const approved = await charges(paidOrder);
    assert.deepEqual(approved.map((c) => c.status), ['CANCELED']);
    await watcher.context().close();
  });

  test('decline: the page says why, the seats stay held, and the buyer may check out again', async () => {
    const buyer = await newBuyer();
    try {
      await admit(buyer);
      const seats = ['D-20-3'];
      await hold(buyer, seats);
      const p = panel(buyer);
      await checkOut(buyer, 'No coupon');
      await textOf(p.couponLine, /^No coupon$/);
      assert.equal(await p.discount.textContent(), KRW(0));
      assert.equal(await p.total.textContent(), KRW(99_000));
      assert.ok(!(await p.reason.isVisible()), 'no reason without the best coupon');

      await pay(buyer, 'decline');
      await textOf(p.outcome, /^Declined: .+/);
      assert.equal(await p.outcome.getAttribute('data-kind'), 'error');
      await textOf(p.state, /^Declined$/);
      await seatsShow(buyer, seats, 'mine');
      assert.ok(await p.checkOut.isEnabled(), 'another try is a new checkout');
      assert.ok(!(await p.pay.isVisible()));
      const [listed] = await eventually('declined in my orders', () => myOrders(buyer), (list) => list[0]?.status === 'failed');
      assert.match(listed.text, /^D-20-3 Declined /);
      assert.equal((await ordersOnServer(buyer))[0].status, 'failed');
      await screenshot(buyer, 'checkout-declined');
    } finally {
      await buyer.context().close();
    }
  });

  test('an unpaid order can be cancelled; the seats stay held and my orders keeps both, newest first', async () => {
    const buyer = await newBuyer();
    try {
      await admit(buyer);
      const seats = ['B-20-3', 'B-20-4'];
      await hold(buyer, seats);
      const p = panel(buyer);
      const first = await checkOut(buyer, 'No coupon');
      await p.cancel.click();
      await textOf(p.outcome, /^Cancelled\./);
      await textOf(p.state, /^Cancelled$/);
      await seatsShow(buyer, seats, 'mine');
      assert.ok(await p.checkOut.isVisible());

      const second = await checkOut(buyer, 'best');
      assert.notEqual(second, first);
      await textOf(p.couponLine, /^No coupon$/);
      await textOf(p.reason, /^You have no coupons for this event\.$/);
      await p.cancel.click();
      await textOf(p.state, /^Cancelled$/);
      const list = await eventually('two orders listed', () => myOrders(buyer), (l) => l.length === 2 && l.every((o) => o.status === 'cancelled'));
      assert.deepEqual(list.map((o) => o.order), [second, first], 'newest first');
      assert.deepEqual((await ordersOnServer(buyer)).map((o) => [o.order, o.status]), [[second, 'cancelled'], [first, 'cancelled']]);
      const store = await server.seatStatuses();
      assert.deepEqual(seats.map((id) => store[id]), ['held', 'held']);
    } finally {
      await buyer.context().close();
    }
  });

  test("a coupon that does not apply is refused with the server's reason", async (t) => {
    const seller = await server.sellerToken();
    const campaign = {
      id: 'vip-only',
      name: 'VIP 5,000 won off',
      kind: 'fixed',
      value: 5000,
      stock: null,
      tiers: ['vip'],
      events: ['demo-live'],
      starts_at: new Date(Date.now() - 60_000).toISOString(),
      ends_at: new Date(Date.now() + 86_400_000).toISOString(),
      funded_by: { seller: 100, platform: 0 },
    };
    const made = await server.call('POST', '/api/v1/seller/campaigns', { token: seller, body: campaign });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const buyer = await newBuyer();
    try {
      await buyer.getByRole('button', { name: 'Claim VIP 5,000 won off', exact: true }).click();
      await eventually('the coupon in my coupons', () => buyer.locator('#my-coupons > li').count(), (n) => n === 1);
      await admit(buyer);
      await hold(buyer, ['A-20-5']); // an A seat
      const p = panel(buyer);
      await p.coupon.selectOption('VIP 5,000 won off · 5,000 won off, VIP seats only');
      await p.checkOut.click();
      // The server's reason, as a sentence where the buyer looks.
      const said = await textOf(p.message, /^(?!\(hidden\))[A-Z].{10,}\.$/);
      assert.match(said, /VIP|tier|seat|appl/i, `it says why: ${said}`);
      t.diagnostic(`refused: ${said}`);
      assert.equal(await p.message.getAttribute('data-kind'), 'warn');
      assert.ok(!(await p.order.isVisible()), 'no order was made');
      assert.deepEqual(await ordersOnServer(buyer), []);

      // Without it the checkout goes through, and the refusal is old news.
      await checkOut(buyer, 'No coupon');
      assert.equal(await p.message.textContent(), '');
    } finally {
      await buyer.context().close();
    }
  });

  test('flaky: the retries are the server’s; the buyer sees the payment go through', { timeout: 60_000 }, async () => {
    const buyer = await newBuyer();
    try {
      await admit(buyer);
      const seats = ['E-19-1'];
      await hold(buyer, seats);
      const order = await checkOut(buyer);
      const p = panel(buyer);
      await pay(buyer, 'flaky');
      await textOf(p.outcome, /^Paid — your seats are booked\.$/, SETTLE_MS);
      await seatsShow(buyer, seats, 'sold');
      await eventually('paid in my orders', () => myOrders(buyer), (list) => list[0]?.status === 'paid');
      assert.equal((await charges(order)).length, 1, 'charged once');
    } finally {
      await buyer.context().close();
    }
  });

  test('slow: the page waits for the confirmation, then both tabs of the buyer show it paid', { timeout: 60_000 }, async () => {
    const buyer = await newBuyer();
    let tab;
    try {
      await admit(buyer);
      const seats = ['A-19-5', 'A-19-6'];
      await hold(buyer, seats);
      const order = await checkOut(buyer);
      // The same buyer in another tab: same guest, same place, same order.
      tab = await openPage(buyer.context());
      await textOf(tab.locator('#admitted h1'), /^It's your turn!$/);
      await textOf(panel(tab).state, /^Awaiting payment$/);
      assert.equal(await panel(tab).order.getAttribute('data-order'), order);

      const p = panel(buyer);
      await pay(buyer, 'slow');
      await textOf(p.outcome, /^Waiting for the payment to be confirmed…$/);
      assert.equal(await p.outcome.getAttribute('data-kind'), 'info');
      assert.ok(await p.pay.isDisabled(), 'no second payment while one is in flight');
      assert.ok(await p.cancel.isDisabled());
      await screenshot(buyer, 'checkout-pending');
      await textOf(p.outcome, /^Paid — your seats are booked\.$/, SETTLE_MS);
      await textOf(panel(tab).outcome, /^Paid — your seats are booked\.$/);
      await seatsShow(tab, seats, 'sold');
      await eventually('paid in my orders, in both tabs', async () => [(await myOrders(buyer))[0]?.status, (await myOrders(tab))[0]?.status], (s) => s.every((x) => x === 'paid'));
      assert.equal((await charges(order)).length, 1, 'charged once');
    } finally {
      await buyer.context().close();
    }
  });

  test('no page had an uncaught error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
