-- Keep a buyer's held seats for their order, all of them or none. A seat's
-- state value is its status code and flags, never an id: "h" a hold, "hc"
-- a checked-out hold, "hx" a hold that was checked out once and no longer
-- is. The first checkout of a hold ("h" → "hc") raises its expiry to
-- until_ms (never lowers it); later ones ("hx" → "hc") extend nothing.
-- Status stays held, so no version and no log entry.
-- KEYS: 1 state, 2 holder (hash seat → whole user id), 3 expiry
-- ARGV: 1 user, 2 until_ms, 3.. seats
-- Returns {1, earliest expiry after} | {0, seats the buyer does not hold…}
local user, until_ms = ARGV[1], tonumber(ARGV[2])
local function held_by_user(seat)
  local v = redis.call('HGET', KEYS[1], seat)
  return (v == 'h' or v == 'hc' or v == 'hx') and redis.call('HGET', KEYS[2], seat) == user
end
local missing = {}
for i = 3, #ARGV do
  if not held_by_user(ARGV[i]) then missing[#missing + 1] = ARGV[i] end
end
if #missing > 0 then
  table.insert(missing, 1, 0)
  return missing
end
local earliest = nil
for i = 3, #ARGV do
  local seat = ARGV[i]
  local ms = tonumber(redis.call('ZSCORE', KEYS[3], seat))
  if redis.call('HGET', KEYS[1], seat) == 'h' and (ms == nil or ms < until_ms) then
    redis.call('ZADD', KEYS[3], ARGV[2], seat)
    ms = until_ms
  end
  redis.call('HSET', KEYS[1], seat, 'hc')
  if ms and (earliest == nil or ms < earliest) then earliest = ms end
end
return {1, earliest or until_ms}
