-- For a payment that arrived: every seat free or held by the buyer becomes
-- the buyer's checked-out hold ("hc") until at least until_ms, or, if any
-- is held by someone else or sold, nothing changes. No hold limit. Seats
-- that were free are logged as held (cause "retaken") and raise the
-- version; seats the buyer already held change status not at all.
-- KEYS: 1 state, 2 holder, 3 expiry, 4 the buyer's held seats,
--       5 version, 6 log
-- ARGV: 1 user, 2 until_ms, 3 log max length, 4.. seats
-- Returns {1, version, earliest expiry after} | {0, seats not retakeable…}
local user, until_ms = ARGV[1], tonumber(ARGV[2])
local refused = {}
for i = 4, #ARGV do
  local seat = ARGV[i]
  local v = redis.call('HGET', KEYS[1], seat)
  if v and not ((v == 'h' or v == 'hc' or v == 'hx') and redis.call('HGET', KEYS[2], seat) == user) then
    refused[#refused + 1] = seat
  end
end
if #refused > 0 then
  table.insert(refused, 1, 0)
  return refused
end
local taken, earliest = {}, nil
for i = 4, #ARGV do
  local seat = ARGV[i]
  local ms = nil
  if redis.call('HEXISTS', KEYS[1], seat) == 1 then
    ms = tonumber(redis.call('ZSCORE', KEYS[3], seat))
  else
    redis.call('HSET', KEYS[2], seat, user)
    taken[#taken + 1] = seat
  end
  redis.call('SADD', KEYS[4], seat)
  if ms == nil or ms < until_ms then
    redis.call('ZADD', KEYS[3], ARGV[2], seat)
    ms = until_ms
  end
  redis.call('HSET', KEYS[1], seat, 'hc')
  if earliest == nil or ms < earliest then earliest = ms end
end
local version = tonumber(redis.call('GET', KEYS[5]) or '0')
if #taken > 0 then
  version = redis.call('INCRBY', KEYS[5], #taken)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[3], '*',
    'v', version, 's', 'h', 'u', user, 'k', 'retaken', 'j', cjson.encode(taken))
end
return {1, version, earliest or until_ms}
