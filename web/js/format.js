// Numbers, money, dates, durations and seat lists the way a buyer reads
// them. Pure: no DOM, no clock reads, so `node --test` imports it as is.

/** ETAs beyond this are guesses; we say so instead of printing "312 h". */
export const LONG_WAIT_S = 24 * 3600;

// A no-break space keeps "4" and "min" together when the line wraps.
const NBSP = '\u00a0';

/** A duration as a number and a unit a person reads at a glance. */
export function durationParts(seconds) {
  if (seconds < 60) return [Math.max(1, Math.round(seconds)), 's'];
  if (seconds < 3600) return [Math.round(seconds / 60), 'min'];
  const hours = seconds / 3600;
  return [hours < 10 ? Math.round(hours * 10) / 10 : Math.round(hours), 'h'];
}

/** "9:41" or "1:02:03" for a countdown. Rounded, not ceiled: a window
 *  that is a few milliseconds over 10 min should read 10:00, not 10:01. */
export function formatClock(ms) {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/** "VIP", "VIP and R", "VIP, R and S". */
export function formatList(items) {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

/** "C-1-3", "C-1-3 and C-1-4", "C-1-3, C-1-4 and C-1-5". */
export function formatSeatList(ids) {
  return formatList(ids);
}

/**
 * The formatters of one locale. The page makes one from the document's
 * language; tests name a locale and a time zone so that the text is the
 * same on every machine.
 */
export class Format {
  #locale;
  #number;
  #date;
  #time;
  #zoned;
  /** Currency formatters by currency code, made on first use. */
  #money = new Map();

  constructor(locale, { timeZone } = {}) {
    this.#locale = locale;
    this.#number = new Intl.NumberFormat(locale);
    this.#date = new Intl.DateTimeFormat(locale, {
      weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', timeZone,
    });
    this.#time = new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', timeZone });
    this.#zoned = new Intl.DateTimeFormat(locale, {
      weekday: 'short', day: 'numeric', month: 'short', year: 'numeric', hour: '2-digit', minute: '2-digit', timeZone, timeZoneName: 'short',
    });
  }

  number(n) {
    return this.#number.format(n);
  }

  /** An ISO timestamp as a day and a time. */
  date(iso) {
    return this.#date.format(new Date(iso));
  }

  /** An ISO timestamp as a day and a time with its time zone, for times a
   *  buyer acts on later and maybe elsewhere (a coupon's expiry). */
  dateWithZone(iso) {
    return this.#zoned.format(new Date(iso));
  }

  /** A moment (ms since the epoch) as a time of day. */
  time(ms) {
    return this.#time.format(new Date(ms));
  }

  /** Amounts arrive in the currency's minor unit (KRW has none), so the
   *  currency itself says how far to shift the decimal point. */
  money(amount, currency) {
    if (!currency) return this.number(amount);
    let fmt = this.#money.get(currency);
    try {
      fmt ??= new Intl.NumberFormat(this.#locale, { style: 'currency', currency });
    } catch {
      return `${this.number(amount)} ${currency}`; // an unknown currency code
    }
    this.#money.set(currency, fmt);
    return fmt.format(amount / 10 ** fmt.resolvedOptions().maximumFractionDigits);
  }

  duration(seconds) {
    const [n, unit] = durationParts(seconds);
    return `${this.number(n)}${NBSP}${unit}`;
  }

  /** "about 4 min, between 3 and 6 min": the estimate and its band, with
   *  the unit said once when both ends share it. */
  eta({ eta_s: eta, eta_low_s: low, eta_high_s: high }) {
    if (eta >= LONG_WAIT_S) return 'more than a day';
    const about = `about ${this.duration(eta)}`;
    const [lowN, lowUnit] = durationParts(low);
    const [highN, highUnit] = durationParts(Math.min(high, LONG_WAIT_S));
    if (lowN === highN && lowUnit === highUnit) return about;
    const from = lowUnit === highUnit ? this.number(lowN) : this.duration(low);
    const to = high >= LONG_WAIT_S ? 'more than a day' : this.duration(high);
    return `${about}, between ${from} and ${to}`;
  }

  /** "1 seat", "2,400 seats". */
  plural(n, one, many) {
    return `${this.number(n)} ${n === 1 ? one : many}`;
  }
}
