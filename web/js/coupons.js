// Coupon campaigns and the buyer's coupons the way a buyer reads them: what
// a coupon takes off, how many are left, whether one can be claimed now,
// what a claim came to, and in which order to list them. Works on the
// server's campaign objects (GET …/campaigns) and coupon objects (the
// `coupon` message, `coupons`, GET /api/v1/me/coupons), never shows their
// ids. Pure: no DOM, no clock reads (callers pass `now`, in ms on the
// server's clock), so `node --test` imports it as is.

import { describeError } from './errors.js';
import { formatList } from './format.js';

// Currencies whose amounts read best as a number and a word ("10,000 won"),
// the word said once per sentence; the others carry their symbol ("$5.00").
const CURRENCY_WORDS = { KRW: 'won' };

/** Campaign states, in the order they are listed. */
export const CAMPAIGN_STATES = ['open', 'upcoming', 'paused', 'sold_out', 'ended'];

/**
 * What the words about one offer need to know of the events it is for:
 * `currency` (null when unknown or mixed), `tierNames` (tier id → name) and
 * `eventNames` (the events' names, for a coupon). `eventIds` null means
 * "any of `events`".
 */
export function offerContext(events, eventIds = null) {
  const ids = eventIds ?? events.map((e) => e.id);
  const mine = events.filter((e) => ids.includes(e.id));
  const currencies = [...new Set(mine.map((e) => e.currency))];
  const tierNames = new Map();
  for (const event of mine) for (const tier of event.tiers ?? []) if (!tierNames.has(tier.id)) tierNames.set(tier.id, tier.name);
  return {
    currency: currencies.length === 1 ? currencies[0] : null,
    tierNames,
    eventNames: eventIds == null ? [] : mine.map((e) => e.name),
  };
}

/** An amount of money: "10,000 won" (or "10,000" once the word was said,
 *  `unit: false`), else with the currency's symbol; a plain number when the
 *  currency is unknown. */
export function amountText(amount, currency, format, { unit = true } = {}) {
  const word = CURRENCY_WORDS[currency];
  if (word) return unit ? `${format.number(amount)} ${word}` : format.number(amount);
  return format.money(amount, currency);
}

/**
 * What an offer (a campaign or a coupon) takes off, in one line:
 * "10,000 won off, min. spend 50,000", "10% off, up to 30,000 won",
 * "5,000 won off, VIP and R seats only".
 */
export function discountTerms(offer, { format, currency = null, tierNames = new Map() }) {
  let said = false;
  const amount = (n) => {
    const text = amountText(n, currency, format, { unit: !said });
    said = true;
    return text;
  };
  const parts = [];
  if (offer.kind === 'percent') {
    parts.push(`${format.number(offer.value)}% off`);
    if (offer.max_discount != null) parts.push(`up to ${amount(offer.max_discount)}`);
  } else {
    parts.push(`${amount(offer.value)} off`);
  }
  if (offer.min_spend > 0) parts.push(`min. spend ${amount(offer.min_spend)}`);
  if (offer.tiers?.length) {
    const names = offer.tiers.map((id) => tierNames.get(id));
    parts.push(names.every(Boolean) ? `${formatList(names)} seats only` : 'some seat tiers only');
  }
  return parts.join(', ');
}

/** "300 coupons left", "1 coupon left", "Sold out"; null for unlimited stock. */
export function stockText(campaign, format) {
  if (campaign.remaining == null) return null;
  if (campaign.remaining <= 0) return 'Sold out';
  return format.plural(campaign.remaining, 'coupon left', 'coupons left');
}

/**
 * open (claimable now), upcoming, paused, sold_out or ended. The server's
 * `active` was true when the list was read; the clock only ends a campaign
 * between two reads.
 */
export function campaignState(campaign, now) {
  if (now >= Date.parse(campaign.ends_at)) return 'ended';
  if (campaign.remaining != null && campaign.remaining <= 0) return 'sold_out';
  if (campaign.active) return 'open';
  return now < Date.parse(campaign.starts_at) ? 'upcoming' : 'paused';
}

/** The line under a campaign's terms: how many are left and until when, or
 *  why it cannot be claimed. */
export function availabilityText(campaign, now, format) {
  switch (campaignState(campaign, now)) {
    case 'open': {
      const until = `claim by ${format.dateWithZone(campaign.ends_at)}`;
      const stock = stockText(campaign, format);
      return stock ? `${stock} · ${until}` : `No limit · ${until}`;
    }
    case 'upcoming':
      return `Opens ${format.dateWithZone(campaign.starts_at)}`;
    case 'paused':
      return 'Paused by the organiser';
    case 'sold_out':
      return 'Sold out';
    default:
      return 'Ended';
  }
}

/** Whether a seller's name for an offer already says its terms
 *  ("10% off, up to 30,000 won"): then they are not said twice. */
export function saysTerms(name, terms) {
  const words = (text) => text.toLowerCase().replace(/[^\p{L}\p{N}%]+/gu, ' ').trim();
  return words(name) === words(terms);
}

/** A campaign as listed: `{id, name, terms, availability, claimable}`,
 *  `terms` empty when the name says them. `id` is for the page to claim
 *  with, never to show. */
export function campaignView(campaign, now, ctx) {
  const terms = discountTerms(campaign, ctx);
  return {
    id: campaign.id,
    name: campaign.name,
    terms: saysTerms(campaign.name, terms) ? '' : terms,
    availability: availabilityText(campaign, now, ctx.format),
    claimable: campaignState(campaign, now) === 'open',
  };
}

/** Claimable ones first, then those opening soonest, paused, sold out;
 *  among equals the one that ends first, then by name. */
export function sortCampaigns(campaigns, now) {
  const rank = (c) => CAMPAIGN_STATES.indexOf(campaignState(c, now));
  const when = (c) => Date.parse(campaignState(c, now) === 'upcoming' ? c.starts_at : c.ends_at);
  return [...campaigns].sort((a, b) => rank(a) - rank(b) || when(a) - when(b) || a.name.localeCompare(b.name));
}

/** The campaigns of several events (`[{event, campaigns}]`), each once:
 *  `[{campaign, events: [event ids]}]`. */
export function mergeCampaigns(lists) {
  const byId = new Map();
  for (const { event, campaigns } of lists) {
    for (const campaign of campaigns) {
      const entry = byId.get(campaign.id);
      if (entry) entry.events.push(event);
      else byId.set(campaign.id, { campaign, events: [event] });
    }
  }
  return [...byId.values()];
}

/** The buyer's coupons still good at `now`, soonest to expire first. */
export function liveCoupons(coupons, now) {
  return coupons
    .filter((c) => Date.parse(c.expires_at) > now)
    .sort((a, b) => Date.parse(a.expires_at) - Date.parse(b.expires_at) || a.name.localeCompare(b.name));
}

/** One of the buyer's coupons: `{name, terms, expiry, events}` (`terms`
 *  empty when the name says them). */
export function couponView(coupon, ctx) {
  const terms = discountTerms(coupon, ctx);
  return {
    name: coupon.name,
    terms: saysTerms(coupon.name, terms) ? '' : terms,
    expiry: `Valid until ${ctx.format.dateWithZone(coupon.expires_at)}`,
    events: ctx.eventNames.length ? `For ${formatList(ctx.eventNames)}` : '',
  };
}

/** A server message ("this campaign has not started yet") as a sentence. */
export function sentence(message) {
  const text = String(message ?? '').trim();
  if (!text) return '';
  const capital = text[0].toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/** What a campaign shows for a coupon of it the buyer holds. */
export function heldOutcome(coupon, ctx) {
  return { kind: 'ok', text: `Yours: ${discountTerms(coupon, ctx)}. Valid until ${ctx.format.dateWithZone(coupon.expires_at)}.` };
}

/**
 * What a claim came to, shown beside its button: the `coupon` reply, or the
 * error (an `error` frame or a RequestError, local `disconnected` and
 * `timeout` included) that answered it. `{kind: ok | warn | error, text}`.
 */
export function claimOutcome(reply, ctx) {
  if (reply.type === 'coupon') return heldOutcome(reply, ctx);
  switch (reply.code) {
    case 'already_claimed':
      return { kind: 'warn', text: 'Already claimed: it is one per buyer, and you have had yours.' };
    case 'sold_out':
      return { kind: 'warn', text: 'Sold out: every coupon of this offer has been claimed.' };
    case 'not_active':
      return { kind: 'warn', text: sentence(reply.message) || 'This offer cannot be claimed right now.' };
    case 'not_found':
      return { kind: 'warn', text: 'This offer is no longer available.' };
    case 'rate_limited':
      return { kind: 'warn', text: 'Too many tries just now. Wait a moment and try again.' };
    case 'unavailable':
      return { kind: 'error', text: 'Coupons are briefly unavailable. Nothing was claimed; try again in a moment.' };
    case 'disconnected':
      return { kind: 'error', text: 'Not connected to the server, so nothing was claimed. Try again once it says Live.' };
    case 'timeout':
      return { kind: 'error', text: 'The server did not answer in time. Check My coupons below: the claim may have gone through.' };
    default:
      return { kind: 'error', text: sentence(describeError(reply)) };
  }
}

/** Outcomes that say the connection failed: a reconnect makes them stale. */
export function isConnectionOutcome(reply) {
  return reply.code === 'disconnected' || reply.code === 'timeout';
}
