// The seat-map model: snapshots in both forms, `seats` diffs in version
// order, and the buyer's own selection and holds.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  BuyerSeats,
  FREE,
  FRESH_HOLD_MS,
  HELD,
  HOLD_GRACE_MS,
  SOLD,
  applySeatsDiff,
  buildSeatMap,
  diffOrder,
  firstSeat,
  neighbourSeat,
  statusCode,
} from '../js/seatmap.js';

const TIERS = [
  { id: 'vip', name: 'VIP', price: 198_000 },
  { id: 'a', name: 'A', price: 99_000 },
];

/** Two regular rows and an irregular one (spelled out in compact form). */
function compactFrame(version = 7) {
  return {
    type: 'seatmap',
    event: 'demo-live',
    version,
    currency: 'KRW',
    tiers: TIERS,
    format: 'compact',
    rows: [
      { section: 'A', row: '1', tier: 'vip', y: 0, n0: 1, x0: 0, dx: 10, count: 3 },
      { section: 'A', row: '2', tier: 'a', y: 12, n0: 1, x0: 0, dx: 10, count: 3 },
      {
        section: 'B',
        row: '1',
        seats: [
          { id: 'box-1', number: 1, x: 40, y: 0, tier: 'a' },
          { id: 'box-2', number: 2, x: 55, y: 0, tier: 'a' },
        ],
      },
    ],
    status: 'ffhfsfhf',
  };
}

/** The same map in the full form, its seats in another order. */
function fullFrame(version = 7) {
  const seat = (id, section, row, number, x, y, tier, status) => ({ id, section, row, number, x, y, tier, status });
  return {
    type: 'seatmap',
    event: 'demo-live',
    version,
    currency: 'KRW',
    tiers: TIERS,
    seats: [
      seat('box-2', 'B', '1', 2, 55, 0, 'a', 'free'),
      seat('box-1', 'B', '1', 1, 40, 0, 'a', 'held'),
      seat('A-2-3', 'A', '2', 3, 20, 12, 'a', 'free'),
      seat('A-2-2', 'A', '2', 2, 10, 12, 'a', 'sold'),
      seat('A-2-1', 'A', '2', 1, 0, 12, 'a', 'free'),
      seat('A-1-3', 'A', '1', 3, 20, 0, 'vip', 'held'),
      seat('A-1-2', 'A', '1', 2, 10, 0, 'vip', 'free'),
      seat('A-1-1', 'A', '1', 1, 0, 0, 'vip', 'free'),
    ],
  };
}

/** Every seat with its status, by id. */
function byId(map) {
  return Object.fromEntries(map.seats.map((seat, i) => [seat.id, { ...seat, status: map.status[i] }]));
}

const statusOf = (map, id) => map.status[map.index.get(id)];

describe('snapshots', () => {
  test('the compact and the full form give the same seats', () => {
    const compact = buildSeatMap(compactFrame());
    const full = buildSeatMap(fullFrame());
    assert.deepEqual(byId(compact), byId(full));
    assert.deepEqual(byId(compact)['A-1-3'], { id: 'A-1-3', section: 'A', row: '1', number: 3, x: 20, y: 0, tier: 'vip', status: HELD });
    assert.deepEqual(byId(compact)['box-2'], { id: 'box-2', section: 'B', row: '1', number: 2, x: 55, y: 0, tier: 'a', status: FREE });
    for (const map of [compact, full]) {
      assert.equal(map.seats.length, 8);
      assert.equal(map.free, 5);
      assert.equal(map.version, 7);
      assert.equal(map.event, 'demo-live');
      assert.equal(statusOf(map, 'A-2-2'), SOLD);
    }
  });

  test('a status this page does not know is shown as taken', () => {
    assert.equal(statusCode('f'), FREE);
    assert.equal(statusCode('sold'), SOLD);
    assert.equal(statusCode('reserved'), HELD);
    const map = buildSeatMap({ ...compactFrame(), status: 'ffhfsfhx' });
    assert.equal(statusOf(map, 'box-2'), HELD);
    assert.equal(map.free, 4);
  });

  test('geometry: pitch, bounds, and the seats the arrow keys reach', () => {
    const map = buildSeatMap(compactFrame());
    assert.equal(map.pitch, 10, 'the smallest gap within a row');
    assert.deepEqual([map.minX, map.maxX, map.minY, map.maxY], [0, 55, 0, 12]);
    assert.deepEqual(map.sections.map((s) => s.name), ['A', 'B']);
    const at = (id) => map.index.get(id);
    const idOf = (i) => map.seats[i].id;
    assert.equal(idOf(firstSeat(map)), 'A-1-3', 'the front row seat nearest the middle');
    assert.equal(idOf(neighbourSeat(map, at('A-1-3'), 'ArrowRight')), 'box-1', 'a line runs across sections');
    assert.equal(idOf(neighbourSeat(map, at('A-1-3'), 'ArrowDown')), 'A-2-3');
    assert.equal(idOf(neighbourSeat(map, at('A-1-1'), 'ArrowUp')), 'A-1-1', 'nothing in front of the front row');
    assert.equal(idOf(neighbourSeat(map, at('A-1-2'), 'End')), 'box-2');
    assert.equal(idOf(neighbourSeat(map, at('box-2'), 'Home')), 'A-1-1');
    assert.equal(idOf(neighbourSeat(map, at('A-1-1'), 'ArrowLeft')), 'A-1-1');
  });
});

describe('seats diffs', () => {
  const twoHeld = (version) => ({
    type: 'seats',
    event: 'demo-live',
    version,
    changes: [
      { id: 'A-1-1', status: 'held' },
      { id: 'A-1-2', status: 'held' },
    ],
  });

  test('a diff whose version is the map\'s plus its changes applies', () => {
    const map = buildSeatMap(compactFrame(7));
    assert.equal(diffOrder(map, twoHeld(9)), 'next');
    const { order, changed } = applySeatsDiff(map, twoHeld(9));
    assert.equal(order, 'next');
    assert.deepEqual(changed.map((i) => map.seats[i].id), ['A-1-1', 'A-1-2']);
    assert.equal(map.version, 9);
    assert.equal(map.free, 3);
    assert.equal(statusOf(map, 'A-1-2'), HELD);

    const release = { type: 'seats', event: 'demo-live', version: 10, changes: [{ id: 'A-1-3', status: 'free' }] };
    assert.equal(applySeatsDiff(map, release).order, 'next');
    assert.equal(statusOf(map, 'A-1-3'), FREE);
    assert.equal(map.free, 4);
  });

  test('an old or duplicate diff is skipped and changes nothing', () => {
    const map = buildSeatMap(compactFrame(7));
    applySeatsDiff(map, twoHeld(9));
    const before = { ...byId(map) };
    for (const stale of [twoHeld(9), twoHeld(8), { ...twoHeld(7), changes: [{ id: 'A-1-1', status: 'free' }] }]) {
      assert.deepEqual(applySeatsDiff(map, stale), { order: 'stale', changed: [] });
    }
    assert.deepEqual(byId(map), before);
    assert.equal(map.version, 9);
    assert.equal(map.free, 3);
  });

  test('a gap (a diff went missing) is noticed and nothing applied', () => {
    const map = buildSeatMap(compactFrame(7));
    const after = { type: 'seats', event: 'demo-live', version: 11, changes: [{ id: 'A-2-1', status: 'held' }] };
    assert.deepEqual(applySeatsDiff(map, after), { order: 'gap', changed: [] });
    assert.equal(map.version, 7);
    assert.equal(statusOf(map, 'A-2-1'), FREE);
    assert.equal(diffOrder(map, { version: 9, changes: [{ id: 'A-2-1', status: 'held' }] }), 'gap', 'one change cannot be two versions');
  });

  test('seats the map does not know are passed over', () => {
    const map = buildSeatMap(compactFrame(7));
    const { order, changed } = applySeatsDiff(map, { version: 8, changes: [{ id: 'Z-9-9', status: 'held' }] });
    assert.equal(order, 'next');
    assert.deepEqual(changed, []);
    assert.equal(map.version, 8);
  });
});

describe('the buyer\'s seats', () => {
  const T0 = Date.UTC(2025, 0, 1, 12);
  const heldFrame = (seats, expiresAtMs = T0 + 600_000) => ({
    type: 'held',
    event: 'demo-live',
    seats,
    expires_at: new Date(expiresAtMs).toISOString(),
  });

  function seatsWithMap(onHolds) {
    const seats = new BuyerSeats({ onHolds });
    seats.snapshot(compactFrame(7), T0);
    return seats;
  }

  const lookOf = (seats, id) => seats.look(seats.map.index.get(id));

  test('picking a free seat selects it; a taken one cannot be picked', () => {
    const seats = seatsWithMap();
    assert.equal(seats.toggle(seats.map.index.get('A-1-1')), true);
    assert.equal(lookOf(seats, 'A-1-1'), 'selected');
    assert.deepEqual(seats.takeDirty(), [seats.map.index.get('A-1-1')]);
    assert.deepEqual(seats.takeDirty(), [], 'taken once');
    assert.equal(seats.toggle(seats.map.index.get('A-1-3')), false);
    assert.equal(lookOf(seats, 'A-1-3'), 'taken');
    seats.toggle(seats.map.index.get('A-1-1'));
    assert.equal(lookOf(seats, 'A-1-1'), 'free');
  });

  test('a `held` reply makes the seats ours and held, and remembers the hold', () => {
    const told = [];
    const seats = seatsWithMap((holds) => told.push(holds));
    seats.toggle(seats.map.index.get('A-1-1'));
    const changed = seats.held(heldFrame(['A-1-1', 'A-1-2']), T0);
    assert.deepEqual(changed.map((i) => seats.map.seats[i].id), ['A-1-1', 'A-1-2']);
    assert.deepEqual([...seats.mine], ['A-1-1', 'A-1-2']);
    assert.deepEqual([...seats.selected], []);
    assert.equal(lookOf(seats, 'A-1-2'), 'mine');
    assert.equal(seats.map.free, 3);
    assert.deepEqual(told.at(-1), [{ seats: ['A-1-1', 'A-1-2'], expiresAtMs: T0 + 600_000, heldAtMs: T0 }]);
    assert.equal(seats.priceOf('A-1-1') + seats.priceOf('A-1-2'), 396_000);
  });

  test('a diff that takes a selected seat unselects it, unless we are holding it', () => {
    const seats = seatsWithMap();
    seats.toggle(seats.map.index.get('A-2-1'));
    seats.toggle(seats.map.index.get('A-2-3'));
    seats.holding.add('A-2-3');
    const diff = { version: 9, changes: [{ id: 'A-2-1', status: 'held' }, { id: 'A-2-3', status: 'held' }] };
    const { order, taken } = seats.diff(diff, T0);
    assert.equal(order, 'next');
    assert.deepEqual(taken, ['A-2-1']);
    assert.deepEqual([...seats.selected], ['A-2-3']);
    assert.equal(lookOf(seats, 'A-2-1'), 'taken');
  });

  test('our seat turning free in a diff is ours no more, unless the hold is fresh', () => {
    const seats = seatsWithMap();
    seats.held(heldFrame(['A-1-1']), T0);
    seats.held(heldFrame(['A-1-2']), T0 + 10_000);
    const frees = { version: 9, changes: [{ id: 'A-1-1', status: 'free' }, { id: 'A-1-2', status: 'free' }] };
    seats.diff(frees, T0 + 10_000 + FRESH_HOLD_MS - 1);
    assert.deepEqual([...seats.mine], ['A-1-2'], 'A-1-1 was released elsewhere; A-1-2 is too new to tell');
    assert.equal(seats.holds.length, 1, 'a hold left empty is dropped');
  });

  test('a snapshot drops holds it does not show held, once they are not fresh', () => {
    const seats = new BuyerSeats();
    seats.setHolds([
      { seats: ['A-1-3'], expiresAtMs: T0 + 600_000, heldAtMs: T0 - 60_000 },
      { seats: ['A-1-1'], expiresAtMs: T0 + 600_000, heldAtMs: T0 - 60_000 },
      { seats: ['A-1-2'], expiresAtMs: T0 + 600_000, heldAtMs: T0 - 1_000 },
    ]);
    seats.selected.add('A-2-2').add('A-2-1');
    seats.snapshot(compactFrame(7), T0);
    assert.deepEqual([...seats.mine].sort(), ['A-1-2', 'A-1-3'], 'A-1-3 is held; A-1-2 may predate the snapshot');
    assert.deepEqual([...seats.selected], ['A-2-1'], 'a sold seat is no longer a choice');
  });

  test('a refused hold shows the seats it named taken; letting go frees ours', () => {
    const seats = seatsWithMap();
    seats.toggle(seats.map.index.get('A-2-1'));
    seats.takenFromUs(['A-2-1']);
    assert.equal(lookOf(seats, 'A-2-1'), 'taken');
    assert.deepEqual([...seats.selected], []);

    seats.held(heldFrame(['A-1-1', 'A-1-2']), T0);
    seats.takeDirty();
    seats.letGo(['A-1-1', 'A-1-2'], ['A-1-1']);
    assert.deepEqual([...seats.mine], []);
    assert.equal(statusOf(seats.map, 'A-1-1'), FREE);
    assert.equal(statusOf(seats.map, 'A-1-2'), HELD, 'not said to be free: someone else may have it');
    assert.deepEqual(seats.takeDirty().map((i) => seats.map.seats[i].id).sort(), ['A-1-1', 'A-1-2']);
  });

  test('a sold seat looks sold, apart from one held by someone else', () => {
    const seats = seatsWithMap();
    assert.equal(lookOf(seats, 'A-2-2'), 'sold');
    assert.equal(lookOf(seats, 'A-1-3'), 'taken');
    assert.equal(seats.toggle(seats.map.index.get('A-2-2')), false, 'a sold seat cannot be picked');
    seats.diff({ version: 8, changes: [{ id: 'A-1-3', status: 'sold' }] }, T0);
    assert.equal(lookOf(seats, 'A-1-3'), 'sold');
  });

  test('an order keeps its holds until it expires; never shorter', () => {
    const told = [];
    const seats = seatsWithMap((holds) => told.push(holds));
    seats.held(heldFrame(['A-1-1'], T0 + 10_000), T0);
    seats.held(heldFrame(['A-1-2'], T0 + 20_000), T0);
    seats.held(heldFrame(['A-2-1'], T0 + 30_000), T0);
    seats.extendHolds(['A-1-1', 'A-1-2'], T0 + 15_000);
    assert.deepEqual(seats.holds.map((h) => h.expiresAtMs), [T0 + 15_000, T0 + 20_000, T0 + 30_000]);
    assert.deepEqual(told.at(-1).map((h) => h.expiresAtMs), [T0 + 15_000, T0 + 20_000, T0 + 30_000], 'remembered across reloads');
    const calls = told.length;
    seats.extendHolds(['A-1-1'], T0 + 12_000);
    assert.equal(told.length, calls, 'nothing to extend: nothing stored again');
  });

  test('a paid order books its seats: no longer held by us, sold on the map', () => {
    const seats = seatsWithMap();
    seats.held(heldFrame(['A-1-1', 'A-1-2']), T0);
    seats.held(heldFrame(['A-2-1']), T0);
    seats.takeDirty();
    seats.booked(['A-1-1', 'A-1-2']);
    assert.deepEqual([...seats.mine], ['A-2-1']);
    assert.equal(seats.holds.length, 1, 'the emptied hold is gone');
    assert.deepEqual([lookOf(seats, 'A-1-1'), lookOf(seats, 'A-1-2')], ['sold', 'sold']);
    assert.equal(statusOf(seats.map, 'A-1-1'), SOLD);
    assert.deepEqual(seats.takeDirty().map((i) => seats.map.seats[i].id).sort(), ['A-1-1', 'A-1-2']);
  });

  test('holds past their end and the grace have lapsed', () => {
    const seats = seatsWithMap();
    seats.held(heldFrame(['A-1-1'], T0 + 10_000), T0);
    seats.held(heldFrame(['A-1-2'], T0 + 20_000), T0);
    assert.deepEqual(seats.lapsed(T0 + 10_000 + HOLD_GRACE_MS), []);
    assert.deepEqual(seats.lapsed(T0 + 10_001 + HOLD_GRACE_MS), ['A-1-1']);
  });

  test('restoring keeps the event\'s own holds that have not ended', () => {
    const seats = new BuyerSeats();
    const saved = {
      event: 'demo-live',
      holds: [
        { seats: ['A-1-1'], expiresAtMs: T0 + 60_000 },
        { seats: ['A-1-2'], expiresAtMs: T0 - 1 },
        { seats: 'A-1-3', expiresAtMs: T0 + 60_000 },
      ],
    };
    seats.restore(saved, 'demo-live', T0);
    assert.deepEqual(seats.holds, [{ heldAtMs: 0, seats: ['A-1-1'], expiresAtMs: T0 + 60_000 }]);
    seats.restore(saved, 'other-event', T0);
    assert.deepEqual(seats.holds, []);
    seats.restore(null, 'demo-live', T0);
    assert.deepEqual(seats.holds, []);
  });

  test('forgetting clears the map and everything picked or held', () => {
    const told = [];
    const seats = seatsWithMap((holds) => told.push(holds));
    seats.toggle(seats.map.index.get('A-1-1'));
    seats.held(heldFrame(['A-1-2']), T0);
    seats.forget();
    assert.equal(seats.map, null);
    assert.deepEqual([seats.selected.size, seats.mine.size, seats.holds.length], [0, 0, 0]);
    assert.deepEqual(told.at(-1), []);
    assert.deepEqual(seats.takeDirty(), []);
  });
});
