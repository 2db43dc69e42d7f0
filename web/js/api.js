// REST calls and the buyer's guest identity. Knows the server's routes and
// error shape; nothing about the page.

import { RequestError } from './errors.js';
import { KEYS, loadJson, saveJson } from './storage.js';

// A guest token this close to expiry is replaced before connecting, so a
// long wait does not start with a token that dies halfway through.
const TOKEN_MARGIN_MS = 5 * 60_000;

/** The JSON answer of `path`, or a RequestError with the server's code. */
export async function api(path, { method = 'GET', token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new RequestError('network', 'Cannot reach the server. Check your connection.');
  }
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data?.error ?? {};
    throw new RequestError(err.code ?? `http_${res.status}`, err.message ?? res.statusText, res.status);
  }
  return data;
}

/** When a JWT expires, read without verifying it: only to know when to ask
 *  for a fresh one. The server is the one that checks signatures. */
export function tokenExpiresMs(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload)).exp * 1000;
  } catch {
    return 0;
  }
}

/** The buyer's guest identity: the stored one while it is good, else a new one. */
export async function guestIdentity() {
  const saved = loadJson(KEYS.guest);
  if (saved?.token && tokenExpiresMs(saved.token) - Date.now() > TOKEN_MARGIN_MS) return saved;
  const fresh = await api('/api/v1/guest', { method: 'POST' });
  saveJson(KEYS.guest, { token: fresh.token, user: fresh.user });
  return fresh;
}

/** Forgets a token the server no longer accepts, so the next connect mints one. */
export function forgetGuest() {
  saveJson(KEYS.guest, null);
}
