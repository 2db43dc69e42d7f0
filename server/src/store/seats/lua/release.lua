-- Release those of the seats the buyer holds (all of them when no seat is
-- named and ARGV[4] is "all"). A seat is the buyer's when its holder is the
-- whole user id, compared with ==, and its state a hold ("h", or "hx" once
-- checked out and back). Checked-out holds ("hc") are kept for the order
-- and sold seats ("s") are not holds: neither is released nor reported.
-- KEYS: 1 state, 2 holder, 3 expiry, 4 the buyer's held seats, 5 version, 6 log
-- ARGV: 1 user, 2 log max length, 3 cause, 4 "all"|"some", 5.. seats
-- Returns {version after, released seats…}.
local user = ARGV[1]
local wanted = {}
if ARGV[4] == 'all' then
  wanted = redis.call('SMEMBERS', KEYS[4])
  table.sort(wanted)
else
  for i = 5, #ARGV do wanted[#wanted + 1] = ARGV[i] end
end
local released = {}
for _, seat in ipairs(wanted) do
  local mine = redis.call('HGET', KEYS[2], seat) == user
  local v = redis.call('HGET', KEYS[1], seat)
  if mine and (v == 'h' or v == 'hx') then
    redis.call('HDEL', KEYS[1], seat)
    redis.call('HDEL', KEYS[2], seat)
    redis.call('ZREM', KEYS[3], seat)
    redis.call('SREM', KEYS[4], seat)
    released[#released + 1] = seat
  elseif ARGV[4] == 'all' and not (mine and v == 'hc') then
    -- In the buyer's set but not their hold: a leftover, it must not count.
    redis.call('SREM', KEYS[4], seat)
  end
end
local version = tonumber(redis.call('GET', KEYS[5]) or '0')
if #released > 0 then
  version = redis.call('INCRBY', KEYS[5], #released)
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[2], '*',
    'v', version, 's', 'f', 'u', user, 'k', ARGV[3], 'j', cjson.encode(released))
end
table.insert(released, 1, version)
return released
