// A failed call, REST or socket, and what it tells a buyer. Pure.

/** A failed call, with the protocol's error `code` when the server gave one. */
export class RequestError extends Error {
  /** `seats` names the seats an `error` frame was about (`seat_unavailable`,
   *  `not_found`), when it named any. */
  constructor(code, message, status = 0, seats = null) {
    super(message);
    this.code = code;
    this.status = status;
    this.seats = seats;
  }
}

/** A sentence for a failed call (a RequestError or an `error` frame). */
export function describeError(err) {
  switch (err.code) {
    case 'rate_limited':
      return 'Too many requests from your network right now. We will keep trying.';
    case 'network':
      return err.message;
    case 'not_found':
      return 'That event is no longer available.';
    case 'unauthorized':
      return 'Your visitor pass expired. Getting a new one…';
    case 'disconnected':
    case 'timeout':
      return 'The connection to the server dropped. Try again once it says Live.';
    default:
      return err.message || `Something went wrong (${err.code}).`;
  }
}
