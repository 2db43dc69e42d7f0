-- Hold all requested seats for a buyer, or none. Bumps the version by the
-- number of seats and appends the change to the log in the same step.
-- KEYS: 1 state (hash seat → "h|user|expires_ms"), 2 expiry (zset seat → ms),
--       3 the buyer's held seats (set), 4 version (counter), 5 log (stream)
-- ARGV: 1 user, 2 expires_ms, 3 max per buyer, 4 log max length, 5.. seats
-- Returns {1, version} | {0, taken...} | {2, held}
local taken = {}
for i = 5, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then taken[#taken + 1] = ARGV[i] end
end
if #taken > 0 then
  table.insert(taken, 1, 0)
  return taken
end
local n = #ARGV - 4
local held = redis.call('SCARD', KEYS[3])
if held + n > tonumber(ARGV[3]) then return {2, held} end
local value = 'h|' .. ARGV[1] .. '|' .. ARGV[2]
local seats = {}
for i = 5, #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], value)
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
  redis.call('SADD', KEYS[3], ARGV[i])
  seats[#seats + 1] = ARGV[i]
end
local version = redis.call('INCRBY', KEYS[4], n)
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*',
  'v', version, 's', 'h', 'u', ARGV[1], 'k', 'held', 'c', table.concat(seats, ','))
return {1, version}
