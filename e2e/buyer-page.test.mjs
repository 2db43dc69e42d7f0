// The buyer page in a real Chromium against the real server: guest token,
// event list, joining a paused queue behind other buyers, admission pushed
// live, the live seat map (holding picked and best seats, other buyers'
// holds seen live, a seat taken from under the buyer, a hold running out),
// a reload that keeps the place, leaving, and riding out a restart.
//
// The scenarios run in order on one server and build on each other's queue
// state; each says what it expects to find when it starts.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { eventually as poll } from './support/eventually.mjs';
import { Server } from './support/server.mjs';
import { SocketBuyer } from './support/socket-buyer.mjs';

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
const EVENT = 'demo-live';
// Long enough for a push (every 2 s at most) plus an admitter tick.
const LIVE_TIMEOUT_MS = 8_000;
// Another buyer's hold must show on the page's map within this.
const SEAT_UPDATE_MS = 1_000;
const DEMO_SEATS = 2_400;

let server;
let browser;
let seller;
/** A buyer on a raw socket beside the page (seat scenarios). */
let other;
/** Uncaught errors of every page, checked after each scenario. */
const pageErrors = [];

/** Polls `read` until `check` accepts its value (LIVE_TIMEOUT_MS unless given). */
const eventually = (what, read, check, timeoutMs = LIVE_TIMEOUT_MS) => poll(what, read, check, timeoutMs);

/** Waits for a visible element whose text matches `pattern`; returns the text. */
function textOf(page, selector, pattern, timeoutMs) {
  return eventually(
    `text of ${selector} should match ${pattern}`,
    async () => {
      const el = page.locator(selector);
      return (await el.isVisible()) ? (await el.textContent()).replace(/\s+/g, ' ').trim() : '(hidden)';
    },
    (text) => pattern.test(text),
    timeoutMs,
  );
}

async function openPage(viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  page.on('dialog', (dialog) => dialog.accept()); // "Leave the queue?" confirmation
  await page.goto(server.base);
  return page;
}

const stored = (page, key) => page.evaluate((k) => JSON.parse(localStorage.getItem(k)), key);

/** Buyers who queue over REST, ahead of or behind the page. */
async function restBuyers(n) {
  const buyers = [];
  for (let i = 0; i < n; i += 1) {
    const { token } = await server.guest();
    buyers.push({ token, place: await server.join(token) });
  }
  return buyers;
}

async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/**
 * How the page shows a seat: its look (`free`, `selected`, `mine`, `taken`)
 * from the page's read-only `window.queueticket` view, the colour actually
 * painted at its centre on the canvas, and the colour the legend gives that
 * look (for a free seat, its tier's). `drawn === legend` means the map shows
 * what the legend says.
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
      selected: seat.selected,
      mine: seat.mine,
      drawn: a === 255 ? `rgb(${r}, ${g}, ${b})` : `transparent (${a})`,
      legend: swatch && getComputedStyle(swatch).backgroundColor,
    };
  }, id);
}

/** Waits until the page draws every seat of `ids` with `look` (and the legend's colour for it). */
async function seatsShow(page, ids, look, timeoutMs = LIVE_TIMEOUT_MS) {
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

/** Seats whose centre is painted (opaque) on the canvas, of `ids`. */
function paintedSeats(page, ids) {
  return page.evaluate((seatIds) => {
    const canvas = document.getElementById('seat-canvas');
    const k = canvas.width / canvas.getBoundingClientRect().width;
    const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    return seatIds.filter((id) => {
      const seat = window.queueticket.seat(id);
      return seat && pixels[(Math.floor(seat.y * k) * canvas.width + Math.floor(seat.x * k)) * 4 + 3] === 255;
    }).length;
  }, ids);
}

/** The seats of one hold on the page, by the ids in its list item. */
async function heldOnPage(page) {
  const items = await page.locator('#hold-list li.hold').evaluateAll((lis) => lis.map((li) => li.dataset.seats));
  return items.map((seats) => seats.split(' '));
}

/**
 * A second buyer's page whose socket passes through the test, which can
 * hold `seats` diffs back (the page then still shows free the seats
 * somebody has just taken, like a buyer on a slow link) or drop some (a
 * lost diff), and counts the `watch` requests the page sends.
 */
async function openGatedPage() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 }, locale: 'en-US', timezoneId: 'UTC' });
  const gate = { holdingBack: false, queued: [], toDrop: 0, dropped: 0, watches: 0, toPage: null };
  await context.routeWebSocket(
    (url) => url.pathname === '/ws',
    (ws) => {
      gate.toPage = ws;
      const upstream = ws.connectToServer();
      ws.onMessage((message) => {
        if (JSON.parse(String(message)).type === 'watch') gate.watches += 1;
        upstream.send(message);
      });
      upstream.onMessage((message) => {
        const isDiff = JSON.parse(String(message)).type === 'seats';
        if (isDiff && gate.toDrop > 0) {
          gate.toDrop -= 1;
          gate.dropped += 1;
        } else if (isDiff && gate.holdingBack) {
          gate.queued.push(message);
        } else {
          ws.send(message);
        }
      });
    },
  );
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(server.base);
  return {
    page,
    gate,
    holdBackDiffs: () => {
      gate.holdingBack = true;
    },
    letDiffsThrough: () => {
      gate.holdingBack = false;
      for (const message of gate.queued.splice(0)) gate.toPage.send(message);
    },
  };
}

describe('buyer page', { timeout: 90_000 }, () => {
  let desktop; // the page of scenarios 1–2
  let phone; // the page of scenarios 3–5, at phone width
  let behind; // a REST buyer who queued behind the phone's buyer
  let racer; // a second buyer's page with a gated socket (seat scenarios)

  before(async () => {
    server = await Server.start(['--guest-per-min', '600']);
    seller = await server.sellerToken();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });

  after(async () => {
    other?.close();
    await browser?.close();
    await server?.dispose();
  });

  test('lists the event with prices and shows place #4 with an ETA band while paused', async (t) => {
    // A slow rate makes the ETA band whole minutes: #4 at 2/min is 2–4 min.
    await server.setQueue(seller, { paused: true, rate_per_min: 2 });
    const ahead = await restBuyers(3);
    assert.deepEqual(ahead.map((b) => b.place.position), [1, 2, 3]);
    // ETAs use the admitter's published rate, which follows a change within
    // ~1 s. While paused the reported rate is 0 and the ETA assumes the
    // configured one: #1 at 2/min is 30 s away.
    await eventually('ETA seen by buyers', async () => (await server.join(ahead[0].token)).eta_s, (eta) => eta === 30);

    desktop = await openPage();
    await textOf(desktop, '#conn', /^Live$/);
    const guest = await stored(desktop, 'qt.guest');
    assert.match(guest?.token ?? '', /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a guest JWT is kept in localStorage');

    const card = desktop.locator('.event-card', { hasText: 'QueueTicket Live: Demo Night' });
    await card.waitFor();
    const prices = (await card.locator('tbody tr').allInnerTexts()).map((r) => r.replace(/\s+/g, ' ').trim());
    assert.deepEqual(prices, ['VIP ₩198,000', 'R ₩165,000', 'S ₩132,000', 'A ₩99,000']);
    assert.ok(await card.locator('.event-paused').isVisible(), 'the paused badge shows');
    await screenshot(desktop, 'events');

    await card.getByRole('button', { name: /join the queue/i }).click();
    await textOf(desktop, '#position', /^You are #4 of 4$/);
    await textOf(desktop, '#ahead', /^3 people ahead of you$/);
    await textOf(desktop, '#eta', /^about 2 min, between 2 and 4 min once admissions resume$/);
    await textOf(desktop, '#rate', /paused/);
    assert.ok(await desktop.locator('#paused').isVisible(), 'the paused notice shows');
    assert.equal(await desktop.locator('#progress').getAttribute('aria-valuenow'), '20');

    const rest = await server.queueStatus(guest.token);
    assert.equal(rest.body?.position, 4, 'the server has the page’s buyer at #4');

    // Anyone may watch: the live map is a preview while waiting, nothing to pick yet.
    await textOf(desktop, '#seats-title', /^Seat map preview$/);
    await textOf(desktop, '#seatmap-summary', /^2,400 seats, 2,400 free$/);
    assert.ok(!(await desktop.locator('#shop').isVisible()), 'no selection or hold controls while waiting');
    await clickSeat(desktop, 'C-1-12');
    await textOf(desktop, '#seat-info', /^C-1-12: section C, row 1, seat 12 · VIP ₩198,000 · free: you can choose seats once it's your turn$/);
    assert.equal((await seatOnMap(desktop, 'C-1-12')).selected, false, 'nothing is selected while waiting');
    await screenshot(desktop, 'waiting');
    t.diagnostic(`waiting screenshot in ${ARTIFACTS}`);
  });

  test('un-pausing admits the page live with a running countdown', async () => {
    await server.setQueue(seller, { paused: false, rate_per_min: 6000 });
    await textOf(desktop, '#admitted h1', /^It's your turn!$/);
    assert.match(await desktop.title(), /^It's your turn!/);
    const first = await textOf(desktop, '#countdown', /^\d+:\d\d$/);
    const [m, s] = first.split(':').map(Number);
    assert.ok(m * 60 + s > 540 && m * 60 + s <= 600, `countdown ${first} starts near the 10-minute window`);
    await textOf(desktop, '#countdown', new RegExp(`^(?!${first}$)\\d+:\\d\\d$`), 3_000); // it ticks
    assert.ok(await desktop.locator('#leave').isVisible());
    assert.ok(!(await desktop.locator('#waiting').isVisible()), 'the waiting panel is gone');

    const { token } = await stored(desktop, 'qt.guest');
    const rest = await server.queueStatus(token);
    assert.equal(rest.body?.type, 'admitted');
    await screenshot(desktop, 'admitted');
  });

  test('the admitted buyer sees all 2,400 seats, picks two by mouse and keyboard, holds and releases them', async () => {
    await textOf(desktop, '#seats-title', /^Choose your seats$/);
    await textOf(desktop, '#seatmap-summary', /^2,400 seats, 2,400 free$/);
    assert.equal(await desktop.locator('#seatmap-summary').getAttribute('data-total'), String(DEMO_SEATS));
    const ids = Object.keys(await server.seatStatuses());
    assert.equal(ids.length, DEMO_SEATS);
    assert.equal(await paintedSeats(desktop, ids), DEMO_SEATS, 'every seat is painted on the canvas');
    const legend = (await desktop.locator('#legend li').allInnerTexts()).map((t) => t.trim());
    assert.deepEqual(legend, ['VIP ₩198,000', 'R ₩165,000', 'S ₩132,000', 'A ₩99,000', 'Selected', 'Held by you', 'Taken', 'Sold']);
    await seatsShow(desktop, ['E-20-1', 'C-1-12'], 'free');

    // One seat by mouse, its neighbour by keyboard (the click focused the map).
    await clickSeat(desktop, 'E-20-1');
    await desktop.keyboard.press('ArrowRight');
    await textOf(desktop, '#seat-info', /^E-20-2: section E, row 20, seat 2 · A ₩99,000 · free$/);
    await desktop.keyboard.press('Space');
    await seatsShow(desktop, ['E-20-1', 'E-20-2'], 'selected');
    await textOf(desktop, '#selection-text', /^2 seats selected · ₩198,000$/);

    await desktop.getByRole('button', { name: 'Hold 2 seats' }).click();
    await seatsShow(desktop, ['E-20-1', 'E-20-2'], 'mine');
    await textOf(desktop, '#seat-message-text', /^Held E-20-1 and E-20-2, until \d/);
    assert.match(await desktop.locator('#seat-announcer').textContent(), /^Held E-20-1 and E-20-2/, 'the hold is announced');
    assert.deepEqual(await heldOnPage(desktop), [['E-20-1', 'E-20-2']]);
    await textOf(desktop, '#holds-total', /^Total ₩198,000 for 2 seats$/);
    const countdown = await textOf(desktop, '#hold-list .hold-countdown', /^\d+:\d\d$/);
    const [m, s] = countdown.split(':').map(Number);
    assert.ok(m * 60 + s > 590 && m * 60 + s <= 600, `hold countdown ${countdown} starts near hold_s (600 s)`);
    assert.ok(await desktop.getByRole('button', { name: 'Check out', exact: true }).isEnabled(), 'held seats can be checked out');
    await textOf(desktop, '#seatmap-summary', /^2,400 seats, 2,398 free$/);
    const store = await server.seatStatuses();
    assert.deepEqual([store['E-20-1'], store['E-20-2'], store['E-20-3']], ['held', 'held', 'free']);

    await desktop.getByRole('button', { name: 'Release E-20-1 and E-20-2' }).click();
    await seatsShow(desktop, ['E-20-1', 'E-20-2'], 'free');
    await textOf(desktop, '#seat-message-text', /^Released E-20-1 and E-20-2\.$/);
    assert.deepEqual(await heldOnPage(desktop), []);
    const after = await server.seatStatuses();
    assert.deepEqual([after['E-20-1'], after['E-20-2']], ['free', 'free']);
  });

  test('seats another buyer holds turn taken on the map within a second, and free again when released', async () => {
    other = await SocketBuyer.connect(server);
    await other.admit();
    const seats = ['D-5-7', 'D-5-8'];
    await seatsShow(desktop, seats, 'free');
    await other.hold(seats);
    await seatsShow(desktop, seats, 'taken', SEAT_UPDATE_MS);
    await textOf(desktop, '#seatmap-summary', /^2,400 seats, 2,398 free$/, SEAT_UPDATE_MS);
    await other.release(seats);
    await seatsShow(desktop, seats, 'free', SEAT_UPDATE_MS);
    await textOf(desktop, '#seatmap-summary', /^2,400 seats, 2,400 free$/, SEAT_UPDATE_MS);
  });

  test('holding a seat someone has just taken says so, flashes it and holds nothing', async () => {
    // A buyer whose map lags: the other buyer's hold has not reached it.
    racer = await openGatedPage();
    const { page } = racer;
    try {
      await page.getByRole('button', { name: /join the queue/i }).click();
      await textOf(page, '#seats-title', /^Choose your seats$/);
      await textOf(page, '#seatmap-summary', /^2,400 seats, 2,400 free$/);
      await clickSeat(page, 'C-10-1');
      await clickSeat(page, 'C-10-2');
      await textOf(page, '#selection-text', /^2 seats selected/);

      racer.holdBackDiffs();
      await other.hold(['C-10-1']);
      await page.getByRole('button', { name: 'Hold 2 seats' }).click();
      await textOf(page, '#seat-message-text', /^Sorry, C-10-1 was just taken by someone else\. Nothing was held\. The rest of your selection is still selected\.$/);
      assert.equal(await page.locator('#seat-message').getAttribute('data-kind'), 'error');
      await seatsShow(page, ['C-10-1'], 'taken');
      await seatsShow(page, ['C-10-2'], 'selected');
      assert.ok(await page.locator('#holds-empty').isVisible(), 'the page holds nothing');
      assert.deepEqual(await heldOnPage(page), []);
      const store = await server.seatStatuses();
      assert.deepEqual([store['C-10-1'], store['C-10-2']], ['held', 'free'], 'all or none: C-10-2 was not held');

      // The late diff changes nothing more.
      racer.letDiffsThrough();
      await textOf(page, '#seatmap-summary', /^2,400 seats, 2,399 free$/);
      await seatsShow(page, ['C-10-1'], 'taken');
    } finally {
      racer.letDiffsThrough();
      await other.release(['C-10-1']);
    }
  });

  test('a lost diff is noticed: the page asks for the map again and catches up', async () => {
    const { page, gate } = racer;
    try {
      await textOf(page, '#seatmap-summary', /^2,400 seats, 2,400 free$/);
      const watches = gate.watches;
      gate.toDrop = 1;
      await other.hold(['C-11-1']); // its diff never reaches the page
      await eventually('the diff dropped', () => gate.dropped, (n) => n === 1, 2_000);
      await other.hold(['C-11-2']); // its version shows the gap
      await seatsShow(page, ['C-11-1', 'C-11-2'], 'taken', 2_000);
      assert.equal(gate.watches, watches + 1, 'one new watch after the gap');
      await textOf(page, '#seatmap-summary', /^2,400 seats, 2,398 free$/);
    } finally {
      await other.release(['C-11-1', 'C-11-2']);
      await racer.page.context().close();
    }
  });

  test('best available holds three adjacent seats in one row; more than the limit is refused', async () => {
    await desktop.locator('#best-count').selectOption('3');
    await desktop.getByRole('button', { name: 'Hold best available' }).click();
    const [held] = await eventually('a hold of 3 seats', () => heldOnPage(desktop), (holds) => holds.length === 1);
    assert.equal(held.length, 3);
    const parts = held.map((id) => id.split('-'));
    const [section, row] = parts[0];
    assert.ok(parts.every(([s, r]) => s === section && r === row), `one row: ${held}`);
    const numbers = parts.map(([, , n]) => Number(n)).sort((a, b) => a - b);
    assert.deepEqual(numbers, [numbers[0], numbers[0] + 1, numbers[0] + 2], `adjacent: ${held}`);
    await seatsShow(desktop, held, 'mine');
    await textOf(desktop, '#seat-message-text', new RegExp(`^The best seats we found are yours: ${held[0]}, ${held[1]} and ${held[2]}, until`));

    const tier = await desktop.evaluate((id) => window.queueticket.seat(id).tier, held[0]);
    const event = (await server.call('GET', '/api/v1/events/demo-live')).body;
    const price = event.tiers.find((t) => t.id === tier).price;
    const total = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'KRW' }).format(price * 3);
    await textOf(desktop, '#holds-total', new RegExp(`^Total ${total} for 3 seats$`));
    const store = await server.seatStatuses();
    assert.deepEqual(held.map((id) => store[id]), ['held', 'held', 'held']);

    // The screenshots: the buyer's hold, another buyer's seats, a selection.
    await other.hold(['B-3-10', 'B-3-11', 'B-3-12']);
    await seatsShow(desktop, ['B-3-10', 'B-3-11', 'B-3-12'], 'taken');
    await clickSeat(desktop, 'C-2-12');
    await seatsShow(desktop, ['C-2-12'], 'selected');
    await screenshot(desktop, 'seatmap');
    await desktop.setViewportSize({ width: 390, height: 844 });
    await seatsShow(desktop, held, 'mine'); // redrawn at the new width
    // The map is wider than a phone: "Show on map" scrolls the hold into view.
    await desktop.getByRole('button', { name: `Show ${held[0]}, ${held[1]} and ${held[2]} on the map` }).click();
    await eventually(
      'the hold scrolled into view',
      () => desktop.evaluate((id) => {
        const view = document.getElementById('map-scroll');
        const { x } = window.queueticket.seat(id);
        return x >= view.scrollLeft && x <= view.scrollLeft + view.clientWidth;
      }, held[1]),
      (inView) => inView,
      2_000,
    );
    await screenshot(desktop, 'seatmap-phone');
    await desktop.setViewportSize({ width: 1280, height: 860 });
    await desktop.getByRole('button', { name: 'Unselect C-2-12' }).click();
    await other.release(['B-3-10', 'B-3-11', 'B-3-12']);

    // More than a buyer may hold (6 at the demo event) is refused, visibly.
    await desktop.locator('#best-count').selectOption('8');
    await desktop.getByRole('button', { name: 'Hold best available' }).click();
    await textOf(desktop, '#seat-message-text', /^You can't hold that many seats: at most 6 seats per buyer/);
    assert.equal(await desktop.locator('#seat-message').getAttribute('data-kind'), 'error');
    assert.deepEqual(await heldOnPage(desktop), [held], 'nothing more held');
  });

  test('a hold that runs out is announced and its seat is free again', async () => {
    await server.setQueue(seller, { hold_s: 10 });
    try {
      // Settings reach the seat service within a second: probe with the other buyer.
      await eventually(
        'hold_s of 10 s in force',
        async () => {
          const held = await other.hold(['A-20-23']);
          await other.release(['A-20-23']);
          return Date.parse(held.expires_at) - Date.now();
        },
        (ms) => ms <= 11_000,
        5_000,
      );
      await clickSeat(desktop, 'A-20-24');
      await desktop.getByRole('button', { name: 'Hold 1 seat' }).click();
      await seatsShow(desktop, ['A-20-24'], 'mine');
      await textOf(desktop, '#hold-list li[data-seats="A-20-24"] .hold-countdown', /^0:(09|10)$/);
      await textOf(desktop, '#seat-message-text', /^Your hold on A-20-24 expired\. The seats are free again\.$/, 15_000);
      assert.match(await desktop.locator('#seat-announcer').textContent(), /^Your hold on A-20-24 expired/);
      await seatsShow(desktop, ['A-20-24'], 'free');
      assert.equal((await heldOnPage(desktop)).flat().includes('A-20-24'), false);
      assert.equal((await server.seatStatuses())['A-20-24'], 'free');
    } finally {
      await server.setQueue(seller, { hold_s: 600 });
      // Closed so that it cannot re-queue when the server restarts below.
      await desktop.context().close();
    }
  });

  test('a reload keeps the same buyer and the same place', async () => {
    await server.setQueue(seller, { paused: true });
    await restBuyers(2);
    phone = await openPage({ width: 390, height: 844 });
    await phone.getByRole('button', { name: /join the queue/i }).click();
    await textOf(phone, '#position', /^You are #3 of 3$/);
    [behind] = await restBuyers(1);
    assert.equal(behind.place.position, 4);
    await textOf(phone, '#position', /^You are #3 of 4$/);
    const before = await stored(phone, 'qt.guest');
    await screenshot(phone, 'waiting-phone');

    await phone.reload();
    // No click: the page re-joins on its own and gets the same place back.
    // A new buyer would be #5 of 5 (the old place lingers for the grace period).
    await textOf(phone, '#position', /^You are #3 of 4$/);
    assert.equal((await stored(phone, 'qt.guest')).user, before.user, 'same buyer after the reload');
  });

  test('leaving gives the place up', async () => {
    const { token } = await stored(phone, 'qt.guest');
    await phone.getByRole('button', { name: 'Leave the queue' }).click();
    await textOf(phone, '#notice', /^You left the queue for QueueTicket Live: Demo Night\.$/);
    assert.ok(await phone.locator('.event-card').isVisible(), 'back to the event list');
    assert.equal(await stored(phone, 'qt.place'), null);

    const mine = await server.queueStatus(token);
    assert.equal(mine.status, 404, `no place left: ${JSON.stringify(mine.body)}`);
    const next = await server.queueStatus(behind.token);
    assert.equal(next.body?.position, 3, 'the buyer behind moved up');
  });

  test('a server restart is ridden out: the page reconnects and gets its place back', async () => {
    await phone.getByRole('button', { name: /join the queue/i }).click();
    await textOf(phone, '#position', /^You are #4 of 4$/);
    // The desktop buyer's 3 best seats are still held (for 10 min).
    await textOf(phone, '#seatmap-summary', /^2,400 seats, 2,397 free$/);
    const stopped = server.stop(); // SIGTERM: the socket hears `closing` first
    await textOf(phone, '#conn', /^Server restarting/, 3_000);
    await stopped;
    await server.run(); // same port and data: the page's token stays valid
    // The embedded stores are journaled in the data directory: the line and
    // the holds survive the restart, and joining again claims the place back.
    await textOf(phone, '#conn', /^Live$/, 15_000);
    await textOf(phone, '#position', /^You are #4 of 4$/);
    // The new socket watches again: the map still has the 3 held seats.
    await textOf(phone, '#seatmap-summary', /^2,400 seats, 2,397 free$/);
  });

  // After every scenario: no script error on any page.
  test('no page had an uncaught error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
