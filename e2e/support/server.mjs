// The real `queueticket` binary on a free port with a fresh data directory,
// plus the REST calls the browser tests make beside the page (other buyers
// and the seller). Every process started here is killed when this process
// exits, whatever way it exits, so a failed run leaves no server behind.

import { execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The server binary: `QT_BIN` (relative to the working directory), else
 *  the debug build of this checkout. */
export const QT_BIN = process.env.QT_BIN
  ? path.resolve(process.env.QT_BIN)
  : path.resolve(E2E_DIR, '../target/debug/queueticket');

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 5_000;
const LOG_LINES_KEPT = 200;

const running = new Set();
const dataDirs = new Set();
// `exit` handlers must be synchronous: kill and delete, no waiting.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of dataDirs) rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => process.exit(128 + os.constants.signals[signal]));
}

async function freePort() {
  const probe = net.createServer();
  await new Promise((resolve, reject) => probe.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = probe.address();
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The server's environment without our caller's `QT_*` settings, which
 *  could point it at a Redis or another data directory. */
function cleanEnv() {
  const env = { ...process.env, NO_COLOR: '1', QT_LOG: process.env.QT_E2E_LOG ?? 'info' };
  for (const key of Object.keys(env)) {
    if (key.startsWith('QT_') && key !== 'QT_LOG') delete env[key];
  }
  return env;
}

export class Server {
  #child = null;
  #log = [];

  constructor(port, dataDir, extraArgs) {
    this.port = port;
    this.dataDir = dataDir;
    this.extraArgs = extraArgs;
    this.base = `http://127.0.0.1:${port}`;
  }

  /** Starts a server with the demo event seeded; `args` add flags. */
  static async start(args = []) {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'qt-e2e-'));
    dataDirs.add(dataDir);
    const server = new Server(await freePort(), dataDir, args);
    await server.run();
    return server;
  }

  /** The last lines the server logged, to explain a failure. */
  get log() {
    return this.#log.join('\n');
  }

  async run() {
    const args = ['--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir, ...this.extraArgs];
    const child = spawn(QT_BIN, args, { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    running.add(child);
    const keep = (chunk) => {
      this.#log.push(...chunk.toString().trimEnd().split('\n'));
      this.#log.splice(0, Math.max(0, this.#log.length - LOG_LINES_KEPT));
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.once('exit', () => running.delete(child));
    child.once('error', (err) => this.#log.push(`spawn failed: ${err.message}`));
    this.exited = exited;
    await this.#healthy(exited);
  }

  async #healthy(exited) {
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    let gone = null;
    exited.then((how) => (gone = how));
    while (Date.now() < deadline) {
      if (gone) throw new Error(`server exited during start-up (${JSON.stringify(gone)}):\n${this.log}`);
      try {
        const res = await fetch(`${this.base}/healthz`);
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`server not healthy after ${STARTUP_TIMEOUT_MS} ms:\n${this.log}`);
  }

  /** Graceful stop (SIGTERM, so sockets hear `closing`), then SIGKILL. */
  async stop() {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stops the server for good and removes its data. */
  async dispose() {
    await this.stop();
    await rm(this.dataDir, { recursive: true, force: true });
    dataDirs.delete(this.dataDir);
  }

  /** A token minted by the binary itself, as an operator would. */
  async sellerToken(seller = 'demo') {
    const args = ['token', '--data-dir', this.dataDir, '--role', 'seller', '--sub', 's-e2e', '--seller', seller];
    const { stdout } = await promisify(execFile)(QT_BIN, args, { env: cleanEnv() });
    return stdout.trim().split('\n').pop().trim();
  }

  /** A JSON call; resolves with `{status, body}` whatever the status. */
  async call(method, route, { token, body } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(`${this.base}${route}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: await res.json().catch(() => null) };
  }

  async guest() {
    const { status, body } = await this.call('POST', '/api/v1/guest');
    if (status !== 201) throw new Error(`guest token: ${status} ${JSON.stringify(body)}`);
    return body;
  }

  /** `PATCH …/queue` as the seller; throws unless it was accepted. */
  async setQueue(sellerToken, settings, event = 'demo-live') {
    const res = await this.call('PATCH', `/api/v1/seller/events/${event}/queue`, { token: sellerToken, body: settings });
    if (res.status !== 200) throw new Error(`queue settings: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  /** A buyer takes a place in line over REST (the same as a socket `join`). */
  async join(token, event = 'demo-live') {
    const res = await this.call('POST', `/api/v1/events/${event}/queue`, { token });
    if (res.status !== 200) throw new Error(`join: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  }

  /** Where a buyer stands: `{status, body}`, 404 once they have no place. */
  queueStatus(token, event = 'demo-live') {
    return this.call('GET', `/api/v1/events/${event}/queue`, { token });
  }

  /** The seat map as the store has it (full form): `{id: status}`. */
  async seatStatuses(event = 'demo-live') {
    const res = await this.call('GET', `/api/v1/events/${event}/seatmap`);
    if (res.status !== 200) throw new Error(`seatmap: ${res.status} ${JSON.stringify(res.body)}`);
    return Object.fromEntries(res.body.seats.map((seat) => [seat.id, seat.status]));
  }
}
