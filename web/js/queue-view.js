// What the waiting room shows, worked out from the server's `queue` and
// `admitted` messages: the words and numbers, never the elements they go
// in. Pure: no DOM, no clock reads, so `node --test` imports it as is.

import { formatClock } from './format.js';

/** The far end of the progress bar: the first (largest) position seen. It
 *  is kept with the place, so that a reload does not restart the bar. */
export function progressStart(start, position) {
  return start == null || position > start ? position : start;
}

/**
 * The waiting panel for a `queue` message `q`, given the far end of the
 * progress bar (`start`, see progressStart) and a Format.
 */
export function queuePanel(q, start, format) {
  // From the first position seen to the front; never quite 0 or 100 % while
  // waiting, so the bar always shows both where you are and what is left.
  const from = Math.max(start ?? q.position, q.position);
  const progress = Math.round(((from - q.position + 1) / (from + 1)) * 100);
  const resume = q.paused ? ' once admissions resume' : '';
  return {
    position: `You are #${format.number(q.position)} of ${format.number(q.waiting)}`,
    ahead: q.position === 1 ? "You're next in line." : `${format.plural(q.position - 1, 'person', 'people')} ahead of you`,
    progress,
    progressText: `${progress}% of the way to the front`,
    eta: `${format.eta(q)}${resume}`,
    // While paused the server reports the current rate, which is zero.
    rate: q.paused ? 'paused: nobody is admitted right now' : `${format.number(q.rate_per_min)} people a minute`,
    paused: Boolean(q.paused),
  };
}

/** The admitted panel: when the shopping window closes (`expiresAtMs`, on
 *  our clock) and what is left of it at `now` (on the server's clock). */
export function admittedPanel(expiresAtMs, now, format) {
  return {
    windowEnd: `Your window closes at ${format.time(expiresAtMs)}.`,
    countdown: formatClock(expiresAtMs - now),
  };
}

/** The tab title, which carries the news for a buyer looking elsewhere. */
export function pageTitle(phase, queue, format) {
  const title = {
    waiting: queue && `#${format.number(queue.position)} in line`,
    admitted: "It's your turn!",
    expired: 'Window ended',
  }[phase];
  return title ? `${title} · QueueTicket` : 'QueueTicket';
}

/** Why a `left` message took the buyer back to the event list. */
export function leftNotice(reason, name) {
  switch (reason) {
    case 'left':
      return `You left the queue for ${name}.`;
    case 'ended':
      return `The sale for ${name} has ended.`;
    default:
      return `Your place in line for ${name} is no longer held: the page was disconnected for too long. You can join again.`;
  }
}

/** What "Leave the queue" asks before it gives the place up. */
export function leaveQuestion(phase, holdsSeats) {
  if (phase !== 'admitted') return 'Leave the queue? You will lose your place in line.';
  return holdsSeats
    ? 'Give up your turn? Your held seats are released and you would have to queue again.'
    : 'Give up your turn? You would have to queue again.';
}
