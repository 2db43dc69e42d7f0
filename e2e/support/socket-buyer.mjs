// Another buyer beside the page, on a raw buyer WebSocket (the `ws`
// package: Node 20 has no global WebSocket). It joins, gets admitted and
// holds or releases seats, so the page's live map has someone to see.

import WebSocket from 'ws';

const REPLY_TIMEOUT_MS = 5_000;

export class SocketBuyer {
  #ws;
  #nextReq = 1;
  #pending = new Map();
  /** Every pushed frame (no `req`), oldest first. */
  pushes = [];

  constructor(ws, user) {
    this.#ws = ws;
    this.user = user;
    ws.on('message', (data) => this.#receive(JSON.parse(data.toString())));
    ws.on('close', () => {
      for (const { reject } of this.#pending.values()) reject(new Error('socket closed'));
      this.#pending.clear();
    });
  }

  /** A new guest with an open socket (after its `hello`). */
  static async connect(server) {
    const { token, user } = await server.guest();
    const url = `${server.base.replace(/^http/, 'ws')}/ws?token=${encodeURIComponent(token)}`;
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.once('message', (data) => {
        const hello = JSON.parse(data.toString());
        if (hello.type === 'hello') resolve();
        else reject(new Error(`expected hello, got ${data}`));
      });
      ws.once('error', reject);
    });
    return new SocketBuyer(ws, user);
  }

  #receive(frame) {
    const waiting = frame.req != null && this.#pending.get(frame.req);
    if (!waiting) {
      this.pushes.push(frame);
      return;
    }
    this.#pending.delete(frame.req);
    clearTimeout(waiting.timer);
    if (frame.type === 'error') {
      const err = new Error(`${frame.code}: ${frame.message}`);
      err.frame = frame;
      waiting.reject(err);
    } else {
      waiting.resolve(frame);
    }
  }

  /** Sends `msg` and resolves with its reply (rejects on an `error` frame). */
  request(msg) {
    const req = this.#nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(req);
        reject(new Error(`no reply to ${JSON.stringify(msg)}`));
      }, REPLY_TIMEOUT_MS);
      this.#pending.set(req, { resolve, reject, timer });
      this.#ws.send(JSON.stringify({ ...msg, req }));
    });
  }

  /** Joins and insists on being admitted at once (the queue must be open). */
  async admit(event = 'demo-live') {
    const reply = await this.request({ type: 'join', event });
    if (reply.type !== 'admitted') throw new Error(`expected admission, got ${JSON.stringify(reply)}`);
    return reply;
  }

  hold(seats, event = 'demo-live') {
    return this.request({ type: 'hold', event, seats });
  }

  release(seats, event = 'demo-live') {
    return this.request({ type: 'release', event, seats });
  }

  close() {
    this.#ws.close();
  }
}
