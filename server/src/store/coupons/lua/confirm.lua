-- Mark a buyer's coupon as in the log, after the brokers confirmed it.
-- KEYS: 1 stock, 2 issued, 3 claims
-- ARGV: 1 user, 2 coupon id
-- Returns 'confirmed' (the state named this coupon) | 'other' (the buyer
-- has another coupon) | 'cold' (not loaded: the loader waits for the log,
-- so it will count this one) | 'adopted' (reloaded without it while it was
-- on its way; counted now) | 'full' (reloaded without it, no unit left)
local state = redis.call('HGET', KEYS[3], ARGV[1])
if state then
  if string.match(state, '|([^|]+)$') == ARGV[2] then
    redis.call('HSET', KEYS[3], ARGV[1], 'C|' .. ARGV[2])
    return 'confirmed'
  end
  return 'other'
end
local stock = redis.call('GET', KEYS[1])
if not stock then return 'cold' end
local limit = tonumber(stock)
if limit >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= limit then return 'full' end
redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], ARGV[1], 'C|' .. ARGV[2])
return 'adopted'
