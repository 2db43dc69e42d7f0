// Polling for what a page shows a moment later, shared by the browser tests.

import assert from 'node:assert/strict';

/** Polls `read` until `check` accepts its value; fails with the last value. */
export async function eventually(what, read, check, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await read();
    if (check(last)) return last;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
