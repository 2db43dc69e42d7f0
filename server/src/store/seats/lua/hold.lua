-- Hold all requested seats for a buyer, or none. Bumps the version by the
-- number of seats and appends the change to the log in the same step.
-- Ids are never joined with anything: the state hash holds only a status
-- code, the holder hash the whole user id, the log the seats as JSON.
-- KEYS: 1 state (hash seat → "h"; see checkout.lua and sell.lua for the
--       other codes), 2 holder (hash seat → user),
--       3 expiry (zset seat → ms), 4 the buyer's held seats (set),
--       5 version (counter), 6 log (stream)
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
local held = redis.call('SCARD', KEYS[4])
if held + n > tonumber(ARGV[3]) then return {2, held} end
local user = ARGV[1]
local seats = {}
for i = 5, #ARGV do
  local seat = ARGV[i]
  redis.call('HSET', KEYS[1], seat, 'h')
  redis.call('HSET', KEYS[2], seat, user)
  redis.call('ZADD', KEYS[3], ARGV[2], seat)
  redis.call('SADD', KEYS[4], seat)
  seats[#seats + 1] = seat
end
local version = redis.call('INCRBY', KEYS[5], n)
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[4], '*',
  'v', version, 's', 'h', 'u', user, 'k', 'held', 'j', cjson.encode(seats))
return {1, version}
