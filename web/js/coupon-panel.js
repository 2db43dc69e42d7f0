// The coupon panel's behaviour: the campaigns of the events in view (read
// over REST every few seconds while the page is visible), claiming a
// coupon over the socket with its outcome beside the button, and the
// buyer's own coupons (asked for on every `hello` and after each claim).
// The words come from coupons.js; the View draws them.

import { api } from './api.js';
import {
  campaignView,
  claimOutcome,
  couponView,
  heldOutcome,
  isConnectionOutcome,
  liveCoupons,
  mergeCampaigns,
  offerContext,
  sortCampaigns,
} from './coupons.js';
import { describeError } from './errors.js';

/** How often the campaign list (and so the stock left) is read again. */
export const CAMPAIGNS_REFRESH_MS = 5_000;

export class CouponPanel {
  /** The page: its `place`, `events`, `serverNow()`. */
  #page;
  #socket;
  #view;
  #format;
  /** event id -> that event's campaigns, from the last good read. */
  #campaigns = new Map();
  /** Why the last read failed, or null. */
  #campaignsError = null;
  /** The events the last read asked about, joined by spaces. */
  #scopeKey = null;
  /** Reads started, and the newest one applied: an answer older than that
   *  is dropped, so a poll sent before a claim cannot undo the read after it. */
  #reads = 0;
  #appliedRead = 0;
  /** Reads on their way; a poll waits for a slow server instead of piling up. */
  #inFlight = 0;
  /** The buyer's coupons from the last `coupons` answer; null before one. */
  #mine = null;
  #mineError = null;
  #mineAsks = 0;
  /** campaign id -> the reply to its last claim (`coupon` or an error). */
  #outcomes = new Map();
  /** Campaign ids with a claim on its way. */
  #claiming = new Set();
  #visible = true;
  /** Told whenever the buyer's coupons change (the checkout offers them). */
  #onMine;

  constructor({ page, socket, view, format, onMine = () => {} }) {
    this.#page = page;
    this.#onMine = onMine;
    this.#socket = socket;
    this.#view = view;
    this.#format = format;
  }

  /** The buyer's coupons as last heard (unused and valid when read), for
   *  the checkout's coupon choice; empty before the first answer. */
  get mine() {
    return this.#mine ?? [];
  }

  /** Reads the campaigns every CAMPAIGNS_REFRESH_MS while the page is
   *  visible (the first read happens when render() first sees events). */
  start() {
    setInterval(() => {
      if (!this.#visible) return;
      if (!this.#inFlight) this.refresh();
      if (this.#mine === null || this.#mineError) this.refreshMine(); // a failed ask is retried
    }, CAMPAIGNS_REFRESH_MS);
  }

  /** The tab was hidden or shown again; shown, it catches up at once. */
  onVisibility(visible) {
    const back = visible && !this.#visible;
    this.#visible = visible;
    if (back) {
      this.refresh();
      this.refreshMine();
    }
  }

  /** A new socket (after each `hello`): the buyer's coupons may have changed
   *  meanwhile (another tab, another device), and a connection failure
   *  beside a button is old news. */
  onOpen() {
    for (const [id, reply] of this.#outcomes) if (isConnectionOutcome(reply)) this.#outcomes.delete(id);
    this.refreshMine();
    this.render();
  }

  /** A `coupons` message, answering us or pushed. */
  onCoupons(frame) {
    if (frame.event) return; // a list for one event is not the whole of ours
    this.#mine = frame.coupons;
    this.#mineError = null;
    this.render();
    this.#onMine();
  }

  /** A `coupon` pushed to this buyer (claimed on another socket). */
  onCoupon(frame) {
    this.#remember(frame);
    this.render();
    this.#onMine();
  }

  /** Reads the campaigns of the events in view. */
  async refresh() {
    const ids = this.#scope();
    this.#scopeKey = ids.join(' ');
    if (!ids.length) return;
    const read = ++this.#reads;
    this.#inFlight += 1;
    let lists = null;
    let error = null;
    try {
      lists = await Promise.all(ids.map((id) => this.#campaignsOf(id)));
    } catch (err) {
      error = err;
    } finally {
      this.#inFlight -= 1;
    }
    if (read < this.#appliedRead) return;
    this.#appliedRead = read;
    if (lists) this.#campaigns = new Map(lists.map((campaigns, k) => [ids[k], campaigns]));
    this.#campaignsError = error; // on failure the last list stays up, marked as not fresh
    this.render();
  }

  /** Asks the socket for the buyer's coupons. */
  refreshMine() {
    if (!this.#socket.isOpen) return;
    const ask = ++this.#mineAsks;
    this.#socket.request({ type: 'coupons' }).then(
      (frame) => {
        if (ask === this.#mineAsks) this.onCoupons(frame);
      },
      (err) => {
        if (ask !== this.#mineAsks || err.code === 'disconnected') return; // the next `hello` asks again
        this.#mineError = err;
        this.render();
      },
    );
  }

  /** Claims a coupon of `campaign`; the outcome shows beside its button. */
  async claim(campaign) {
    if (this.#claiming.has(campaign)) return;
    this.#claiming.add(campaign);
    this.#outcomes.delete(campaign);
    this.render();
    try {
      const coupon = await this.#socket.request({ type: 'claim_coupon', campaign });
      this.#outcomes.set(campaign, coupon);
      this.#remember(coupon);
      this.#onMine();
    } catch (err) {
      this.#outcomes.set(campaign, err);
    } finally {
      this.#claiming.delete(campaign);
    }
    this.render();
    // What is left changed (ours or someone else's claim); a timeout may
    // have claimed all the same.
    this.refresh();
    this.refreshMine();
  }

  render() {
    const page = this.#page;
    const ids = this.#scope();
    if (ids.join(' ') !== this.#scopeKey) {
      // Joined or left an event, or the event list arrived.
      this.#scopeKey = ids.join(' ');
      queueMicrotask(() => this.refresh());
    }
    const now = page.serverNow();
    const live = this.#socket.isOpen;
    const merged = mergeCampaigns(ids.map((event) => ({ event, campaigns: this.#campaigns.get(event) ?? [] })));
    const eventsOf = new Map(merged.map((m) => [m.campaign.id, m.events]));
    const mine = liveCoupons(this.#mine ?? [], now);
    const campaigns = sortCampaigns(merged.map((m) => m.campaign), now).map((campaign) => {
      const ctx = this.#context(eventsOf.get(campaign.id));
      const reply = this.#outcomes.get(campaign.id);
      const held = mine.find((c) => c.campaign === campaign.id);
      return {
        ...campaignView(campaign, now, ctx),
        forEvents: ids.length > 1 ? ctx.eventNames : [],
        busy: this.#claiming.has(campaign.id),
        outcome: reply ? claimOutcome(reply, ctx) : held ? heldOutcome(held, ctx) : null,
      };
    });
    this.#view.coupons({
      visible: ids.length > 0,
      campaigns,
      campaignsStatus: this.#campaignsStatus(campaigns.length),
      campaignsStale: Boolean(this.#campaignsError),
      mineStale: !live,
      mine: mine.map((coupon) => couponView(coupon, this.#context(coupon.events))),
      mineStatus: this.#mineStatus(mine.length, live),
    });
  }

  /** The events whose campaigns are shown: the place's, else every one listed. */
  #scope() {
    const page = this.#page;
    return page.place ? [page.place.event] : page.events.map((e) => e.id);
  }

  #context(eventIds) {
    const events = [...this.#page.events];
    const { place } = this.#page;
    // After a reload into a place the event list may still be loading.
    if (place && !events.some((e) => e.id === place.event)) events.push({ id: place.event, name: place.name, currency: place.currency, tiers: [] });
    return { format: this.#format, ...offerContext(events, eventIds ?? null) };
  }

  async #campaignsOf(event) {
    try {
      return (await api(`/api/v1/events/${encodeURIComponent(event)}/campaigns`)).items;
    } catch (err) {
      if (err.code === 'not_found') return []; // the event is gone: no offers
      throw err;
    }
  }

  #remember(frame) {
    const { type, req, ...coupon } = frame;
    this.#mine = [...(this.#mine ?? []).filter((c) => c.coupon !== coupon.coupon), coupon];
  }

  #campaignsStatus(count) {
    if (this.#campaignsError) {
      const why = describeError(this.#campaignsError);
      return count ? `Could not refresh the offers (${why}). What is left may have changed; retrying…` : `Could not load the offers (${why}). Retrying…`;
    }
    if (this.#appliedRead === 0) return 'Loading coupon offers…';
    if (!count) return this.#page.place ? 'No coupon offers for this event right now.' : 'No coupon offers right now.';
    return '';
  }

  #mineStatus(count, live) {
    if (this.#mineError) return `Could not load your coupons (${describeError(this.#mineError)}). Retrying…`;
    if (this.#mine === null) return live ? 'Loading your coupons…' : 'Your coupons show here once we are connected.';
    return count ? '' : 'None yet. Coupons you claim are kept for you here until you use them at checkout.';
  }
}
