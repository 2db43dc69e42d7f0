// The buyer page's coupon panel in a real Chromium against the real server:
// the demo event's two campaigns with what they take off and how many are
// left, claiming one (yours, in "My coupons", one fewer left), claiming it
// again (already claimed), another guest claiming beside the first, the
// panel at phone width, riding out a restart (a claim while disconnected
// says nothing was claimed; the reconnect asks for the buyer's coupons
// again), sold out and paused campaigns, and the panel in the event's room
// once admitted.
//
// The scenarios run in order on one server and build on each other's
// claims; each says what it expects to find when it starts.

import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';
import WebSocket from 'ws';

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
// A claim's reply and the list read after it.
const CLAIM_MS = 3_000;
// The page reads the campaigns every 5 s: another buyer's claim shows within this.
const REFRESH_MS = 8_000;
const PHONE = { width: 390, height: 844 };
const FIXED = '10,000 won off (first 300 buyers)';
const PERCENT = '10% off, up to 30,000 won';
const ZONED = /(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [A-Z][a-z]{2} \d{1,2}, \d{4}, \d\d:\d\d [AP]M UTC/;

let server;
let browser;
/** Uncaught errors of every page, checked after the last scenario. */
const pageErrors = [];

/** Polls `read` until `check` accepts its value (CLAIM_MS unless given). */
const eventually = (what, read, check, timeoutMs = CLAIM_MS) => poll(what, read, check, timeoutMs);

/** Waits until the visible `locator`'s text matches `pattern`; returns the text. */
function textOf(locator, pattern, timeoutMs) {
  return eventually(
    `text of ${locator} should match ${pattern}`,
    async () => ((await locator.isVisible()) ? (await locator.textContent()).replace(/\s+/g, ' ').trim() : '(hidden)'),
    (text) => pattern.test(text),
    timeoutMs,
  );
}

async function openPage(viewport = { width: 1280, height: 860 }) {
  const context = await browser.newContext({ viewport, locale: 'en-US', timezoneId: 'UTC' });
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(err.message));
  await page.goto(server.base);
  await textOf(page.locator('#conn'), /^Live$/);
  return page;
}

const stored = (page, key) => page.evaluate((k) => JSON.parse(localStorage.getItem(k)), key);

/** A campaign on the page, found by its name as a buyer reads it. */
function campaign(page, name) {
  const item = page.locator('#campaigns > li', { has: page.getByRole('heading', { name, exact: true }) });
  return {
    item,
    terms: item.locator('.campaign-terms'),
    stock: item.locator('.campaign-stock'),
    outcome: item.locator('.campaign-outcome'),
    claim: page.getByRole('button', { name: `Claim ${name}`, exact: true }),
  };
}

/** The buyer's coupons as listed on the page, one line each. */
async function myCoupons(page) {
  const items = await page.locator('#my-coupons > li').allInnerTexts();
  return items.map((text) => text.replace(/\s+/g, ' ').trim());
}

/** What the server has for the page's buyer and the demo campaigns. */
async function onServer(page) {
  const { token } = await stored(page, 'qt.guest');
  const mine = (await server.call('GET', '/api/v1/me/coupons', { token })).body.items.map((c) => c.campaign).sort();
  const list = (await server.call('GET', '/api/v1/events/demo-live/campaigns')).body.items;
  return { mine, remaining: Object.fromEntries(list.map((c) => [c.id, c.remaining])) };
}

/**
 * Makes the page read the campaign list as it is now, whatever happens on
 * the server next: a buyer whose list is a few seconds old. Returns the
 * function that lets the page read the live list again.
 */
async function freezeCampaigns(page) {
  const route = `${server.base}/api/v1/events/demo-live/campaigns`;
  const frozen = (await server.call('GET', '/api/v1/events/demo-live/campaigns')).body;
  await page.route(route, (r) => r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(frozen) }));
  return () => page.unroute(route);
}

/** A campaign of the demo seller's, on the demo event, claimable now. */
async function createCampaign(seller, fields) {
  const body = {
    kind: 'fixed',
    starts_at: new Date(Date.now() - 60_000).toISOString(),
    ends_at: new Date(Date.now() + 86_400_000).toISOString(),
    events: ['demo-live'],
    funded_by: { seller: 100, platform: 0 },
    ...fields,
  };
  const res = await server.call('POST', '/api/v1/seller/campaigns', { token: seller, body });
  assert.equal(res.status, 201, `campaign: ${JSON.stringify(res.body)}`);
}

/** Nothing on the page is wider than the screen. */
function horizontalOverflow(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll('#coupons-view, #coupons-view *')]
      .filter((el) => el.getBoundingClientRect().right > width + 0.5)
      .map((el) => el.id || el.className || el.tagName);
    return { scrollWidth: document.documentElement.scrollWidth, width, wide };
  });
}

async function screenshot(page, name) {
  await mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

describe('coupons on the buyer page', { timeout: 90_000 }, () => {
  let desktop; // the first guest
  let second; // another guest, in its own browser context

  before(async () => {
    server = await Server.start(['--guest-per-min', '600']);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('the demo event shows both campaigns with what they take off and how many are left', async () => {
    desktop = await openPage();
    await desktop.locator('#coupons-view').waitFor();
    const fixed = campaign(desktop, FIXED);
    const percent = campaign(desktop, PERCENT);
    await textOf(fixed.stock, new RegExp(`^300 coupons left · claim by ${ZONED.source}$`));
    await textOf(fixed.terms, /^10,000 won off, min\. spend 50,000$/);
    await textOf(percent.stock, new RegExp(`^1,000 coupons left · claim by ${ZONED.source}$`));
    assert.equal(await percent.terms.textContent(), '', 'a name that says the terms is not followed by them again');
    assert.equal(await desktop.locator('#campaigns > li').count(), 2);

    // Real buttons, and the outcome beside each in a live region.
    assert.equal(await fixed.claim.evaluate((el) => el.tagName), 'BUTTON');
    assert.ok(await fixed.claim.isEnabled());
    assert.ok(await percent.claim.isEnabled());
    assert.equal(await fixed.outcome.getAttribute('aria-live'), 'polite');
    assert.equal(await fixed.outcome.getAttribute('role'), 'status');

    await textOf(desktop.locator('#my-coupons-status'), /^None yet\./);
    assert.deepEqual(await myCoupons(desktop), []);
    const words = await desktop.locator('#coupons-view').innerText();
    for (const id of ['demo-10000-off', 'demo-10-percent', 'demo-live', 'cp-']) assert.ok(!words.includes(id), `no internal id (${id}) shown`);
  });

  test('claiming the fixed coupon says it is yours, lists it in my coupons, and 299 are left', async () => {
    const fixed = campaign(desktop, FIXED);
    await fixed.claim.click();
    await textOf(fixed.outcome, new RegExp(`^Yours: 10,000 won off, min\\. spend 50,000\\. Valid until ${ZONED.source}\\.$`));
    assert.equal(await fixed.outcome.getAttribute('data-kind'), 'ok');
    await textOf(fixed.stock, /^299 coupons left/, CLAIM_MS);
    await textOf(campaign(desktop, PERCENT).stock, /^1,000 coupons left/);

    await eventually('the coupon in my coupons', () => myCoupons(desktop), (list) => list.length === 1);
    const [line] = await myCoupons(desktop);
    assert.match(line, new RegExp(`^${FIXED.replace(/[()]/g, '\\$&')} 10,000 won off, min\\. spend 50,000 Valid until ${ZONED.source} · For QueueTicket Live: Demo Night$`));
    await textOf(desktop.locator('#my-coupons-title'), /^My coupons \(1\)$/);
    assert.ok(!(await desktop.locator('#my-coupons-status').isVisible()), 'no "None yet" beside a coupon');

    assert.deepEqual(await onServer(desktop), { mine: ['demo-10000-off'], remaining: { 'demo-10000-off': 299, 'demo-10-percent': 1000 } });
    await screenshot(desktop, 'coupons');
  });

  test('claiming it again says already claimed and changes nothing', async () => {
    const fixed = campaign(desktop, FIXED);
    await fixed.claim.click();
    await textOf(fixed.outcome, /already claimed/i);
    assert.equal(await fixed.outcome.getAttribute('data-kind'), 'warn');
    await textOf(fixed.stock, /^299 coupons left/);
    assert.equal((await myCoupons(desktop)).length, 1);
    assert.deepEqual((await onServer(desktop)).remaining['demo-10000-off'], 299);
  });

  test('another guest claims the fixed coupon too and sees 298; the first page follows within a refresh', async () => {
    second = await openPage();
    assert.notEqual((await stored(second, 'qt.guest')).user, (await stored(desktop, 'qt.guest')).user, 'a different guest');
    const fixed = campaign(second, FIXED);
    await textOf(fixed.stock, /^299 coupons left/);
    await textOf(second.locator('#my-coupons-status'), /^None yet\./);
    await fixed.claim.click();
    await textOf(fixed.outcome, /^Yours: 10,000 won off, min\. spend 50,000\./);
    await textOf(fixed.stock, /^298 coupons left/, CLAIM_MS);
    assert.equal((await myCoupons(second)).length, 1);

    await textOf(campaign(desktop, FIXED).stock, /^298 coupons left/, REFRESH_MS);
    assert.deepEqual(await onServer(second), { mine: ['demo-10000-off'], remaining: { 'demo-10000-off': 298, 'demo-10-percent': 1000 } });
  });

  test('at phone width the coupon panel fits the screen and its buttons work', async () => {
    const phone = await openPage(PHONE);
    try {
      await phone.locator('#coupons-view').scrollIntoViewIfNeeded();
      const percent = campaign(phone, PERCENT);
      await textOf(percent.stock, /^1,000 coupons left/);
      assert.deepEqual(await horizontalOverflow(phone), { scrollWidth: PHONE.width, width: PHONE.width, wide: [] });

      const box = await percent.claim.boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width, `the button is on screen: ${JSON.stringify(box)}`);
      assert.ok(box.height >= 44, `a comfortable tap target: ${box.height} px`);
      await percent.claim.click();
      await textOf(percent.outcome, /^Yours: 10% off, up to 30,000 won\./);
      await textOf(percent.stock, /^999 coupons left/, CLAIM_MS);
      await eventually('the coupon in my coupons', () => myCoupons(phone), (list) => list.length === 1);
      await phone.locator('#my-coupons').scrollIntoViewIfNeeded();
      assert.ok(await phone.locator('#my-coupons > li').isVisible());
      assert.deepEqual(await horizontalOverflow(phone), { scrollWidth: PHONE.width, width: PHONE.width, wide: [] }, 'none with the outcome and the coupon shown');
      await screenshot(phone, 'coupons-phone');
    } finally {
      await phone.context().close();
    }
  });

  test('a restart is ridden out: a claim while disconnected says nothing was claimed, the reconnect asks for the coupons again', async () => {
    // The first guest claims the percent coupon on another socket of theirs:
    // no push tells the page, so it still lists one coupon.
    const { token, user } = await stored(desktop, 'qt.guest');
    const ws = new WebSocket(`${server.base.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(token)}`);
    await new Promise((resolve, reject) => ws.once('message', resolve).once('error', reject)); // hello
    const elsewhere = new SocketBuyer(ws, user);
    const claimed = await elsewhere.request({ type: 'claim_coupon', campaign: 'demo-10-percent' });
    assert.equal(claimed.type, 'coupon');
    elsewhere.close();
    assert.equal((await myCoupons(desktop)).length, 1);

    const percent = campaign(desktop, PERCENT);
    const stopped = server.stop(); // SIGTERM: the page hears `closing`
    await textOf(desktop.locator('#conn'), /^(Server restarting|Reconnecting)/, 3_000);
    await stopped;
    await percent.claim.click();
    await textOf(percent.outcome, /^Not connected to the server, so nothing was claimed\. Try again once it says Live\.$/);
    assert.equal(await percent.outcome.getAttribute('data-kind'), 'error');

    await server.run(); // same port and data: the token and the coupons survive
    await textOf(desktop.locator('#conn'), /^Live$/, 15_000);
    await eventually('both coupons listed after the reconnect', () => myCoupons(desktop), (list) => list.length === 2);
    await textOf(desktop.locator('#my-coupons-title'), /^My coupons \(2\)$/);
    // The connection failure is old news; the coupon held says so instead.
    await textOf(percent.outcome, /^Yours: 10% off, up to 30,000 won\./);
    await textOf(percent.stock, /^998 coupons left/, REFRESH_MS);
    assert.deepEqual(await onServer(desktop), {
      mine: ['demo-10-percent', 'demo-10000-off'],
      remaining: { 'demo-10000-off': 298, 'demo-10-percent': 998 },
    });
  });

  test('sold out and paused campaigns say so: from the server to a buyer whose list is old, then on the list', async () => {
    const seller = await server.sellerToken();
    await createCampaign(seller, { id: 'last-one', name: 'VIP 5,000 won off', value: 5000, stock: 1, tiers: ['vip'] });
    await createCampaign(seller, { id: 'flash', name: 'Flash sale', kind: 'percent', value: 5, stock: null });
    const last = campaign(desktop, 'VIP 5,000 won off');
    const flash = campaign(desktop, 'Flash sale');
    await textOf(last.stock, /^1 coupon left · claim by /, REFRESH_MS);
    await textOf(last.terms, /^5,000 won off, VIP seats only$/);
    await textOf(flash.stock, /^No limit · claim by /);
    await textOf(flash.terms, /^5% off$/);

    const unfreeze = await freezeCampaigns(desktop);
    try {
      const other = await SocketBuyer.connect(server);
      await other.request({ type: 'claim_coupon', campaign: 'last-one' });
      other.close();
      const paused = await server.call('PATCH', '/api/v1/seller/campaigns/flash', { token: seller, body: { paused: true } });
      assert.equal(paused.status, 200, JSON.stringify(paused.body));

      await last.claim.click();
      await textOf(last.outcome, /^Sold out: every coupon of this offer has been claimed\.$/);
      assert.equal(await last.outcome.getAttribute('data-kind'), 'warn');
      await flash.claim.click();
      await textOf(flash.outcome, /^This campaign is paused\.$/);
      await textOf(last.stock, /^1 coupon left/, 1_000); // the list the page has is still the old one
    } finally {
      await unfreeze();
    }
    await textOf(last.stock, /^Sold out$/, REFRESH_MS);
    await textOf(flash.stock, /^Paused by the organiser$/);
    assert.equal(await last.claim.getAttribute('aria-disabled'), 'true');
    assert.equal(await flash.claim.getAttribute('aria-disabled'), 'true');
    assert.ok(await campaign(desktop, FIXED).claim.isEnabled());
    const names = await desktop.locator('#campaigns .campaign-name').allInnerTexts();
    assert.deepEqual(names.slice(2).sort(), ['Flash sale', 'VIP 5,000 won off'], `claimable offers first: ${names}`);
  });

  test("in the event's room the panel stays, with that event's offers and the same coupons", async () => {
    await desktop.getByRole('button', { name: /join the queue/i }).click();
    await textOf(desktop.locator('#admitted h1'), /^It's your turn!$/); // the demo queue is open
    await textOf(campaign(desktop, FIXED).stock, /^298 coupons left/);
    await textOf(campaign(desktop, PERCENT).outcome, /^Yours: 10% off/);
    await textOf(desktop.locator('#my-coupons-title'), /^My coupons \(2\)$/);
    await screenshot(desktop, 'coupons-admitted');
  });

  test('no page had an uncaught error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
