// What the page remembers on this device (localStorage), and under which
// keys. Storage that is blocked or full is no error: the page still works,
// it only forgets the buyer on reload.

export const KEYS = {
  /** `{token, user}`: the same guest on every reload keeps the same place. */
  guest: 'qt.guest',
  /** `{event, name, currency, start, until?}` while in a queue or admitted,
   *  so that a reload re-joins it. */
  place: 'qt.place',
  /** `{event, holds: [{seats, expiresAtMs, heldAtMs}]}`: the seats this
   *  buyer holds. The seat map shows every held seat alike, and nothing
   *  tells a page which are its own but its `held` replies, so a reload
   *  remembers them. */
  holds: 'qt.holds',
};

export function loadJson(key) {
  try {
    return JSON.parse(localStorage.getItem(key));
  } catch {
    return null;
  }
}

export function saveJson(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Blocked or full storage (private browsing).
  }
}
