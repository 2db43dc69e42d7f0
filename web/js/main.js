// QueueTicket buyer page: a guest identity, the events on sale, the live
// waiting room, the live seat map with seat holds, coupons to claim,
// checkout and payment, and the buyer's orders, all over the buyer
// WebSocket (wire contract, protocol 1.1).
//
// The entry module: it finds the page's elements, makes the parts and
// wires the browser's events to them. Formatting, the seat-map model, the
// queue view, the coupon words and the checkout words are pure (format.js,
// seatmap.js, queue-view.js, coupons.js, checkout.js); the socket, REST and
// storage each have a module; state lives in the Page (page.js), its Seats
// (seats.js), its CouponPanel (coupon-panel.js) and its CheckoutPanel
// (checkout-panel.js); render.js and canvas.js draw.

import { SeatCanvas } from './canvas.js';
import { Format } from './format.js';
import { Page } from './page.js';
import { View } from './render.js';
import { STATUS_NAMES } from './seatmap.js';
import { KEYS } from './storage.js';

const $ = (id) => document.getElementById(id);

const format = new Format(document.documentElement.lang || 'en');
// The canvas and the view call back into the page, made last; none of
// them does before the page has started.
const canvas = new SeatCanvas({
  canvas: $('seat-canvas'),
  overlay: $('seat-overlay'),
  scroller: $('map-scroll'),
  lookOf: (i) => page.seats.model.look(i),
  decorations: () => page.seats.decorations(),
});
const view = new View({
  doc: document,
  format,
  canvas,
  actions: {
    join: (event) => page.joinQueue(event),
    unselect: (id) => page.seats.unselect(id),
    release: (seats) => page.seats.release(seats),
    showOnMap: (seats) => page.seats.showOnMap(seats),
    claim: (campaign) => page.coupons.claim(campaign),
  },
});
const page = new Page({ view, canvas, format });
const { seats } = page;

$('leave').addEventListener('click', () => page.leaveQueue());
$('back').addEventListener('click', () => page.forgetPlace());
$('alert-close').addEventListener('click', () => view.hideAlert());
window.addEventListener('online', () => page.socket.reconnectNow());
// The offers are read again every few seconds only while someone looks.
document.addEventListener('visibilitychange', () => page.coupons.onVisibility(document.visibilityState === 'visible'));

const map = $('seat-canvas');
map.addEventListener('click', (e) => seats.onClick(e));
map.addEventListener('pointermove', (e) => seats.onPointer(e));
map.addEventListener('pointerleave', (e) => seats.onPointer(e));
map.addEventListener('keydown', (e) => seats.onKey(e));
map.addEventListener('focus', () => seats.onFocus());
map.addEventListener('blur', () => canvas.invalidateOverlay());
$('zoom-in').addEventListener('click', () => canvas.zoomIn());
$('zoom-out').addEventListener('click', () => canvas.zoomOut());
$('zoom-fit').addEventListener('click', () => canvas.zoomToFit());
$('hold-selected').addEventListener('click', () => seats.holdSelected());
$('clear-selection').addEventListener('click', () => seats.clearSelection());
$('release-all').addEventListener('click', () => seats.releaseAll());
$('seat-message-close').addEventListener('click', () => seats.dismissMessage());
$('best-form').addEventListener('submit', (e) => {
  e.preventDefault();
  seats.holdBest(view.bestChoice());
});
$('checkout-form').addEventListener('submit', (e) => {
  e.preventDefault();
  page.checkout.checkout(view.checkoutChoice());
});
$('payment-form').addEventListener('submit', (e) => {
  e.preventDefault();
  page.checkout.pay(view.paymentChoice());
});
$('cancel-order').addEventListener('click', () => page.checkout.cancel());
$('refund-order').addEventListener('click', () => {
  if (view.confirm('Cancel this paid order and have the payment refunded? Your seats go back on sale.')) page.checkout.cancel();
});
// Another tab of this buyer held or released seats.
window.addEventListener('storage', (e) => {
  if (e.key !== KEYS.holds) return;
  seats.restore();
  seats.redraw();
});
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => canvas.invalidateAll());

// A read-only view of the map as drawn, for the browser tests and for
// support staff poking at a buyer's screen.
window.queueticket = Object.freeze({
  /** `{id, tier, status, look, mine, selected, x, y}`, x and y being the seat's
   *  centre in CSS px from the canvas' top-left; null when not drawn. */
  seat(id) {
    const { model } = seats;
    const i = model.map?.index.get(id);
    if (i === undefined || canvas.map !== model.map) return null;
    const { x, y } = canvas.centreOf(i);
    const { tier } = model.map.seats[i];
    const [mine, selected] = [model.mine.has(id), model.selected.has(id)];
    return { id, tier, status: STATUS_NAMES[model.map.status[i]], look: model.look(i), mine, selected, x, y };
  },
});

page.start();
