// Everything the page writes into the document: the connection line, the
// event list, the waiting room, the seat panel's words and lists, the
// coupon panel, the checkout panel and "My orders", alerts.
// A View is handed what to show each time; it keeps only what it needs to
// skip redoing unchanged parts. What a click means comes back through the
// `actions` it was made with.

import { PAYMENT_OUTCOMES } from './checkout.js';
import { formatClock, formatList, formatSeatList } from './format.js';
import { admittedPanel, pageTitle, queuePanel } from './queue-view.js';

// style.css defines this many tier colours (--tier-1…); more tiers reuse them.
const TIER_COLOUR_COUNT = 6;
// The count choices of "best available"; the server has the final say on
// how many one buyer may hold (`hold_limit`).
const BEST_COUNTS = [1, 2, 3, 4, 5, 6, 7, 8];
// An announcement is cleared this long after it was read out.
const ANNOUNCE_MS = 7_000;
// How a seat's look reads in words.
const LOOK_WORDS = { free: 'free', selected: 'selected', mine: 'held by you', taken: 'taken', sold: 'sold' };

/** Writes only on change, so live regions announce news, not repeats. */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export class View {
  #doc;
  #format;
  /** The seat map's SeatCanvas, shown and cleared with the seat panel. */
  #canvas;
  /** `{join(event), unselect(id), release(seats), showOnMap(seats), claim(campaign)}` */
  #actions;
  /** The event list drawn: rebuilt only when a fresh list arrived, so
   *  that buttons keep focus otherwise. */
  #shownEvents = null;
  /** The tiers and currency the legend was drawn for. */
  #shownTiers = null;
  /** The holds and map the hold list was drawn for. */
  #shownHolds = null;
  #announceTimer = 0;

  constructor({ doc, format, canvas, actions }) {
    this.#doc = doc;
    this.#format = format;
    this.#canvas = canvas;
    this.#actions = actions;
    for (const h1 of doc.querySelectorAll('h1')) h1.tabIndex = -1; // focus targets
    const count = this.#el('best-count');
    count.replaceChildren(...BEST_COUNTS.map((n) => new Option(String(n), String(n))));
    count.value = '2';
    this.#el('payment-outcomes').replaceChildren(...PAYMENT_OUTCOMES.map((o, k) => this.#outcomeRadio(o, k === 0)));
  }

  #outcomeRadio({ prefix, label }, checked) {
    const doc = this.#doc;
    const wrap = doc.createElement('label');
    wrap.className = 'payment-outcome';
    const radio = doc.createElement('input');
    radio.type = 'radio';
    radio.name = 'payment-outcome';
    radio.value = prefix;
    radio.checked = checked;
    wrap.append(radio, ` ${label}`);
    return wrap;
  }

  // ------------------------------------------------------------ the page

  title(phase, queue) {
    this.#doc.title = pageTitle(phase, queue, this.#format);
  }

  /** `conn`: `{status, at, restarting}` from the socket; `now` on our clock. */
  connection({ status, at, restarting }, now) {
    const secs = Math.max(1, Math.ceil((at - now) / 1000));
    const text = {
      connecting: 'Connecting…',
      open: 'Live',
      retrying: restarting ? `Server restarting · ${secs} s` : `Reconnecting in ${secs} s`,
      offline: 'Offline · waiting for network',
    }[status];
    this.#el('conn').dataset.state = status;
    // Numbers shown while disconnected are the last we heard, not live: say
    // so by fading them rather than by hiding where the buyer stood.
    this.#el('room-view').classList.toggle('is-stale', status !== 'open');
    setText(this.#el('conn-text'), text);
  }

  identity(identity) {
    const user = identity?.user;
    setText(this.#el('whoami'), user ? `Visitor ${user.slice(0, 10)}… · your place is kept on this device` : '');
  }

  events(phase, events, error) {
    this.#el('events-view').hidden = phase !== 'browse';
    const status = error ?? (events.length ? '' : 'Loading events…');
    setText(this.#el('events-status'), status);
    this.#el('events-status').hidden = !status;
    if (this.#shownEvents !== events) {
      this.#shownEvents = events;
      this.#el('events').replaceChildren(...events.map((event) => this.#eventCard(event)));
    }
  }

  #eventCard(event) {
    const fmt = this.#format;
    const card = this.#el('event-card').content.firstElementChild.cloneNode(true);
    card.querySelector('.event-name').textContent = event.name;
    card.querySelector('.event-paused').hidden = !event.paused;
    const onSale = Date.parse(event.on_sale_at) > Date.now() ? ` · on sale from ${fmt.date(event.on_sale_at)}` : '';
    card.querySelector('.event-when').textContent = `${fmt.date(event.starts_at)}${onSale}`;
    const rows = event.tiers.map((tier) => {
      const row = this.#doc.createElement('tr');
      const name = this.#doc.createElement('th');
      name.scope = 'row';
      name.textContent = tier.name;
      const price = this.#doc.createElement('td');
      price.textContent = fmt.money(tier.price, event.currency);
      row.append(name, price);
      return row;
    });
    card.querySelector('tbody').replaceChildren(...rows);
    const join = card.querySelector('.event-join');
    join.setAttribute('aria-label', `Join the queue for ${event.name}`);
    join.addEventListener('click', () => this.#actions.join(event));
    return card;
  }

  /**
   * The waiting room. `name` is the event's; `queue` the last `queue`
   * message and `start` the far end of the progress bar while waiting;
   * `expiresAtMs` (our clock) the end of the window and `now` (the
   * server's) the time once admitted.
   */
  room({ phase, name, queue, start, expiresAtMs, now }) {
    this.#el('room-view').hidden = phase === 'browse';
    if (phase === 'browse') return;
    setText(this.#el('room-event'), name);
    this.#el('joining').hidden = phase !== 'joining';
    this.#el('waiting').hidden = phase !== 'waiting';
    this.#el('admitted').hidden = phase !== 'admitted';
    this.#el('expired').hidden = phase !== 'expired';
    this.#el('leave').hidden = phase === 'expired';
    setText(this.#el('leave'), phase === 'admitted' ? 'Give up my turn' : 'Leave the queue');
    this.#el('back').hidden = phase !== 'expired';
    if (phase === 'waiting') this.#waiting(queuePanel(queue, start, this.#format));
    if (phase === 'admitted') {
      setText(this.#el('window-end'), admittedPanel(expiresAtMs, now, this.#format).windowEnd);
      this.countdown(expiresAtMs, now);
    }
  }

  #waiting(panel) {
    setText(this.#el('position'), panel.position);
    setText(this.#el('ahead'), panel.ahead);
    const progress = this.#el('progress');
    progress.setAttribute('aria-valuenow', String(panel.progress));
    progress.setAttribute('aria-valuetext', panel.progressText);
    this.#el('progress-fill').style.width = `${panel.progress}%`;
    setText(this.#el('eta'), panel.eta);
    setText(this.#el('rate'), panel.rate);
    this.#el('paused').hidden = !panel.paused;
  }

  countdown(expiresAtMs, now) {
    setText(this.#el('countdown'), admittedPanel(expiresAtMs, now, this.#format).countdown);
  }

  /** `source` lets a later success clear only the alerts it makes stale. */
  alert(message, source = 'general') {
    setText(this.#el('alert-text'), message);
    this.#el('alert').dataset.source = source;
    this.#el('alert').hidden = false;
  }

  hideAlert(source) {
    if (source && this.#el('alert').dataset.source !== source) return;
    this.#el('alert').hidden = true;
  }

  notice(text) {
    setText(this.#el('notice'), text);
    this.#el('notice').hidden = !text;
  }

  confirm(question) {
    return this.#doc.defaultView.confirm(question);
  }

  /** Moves focus to the visible waiting-room heading so screen readers
   *  follow the change of view. */
  focusRoom() {
    this.#doc.querySelector('#room-view .panel:not([hidden]) h1')?.focus();
  }

  focusEvents() {
    this.#el('events-title').focus();
  }

  // ------------------------------------------------------ the seat panel

  /**
   * The seat map panel: a preview while waiting, the shop once admitted.
   * `seats` is the buyer's BuyerSeats; `live` says holds and releases can
   * be sent; `holdingNow` that a hold is on its way; `now` is the server's
   * time. Says whether the panel is shown.
   */
  seats({ visible, admitted, seats, currency, message, live, holdingNow, now }) {
    this.#el('seats-view').hidden = !visible;
    this.#doc.body.classList.toggle('has-seatmap', visible);
    const canvas = this.#canvas;
    if (!visible) {
      if (canvas.map) canvas.clear();
      return false;
    }
    setText(this.#el('seats-title'), admitted ? 'Choose your seats' : 'Seat map preview');
    this.#el('seats-preview').hidden = admitted;
    this.#el('shop').hidden = !admitted;
    if (seats.map !== canvas.map) {
      if (seats.map) canvas.show(seats.map);
      else canvas.clear();
    }
    this.#seatSummary(seats.map);
    this.#legend(seats.map?.tiers ?? [], currency);
    this.seatMessage(message);
    if (admitted) {
      this.#selection(seats, currency, live, holdingNow);
      this.#holds(seats, currency, live, now);
    }
    return true;
  }

  #seatSummary(map) {
    const fmt = this.#format;
    const summary = map ? `${fmt.plural(map.seats.length, 'seat', 'seats')}, ${fmt.number(map.free)} free` : 'Loading the seat map…';
    const el = this.#el('seatmap-summary');
    setText(el, summary);
    el.dataset.total = String(map?.seats.length ?? 0);
    el.dataset.free = String(map?.free ?? 0);
    el.dataset.version = String(map?.version ?? '');
    this.#el('seat-canvas').setAttribute('aria-label', `Seat map: ${summary}`);
  }

  /** Tier colours with their prices, then the looks that are not tiers. */
  #legend(tiers, currency) {
    const key = JSON.stringify([tiers, currency]);
    if (key === this.#shownTiers) return;
    this.#shownTiers = key;
    const fmt = this.#format;
    const item = (look, swatchColour, label) => {
      const li = this.#doc.createElement('li');
      li.dataset.look = look;
      const swatch = this.#doc.createElement('span');
      swatch.className = `swatch swatch-${look}`;
      swatch.style.setProperty('--swatch', swatchColour);
      swatch.setAttribute('aria-hidden', 'true');
      li.append(swatch, label);
      return li;
    };
    const items = tiers.map((tier, k) => {
      const li = item('free', `var(--tier-${(k % TIER_COLOUR_COUNT) + 1})`, `${tier.name} ${fmt.money(tier.price, currency)}`);
      li.dataset.tier = tier.id;
      return li;
    });
    items.push(
      item('selected', 'var(--seat-selected)', 'Selected'),
      item('mine', 'var(--seat-mine)', 'Held by you'),
      item('taken', 'var(--seat-taken)', 'Taken'),
      item('sold', 'var(--seat-sold)', 'Sold'),
    );
    this.#el('legend').replaceChildren(...items);
    const options = tiers.map((tier) => new Option(`${tier.name} · ${fmt.money(tier.price, currency)}`, tier.id));
    const select = this.#el('best-tier');
    const choice = select.value;
    select.replaceChildren(new Option('Any tier', ''), ...options);
    select.value = tiers.some((t) => t.id === choice) ? choice : '';
  }

  /** `message`: `{text, kind}` or null. */
  seatMessage(message) {
    this.#el('seat-message').hidden = !message;
    if (!message) return;
    this.#el('seat-message').dataset.kind = message.kind;
    setText(this.#el('seat-message-text'), message.text);
  }

  /** Says `text` to screen readers once (a live region), then clears it so
   *  that the words are not met a second time beside the visible message. */
  announce(text) {
    const region = this.#el('seat-announcer');
    region.textContent = text;
    clearTimeout(this.#announceTimer);
    this.#announceTimer = setTimeout(() => {
      region.textContent = '';
    }, ANNOUNCE_MS);
  }

  /** A seat in words, for the line under the map (read out to keyboard users). */
  describeSeat({ seat, tier, look, admitted, currency }) {
    const price = tier ? ` · ${tier.name} ${this.#format.money(tier.price, currency)}` : '';
    let status = LOOK_WORDS[look];
    if (look === 'free' && !admitted) status += ": you can choose seats once it's your turn";
    setText(this.#el('seat-info'), `${seat.id}: section ${seat.section}, row ${seat.row}, seat ${seat.number}${price} · ${status}`);
  }

  /** The "best available" form's choice. */
  bestChoice() {
    return { count: Number(this.#el('best-count').value), tier: this.#el('best-tier').value || null };
  }

  #selection(seats, currency, live, holdingNow) {
    const fmt = this.#format;
    const ids = [...seats.selected];
    const total = ids.reduce((sum, id) => sum + seats.priceOf(id), 0);
    setText(
      this.#el('selection-text'),
      ids.length ? `${fmt.plural(ids.length, 'seat', 'seats')} selected · ${fmt.money(total, currency)}` : 'Click free seats on the map to select them.',
    );
    const list = this.#el('selection-list');
    const key = ids.join(' ');
    if (list.dataset.key !== key) {
      list.dataset.key = key;
      list.replaceChildren(...ids.map((id) => this.#selectionChip(id)));
    }
    const hold = this.#el('hold-selected');
    hold.disabled = !ids.length || !live;
    setText(hold, holdingNow ? 'Holding…' : ids.length ? `Hold ${fmt.plural(ids.length, 'seat', 'seats')}` : 'Hold seats');
    this.#el('clear-selection').hidden = !ids.length;
    this.#el('best-submit').disabled = !live;
  }

  #selectionChip(id) {
    const li = this.#doc.createElement('li');
    const button = this.#doc.createElement('button');
    button.type = 'button';
    button.className = 'chip';
    button.textContent = `${id} ✕`;
    button.setAttribute('aria-label', `Unselect ${id}`);
    button.addEventListener('click', () => this.#actions.unselect(id));
    li.append(button);
    return li;
  }

  /** The buyer's held seats, rebuilt only when they change; the countdowns
   *  tick in holdCountdowns. */
  #holds(seats, currency, live, now) {
    const fmt = this.#format;
    const ids = seats.holds.flatMap((hold) => hold.seats);
    const total = ids.reduce((sum, id) => sum + seats.priceOf(id), 0);
    this.#el('holds-empty').hidden = ids.length > 0;
    this.#el('holds-total').hidden = !ids.length;
    setText(this.#el('holds-total'), `Total ${fmt.money(total, currency)} for ${fmt.plural(ids.length, 'seat', 'seats')}`);
    this.#el('release-all').hidden = !ids.length;
    this.#el('release-all').disabled = !live;
    for (const button of this.#el('hold-list').querySelectorAll('button')) button.disabled = !live;
    // Prices and tiers come from the map: a new map may name them first.
    if (this.#shownHolds?.holds === seats.holds && this.#shownHolds.map === seats.map) return;
    this.#shownHolds = { holds: seats.holds, map: seats.map };
    this.#el('hold-list').replaceChildren(...seats.holds.map((hold) => this.#holdItem(hold, seats, currency, live)));
    this.holdCountdowns(seats.holds, now);
  }

  #holdItem(hold, seats, currency, live) {
    const doc = this.#doc;
    const names = formatSeatList(hold.seats);
    const li = doc.createElement('li');
    li.className = 'hold';
    li.dataset.seats = hold.seats.join(' ');
    const what = doc.createElement('p');
    what.className = 'hold-seats';
    const strong = doc.createElement('strong');
    strong.textContent = names;
    const tiers = doc.createElement('span');
    tiers.className = 'muted';
    tiers.textContent = ` · ${tierSummary(hold.seats, seats)}`;
    what.append(strong, tiers);
    const meta = doc.createElement('p');
    meta.className = 'hold-meta';
    const price = doc.createElement('span');
    price.className = 'hold-price';
    price.textContent = this.#format.money(hold.seats.reduce((sum, id) => sum + seats.priceOf(id), 0), currency);
    const timer = doc.createElement('span');
    timer.className = 'hold-timer';
    const clock = doc.createElement('span');
    clock.className = 'hold-countdown';
    clock.setAttribute('role', 'timer');
    timer.append('held for ', clock);
    meta.append(price, ' · ', timer);
    const show = doc.createElement('button');
    show.type = 'button';
    show.className = 'link-button small hold-show';
    show.textContent = 'Show on map';
    show.setAttribute('aria-label', `Show ${names} on the map`);
    show.addEventListener('click', () => this.#actions.showOnMap(hold.seats));
    meta.append(' · ', show);
    const release = doc.createElement('button');
    release.type = 'button';
    release.className = 'button button-secondary button-small';
    release.textContent = 'Release';
    release.setAttribute('aria-label', `Release ${names}`);
    release.disabled = !live;
    release.addEventListener('click', () => this.#actions.release(hold.seats));
    li.append(what, meta, release);
    return li;
  }

  /** The countdown of each hold at `now` (the server's time). */
  holdCountdowns(holds, now) {
    const items = this.#el('hold-list').children;
    holds.forEach((hold, k) => {
      const left = hold.expiresAtMs - now;
      items[k]?.classList.toggle('is-ending', left < 60_000);
      const clock = items[k]?.querySelector('.hold-countdown');
      if (clock) setText(clock, formatClock(left));
    });
  }

  // -------------------------------------------------- the checkout panel

  /**
   * The checkout panel: the coupon choice and "Check out" (`choices`
   * `[{value, label}]`, `choice`), then the order (checkout.js' orderView
   * with `state`, `stateText`, `countdown`, `outcome`, `paying`,
   * `cancelling`) with its payment step, and `message` (`{text, kind}`)
   * under the buttons. `controls` says which buttons show and work
   * (checkout.js' panelControls).
   */
  checkout({ visible, choices, choice, checkingOut, controls, order, message }) {
    this.#el('checkout-view').hidden = !visible;
    if (!visible) return;
    const select = this.#el('checkout-coupon');
    const key = JSON.stringify(choices);
    if (select.dataset.key !== key) {
      select.dataset.key = key;
      select.replaceChildren(...choices.map((c) => new Option(c.label, c.value)));
    }
    if (select.value !== choice) select.value = choice;
    const form = this.#el('checkout-form');
    form.hidden = !controls.checkout.shown;
    const button = this.#el('checkout');
    button.disabled = !controls.checkout.enabled;
    select.disabled = !controls.checkout.enabled;
    setText(button, checkingOut ? 'Checking out…' : 'Check out');
    this.#order(order, controls);
    const said = this.#el('checkout-message');
    said.dataset.kind = message?.kind ?? '';
    setText(said, message?.text ?? '');
  }

  #order(order, controls) {
    this.#el('order').hidden = !order;
    if (!order) return;
    const box = this.#el('order');
    box.dataset.order = order.id;
    box.dataset.state = order.state;
    setText(this.#el('order-heading'), order.heading);
    const badge = this.#el('order-state');
    badge.dataset.state = order.state;
    setText(badge, order.stateText);
    const body = this.#el('order-lines').tBodies[0];
    const key = JSON.stringify(order.lines);
    if (body.dataset.key !== key) {
      body.dataset.key = key;
      body.replaceChildren(...order.lines.map((line) => this.#orderLine(line)));
    }
    setText(this.#el('order-subtotal'), order.subtotal);
    setText(this.#el('order-discount'), order.discount);
    setText(this.#el('order-total'), order.total);
    setText(this.#el('order-coupon'), order.coupon);
    setText(this.#el('order-coupon-reason'), order.couponReason);
    this.#el('order-coupon-reason').hidden = !order.couponReason;
    this.orderCountdown(order.countdown);
    this.#el('payment-form').hidden = !controls.pay.shown;
    const pay = this.#el('pay');
    pay.disabled = !controls.pay.enabled;
    setText(pay, order.paying ? 'Paying…' : order.payLabel);
    const cancel = this.#el('cancel-order');
    cancel.disabled = !controls.cancel.enabled;
    setText(cancel, order.cancelling ? 'Cancelling…' : 'Cancel order');
    for (const radio of this.#el('payment-outcomes').querySelectorAll('input')) radio.disabled = !controls.pay.enabled;
    const refund = this.#el('refund-order');
    refund.hidden = !controls.refund.shown;
    refund.disabled = !controls.refund.enabled;
    setText(refund, order.cancelling ? 'Asking for a refund…' : 'Cancel and refund');
    const outcome = this.#el('order-outcome');
    outcome.dataset.kind = order.outcome?.kind ?? '';
    setText(outcome, order.outcome?.text ?? '');
  }

  #orderLine({ seat, tier, price }) {
    const doc = this.#doc;
    const row = doc.createElement('tr');
    const name = doc.createElement('th');
    name.scope = 'row';
    name.textContent = seat;
    const what = doc.createElement('td');
    what.textContent = tier;
    const cost = doc.createElement('td');
    cost.textContent = price;
    row.append(name, what, cost);
    return row;
  }

  /** "Pay within 9:41", ticking once a second. */
  orderCountdown(text) {
    const el = this.#el('order-countdown');
    setText(el, text);
    el.hidden = !text;
  }

  /** The coupon choice of the checkout form. */
  checkoutChoice() {
    return this.#el('checkout-coupon').value;
  }

  /** The demo payment outcome chosen (a payment_key prefix). */
  paymentChoice() {
    return this.#el('payment-outcomes').querySelector('input:checked')?.value ?? PAYMENT_OUTCOMES[0].prefix;
  }

  /** "My orders": checkout.js' orderListItem per order, newest first.
   *  Items are kept by order and changed in place. */
  orders({ items, status, stale }) {
    const statusEl = this.#el('orders-status');
    setText(statusEl, status);
    statusEl.hidden = !status;
    const list = this.#el('orders');
    list.classList.toggle('is-stale', stale);
    const kept = new Map([...list.children].map((li) => [li.dataset.order, li]));
    const lis = items.map((item) => {
      const li = kept.get(item.id) ?? this.#orderItem(item.id);
      this.#fillOrderItem(li, item);
      return li;
    });
    if (lis.length !== list.children.length || lis.some((li, k) => list.children[k] !== li)) list.replaceChildren(...lis);
    setText(this.#el('orders-title'), items.length ? `My orders (${this.#format.number(items.length)})` : 'My orders');
  }

  #orderItem(id) {
    const doc = this.#doc;
    const li = doc.createElement('li');
    li.className = 'order-item';
    li.dataset.order = id; // to find it by; never shown
    const head = doc.createElement('p');
    head.className = 'order-item-head';
    const seats = doc.createElement('strong');
    seats.className = 'order-item-seats';
    const badge = doc.createElement('span');
    badge.className = 'badge order-item-status';
    head.append(seats, ' ', badge);
    const meta = doc.createElement('p');
    meta.className = 'order-item-meta muted small';
    const total = doc.createElement('span');
    total.className = 'order-item-total';
    const when = doc.createElement('span');
    when.className = 'order-item-when';
    const event = doc.createElement('span');
    event.className = 'order-item-event';
    meta.append(total, ' · ', when, event);
    li.append(head, meta);
    return li;
  }

  #fillOrderItem(li, { status, statusText, seats, total, when, event }) {
    li.dataset.status = status;
    setText(li.querySelector('.order-item-seats'), seats);
    const badge = li.querySelector('.order-item-status');
    badge.dataset.state = status;
    setText(badge, statusText);
    setText(li.querySelector('.order-item-total'), total);
    setText(li.querySelector('.order-item-when'), when);
    setText(li.querySelector('.order-item-event'), event ? ` · ${event}` : '');
  }

  // ---------------------------------------------------- the coupon panel

  /**
   * The coupon panel: the campaigns (from coupons.js' campaignView, with
   * `forEvents`, `busy` and `outcome`), each with its claim button and what
   * the last claim came to, and the buyer's coupons (couponView). Campaign
   * items are kept by campaign and changed in place, so that a button keeps
   * its focus over a refresh and an outcome's live region is in the page
   * before its words change.
   */
  coupons({ visible, campaigns, campaignsStatus, campaignsStale, mine, mineStatus, mineStale }) {
    const panel = this.#el('coupons-view');
    panel.hidden = !visible;
    if (!visible) return;
    const status = this.#el('campaigns-status');
    setText(status, campaignsStatus);
    status.hidden = !campaignsStatus;
    const list = this.#el('campaigns');
    list.classList.toggle('is-stale', campaignsStale);
    const kept = new Map([...list.children].map((li) => [li.dataset.campaign, li]));
    const items = campaigns.map((campaign) => {
      const li = kept.get(campaign.id) ?? this.#campaignItem(campaign.id);
      this.#fillCampaign(li, campaign);
      return li;
    });
    // Rebuilt only when the list itself changed: moving a node drops its focus.
    if (items.length !== list.children.length || items.some((li, k) => list.children[k] !== li)) list.replaceChildren(...items);

    const mineStatusEl = this.#el('my-coupons-status');
    setText(mineStatusEl, mineStatus);
    mineStatusEl.hidden = !mineStatus;
    const mineList = this.#el('my-coupons');
    mineList.classList.toggle('is-stale', mineStale);
    const key = JSON.stringify(mine);
    if (mineList.dataset.key !== key) {
      mineList.dataset.key = key;
      mineList.replaceChildren(...mine.map((coupon) => this.#couponItem(coupon)));
    }
    setText(this.#el('my-coupons-title'), mine.length ? `My coupons (${this.#format.number(mine.length)})` : 'My coupons');
  }

  #campaignItem(id) {
    const li = this.#el('campaign-item').content.firstElementChild.cloneNode(true);
    li.dataset.campaign = id; // what to claim; never shown
    const button = li.querySelector('.campaign-claim');
    button.addEventListener('click', () => {
      if (button.getAttribute('aria-disabled') !== 'true') this.#actions.claim(id);
    });
    return li;
  }

  #fillCampaign(li, { name, terms, availability, claimable, forEvents, busy, outcome }) {
    setText(li.querySelector('.campaign-name'), name);
    // Empty rather than hidden when the name says the terms: the row stays,
    // lined up with the neighbours' (see .campaign in style.css).
    setText(li.querySelector('.campaign-terms'), terms);
    const where = forEvents.length ? ` · for ${formatList(forEvents)}` : '';
    setText(li.querySelector('.campaign-stock'), `${availability}${where}`);
    li.classList.toggle('is-closed', !claimable);
    const button = li.querySelector('.campaign-claim');
    // aria-disabled, not disabled: a campaign that sells out under the
    // buyer's focus keeps the focus where it was.
    button.setAttribute('aria-disabled', String(!claimable && !busy));
    setText(button, busy ? 'Claiming…' : 'Claim');
    button.setAttribute('aria-label', `${busy ? 'Claiming' : 'Claim'} ${name}`);
    button.setAttribute('aria-busy', String(busy));
    const said = li.querySelector('.campaign-outcome');
    said.dataset.kind = outcome?.kind ?? '';
    setText(said, outcome?.text ?? '');
  }

  #couponItem({ name, terms, expiry, events }) {
    const doc = this.#doc;
    const li = doc.createElement('li');
    li.className = 'my-coupon';
    const title = doc.createElement('p');
    title.className = 'my-coupon-name';
    title.textContent = name;
    const what = doc.createElement('p');
    what.className = 'my-coupon-terms';
    what.textContent = terms;
    const when = doc.createElement('p');
    when.className = 'my-coupon-expiry muted small';
    when.textContent = events ? `${expiry} · ${events}` : expiry;
    li.append(title, ...(terms ? [what] : []), when);
    return li;
  }

  #el(id) {
    return this.#doc.getElementById(id);
  }
}

/** "VIP ×2, R" */
function tierSummary(ids, seats) {
  const counts = new Map();
  for (const id of ids) {
    const i = seats.map?.index.get(id);
    const name = (i === undefined ? null : seats.tierOf(seats.map.seats[i])?.name) ?? '?';
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, n]) => (n > 1 ? `${name} ×${n}` : name)).join(', ');
}
