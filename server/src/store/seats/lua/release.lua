-- Release those of the seats the buyer holds (all of them when no seat is
-- named and ARGV[4] is "all").
-- KEYS: 1 state, 2 expiry, 3 the buyer's held seats, 4 version, 5 log
-- ARGV: 1 user, 2 log max length, 3 cause, 4 "all"|"some", 5.. seats
-- Returns {version after, released seats…}.
local user = ARGV[1]
local wanted = {}
if ARGV[4] == 'all' then
  wanted = redis.call('SMEMBERS', KEYS[3])
  table.sort(wanted)
else
  for i = 5, #ARGV do wanted[#wanted + 1] = ARGV[i] end
end
local prefix = 'h|' .. user .. '|'
local released = {}
for _, seat in ipairs(wanted) do
  local v = redis.call('HGET', KEYS[1], seat)
  if v and string.sub(v, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], seat)
    redis.call('ZREM', KEYS[2], seat)
    redis.call('SREM', KEYS[3], seat)
    released[#released + 1] = seat
  end
end
local version = tonumber(redis.call('GET', KEYS[4]) or '0')
if #released > 0 then
  version = redis.call('INCRBY', KEYS[4], #released)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*',
    'v', version, 's', 'f', 'u', user, 'k', ARGV[3], 'c', table.concat(released, ','))
end
table.insert(released, 1, version)
return released
