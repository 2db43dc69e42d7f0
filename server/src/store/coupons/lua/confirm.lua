-- Mark a buyer's coupon as in the log, after the brokers confirmed it.
-- KEYS: 1 stock, 2 issued, 3 claims
-- ARGV: 1 user, 2 coupon id
-- Returns 'confirmed' (the state named this coupon) | 'other' (the buyer
-- has another coupon) | 'cold' (not loaded: Redis lost the campaign while
-- this claim was on its way; the loader waits out the produce window and
-- the log, so it will count this one) | 'adopted' (reloaded without it: it
-- took longer than the produce window; counted now) | 'full' (reloaded
-- without it, no unit left)
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
local first = redis.call('EXISTS', KEYS[3]) == 0
redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], ARGV[1], 'C|' .. ARGV[2])
if first then
  local at = redis.call('PEXPIRETIME', KEYS[1])
  if at > 0 then redis.call('PEXPIREAT', KEYS[3], at) end
end
return 'adopted'
