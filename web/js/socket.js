// The buyer WebSocket (wire contract, protocol 1): one socket that keeps
// itself connected, and pairs replies with requests. Knows frames, not pages.

import { RequestError } from './errors.js';

// Reconnect delays grow from BASE to CAP; jitter keeps thousands of buyers
// dropped at the same moment from all coming back at the same moment.
const RECONNECT_BASE_MS = 500;
export const RECONNECT_CAP_MS = 30_000;
// While admitted the server pushes nothing: a ping keeps idle-closing
// proxies away and tells us when a socket died without a close.
const PING_EVERY_MS = 25_000;
const REPLY_TIMEOUT_MS = 10_000;

/**
 * One buyer socket that keeps itself connected: it reconnects with backoff
 * and jitter, pairs replies with requests by `req`, and hands every other
 * frame to `onPush`. It knows nothing about queues: the page decides what
 * to (re)send in `onOpen`, which runs after each `hello`.
 */
export class BuyerSocket {
  #url;
  #on;
  #ws = null;
  #open = false;
  #nextReq = 1;
  #pending = new Map();
  #attempt = 0;
  #retryTimer = 0;
  #pingTimer = 0;
  #closingHintMs = null;

  /** `url` is async: it may have to fetch a token first. */
  constructor(url, handlers) {
    this.#url = url;
    this.#on = handlers;
  }

  get isOpen() {
    return this.#open;
  }

  start() {
    this.#connect();
  }

  /** Skips the rest of a backoff, e.g. when the browser comes back online. */
  reconnectNow() {
    if (this.#ws || !this.#retryTimer) return;
    clearTimeout(this.#retryTimer);
    this.#connect();
  }

  /** Resolves with the reply to `msg`, or rejects with the `error` frame
   *  (or a local `disconnected` / `timeout`) that answered it. */
  request(msg) {
    if (!this.#open) return Promise.reject(new RequestError('disconnected', 'Not connected to the server.'));
    const req = this.#nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(req);
        reject(new RequestError('timeout', 'The server did not answer in time.'));
      }, REPLY_TIMEOUT_MS);
      this.#pending.set(req, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...msg, req }));
    });
  }

  async #connect() {
    this.#retryTimer = 0;
    this.#on.onStatus('connecting');
    let url;
    try {
      url = await this.#url();
    } catch (err) {
      this.#on.onFailure(err);
      this.#retryLater();
      return;
    }
    const ws = new WebSocket(url);
    this.#ws = ws;
    ws.onmessage = (e) => this.#receive(e.data);
    // `error` is always followed by `close`, which does the work.
    ws.onclose = (e) => this.#closed(ws, e.code);
  }

  #receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return; // not ours to understand; the contract says JSON objects only
    }
    if (frame.type === 'hello') return this.#opened(frame);
    if (frame.type === 'closing') this.#closingHintMs = frame.reconnect_after_ms ?? null;
    const waiting = frame.req != null && this.#pending.get(frame.req);
    if (waiting) {
      this.#pending.delete(frame.req);
      clearTimeout(waiting.timer);
      if (frame.type === 'error') waiting.reject(new RequestError(frame.code, frame.message, 0, frame.seats ?? null));
      else waiting.resolve(frame);
      return;
    }
    if (frame.type !== 'pong') this.#on.onPush(frame);
  }

  #opened(hello) {
    this.#open = true;
    this.#attempt = 0;
    this.#pingTimer = setInterval(() => this.#ping(), PING_EVERY_MS);
    this.#on.onStatus('open');
    this.#on.onOpen(hello);
  }

  #ping() {
    // No pong in time: the socket is dead without having said so. Drop it
    // ourselves; a close handshake over a dead link could take minutes.
    const ws = this.#ws;
    this.request({ type: 'ping' }).catch((err) => {
      if (err.code === 'timeout' && ws === this.#ws) {
        ws.onclose = null;
        ws.close();
        this.#closed(ws, 4000);
      }
    });
  }

  #closed(ws, code) {
    if (ws !== this.#ws) return;
    const wasOpen = this.#open;
    this.#ws = null;
    this.#open = false;
    clearInterval(this.#pingTimer);
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(new RequestError('disconnected', 'The connection was lost.'));
    }
    this.#pending.clear();
    this.#on.onClose({ wasOpen, code });
    this.#retryLater();
  }

  #retryLater() {
    const restarting = this.#closingHintMs != null;
    const delay = this.#nextDelay();
    this.#attempt += 1;
    this.#on.onStatus(navigator.onLine === false ? 'offline' : 'retrying', { at: Date.now() + delay, restarting });
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }

  /** Exponential backoff with "equal jitter" (half fixed, half random), so
   *  retries never hammer but never all line up either. A server that is
   *  shutting down names its own delay; we spread buyers out after it. */
  #nextDelay() {
    if (this.#closingHintMs != null) {
      const hint = this.#closingHintMs;
      this.#closingHintMs = null;
      return hint + Math.random() * hint * 0.5;
    }
    const ceiling = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** this.#attempt);
    return ceiling / 2 + (Math.random() * ceiling) / 2;
  }
}
