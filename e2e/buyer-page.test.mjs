// The buyer page in a real Chromium against the real server: guest token,
// event list, joining a paused queue behind other buyers, admission pushed
// live, a reload that keeps the place, leaving, and riding out a restart.
//
// The scenarios run in order on one server and build on each other's queue
// state; each says what it expects to find when it starts.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

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
const EVENT = 'demo-live';
// Long enough for a push (every 2 s at most) plus an admitter tick.
const LIVE_TIMEOUT_MS = 8_000;

let server;
let browser;
let seller;
/** Uncaught errors of every page, checked after each scenario. */
const pageErrors = [];

/** Polls `read` until `check` accepts its value; fails with the last value. */
async function eventually(what, read, check, timeoutMs = LIVE_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await read();
    if (check(last)) return last;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

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

describe('buyer page', { timeout: 90_000 }, () => {
  let desktop; // the page of scenarios 1–2
  let phone; // the page of scenarios 3–5, at phone width
  let behind; // a REST buyer who queued behind the phone's buyer

  before(async () => {
    server = await Server.start(['--guest-per-min', '600']);
    seller = await server.sellerToken();
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('lists the event with prices and shows place #4 with an ETA band while paused', async (t) => {
    // A slow rate makes the ETA band whole minutes: #4 at 2/min is 2–4 min.
    await server.setQueue(seller, { paused: true, rate_per_min: 2 });
    const ahead = await restBuyers(3);
    assert.deepEqual(ahead.map((b) => b.place.position), [1, 2, 3]);
    // ETAs use the admitter's published rate, which follows a change within ~1 s.
    await eventually('rate seen by buyers', async () => (await server.join(ahead[0].token)).rate_per_min, (r) => r === 2);

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
    // Closed so that it cannot re-queue when the server restarts below.
    await desktop.context().close();
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

  test('a server restart is ridden out: the page reconnects and queues again', async () => {
    await phone.getByRole('button', { name: /join the queue/i }).click();
    await textOf(phone, '#position', /^You are #4 of 4$/);
    const stopped = server.stop(); // SIGTERM: the socket hears `closing` first
    await textOf(phone, '#conn', /^Server restarting/, 3_000);
    await stopped;
    await server.run(); // same port and data: the page's token stays valid
    // The embedded waiting room lives in memory, so the line starts empty.
    await textOf(phone, '#conn', /^Live$/, 15_000);
    await textOf(phone, '#position', /^You are #1 of 1$/);
  });

  // After every scenario: no script error on any page.
  test('no page had an uncaught error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
