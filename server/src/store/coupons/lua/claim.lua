-- Claim one coupon of a campaign for a buyer, or say why not, in one step.
-- The user id is only ever a hash field; values are ours:
--   P|<attempt ms>|<claimed ms>|<instance>|<coupon id>
--                                            reserved by that server process,
--                                            not yet in the log
--   F|<claimed ms>|<coupon id>               the log refused it
--   C|<coupon id>                            in the log
-- KEYS: 1 stock ("-1": unlimited; missing: not loaded), 2 issued (counter),
--       3 claims (hash user -> state; all three expire at the same instant)
-- ARGV: 1 user, 2 now ms, 3 stale ms, 4 a fresh coupon id, 5 the caller's
--       instance, 6 an instance the caller found dead ('' for none)
-- Returns {'cold'} | {'already'} | {'sold_out'} | {'new'}
--       | {'pending', instance} (another process is mid-claim for the buyer)
--       | {'retry', coupon id, claimed ms} | {'corrupt'}
local stock = redis.call('GET', KEYS[1])
if not stock then return {'cold'} end
local user, now = ARGV[1], ARGV[2]
local state = redis.call('HGET', KEYS[3], user)
if state then
  if string.sub(state, 1, 2) == 'C|' then return {'already'} end
  local attempt, claimed, owner, id = string.match(state, '^P|(%-?%d+)|(%-?%d+)|([^|]*)|([^|]+)$')
  if attempt then
    -- Another socket of the buyer is mid-claim, unless its process died
    -- (the caller checked its heartbeat) or it is long overdue.
    local fresh = tonumber(now) - tonumber(attempt) < tonumber(ARGV[3])
    if fresh and owner ~= ARGV[6] then
      if owner == ARGV[5] then return {'already'} end
      return {'pending', owner}
    end
  else
    claimed, id = string.match(state, '^F|(%-?%d+)|([^|]+)$')
    if not claimed then return {'corrupt'} end
  end
  -- The earlier attempt may be in the log or not: send the same coupon
  -- again on the unit it already holds; the writer takes it once.
  redis.call('HSET', KEYS[3], user, 'P|' .. now .. '|' .. claimed .. '|' .. ARGV[5] .. '|' .. id)
  return {'retry', id, claimed}
end
local limit = tonumber(stock)
if limit >= 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= limit then return {'sold_out'} end
local first = redis.call('EXISTS', KEYS[3]) == 0
redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], user, 'P|' .. now .. '|' .. now .. '|' .. ARGV[5] .. '|' .. ARGV[4])
if first then
  -- The campaign's first claim makes the hash: it expires with the stock.
  local at = redis.call('PEXPIRETIME', KEYS[1])
  if at > 0 then redis.call('PEXPIREAT', KEYS[3], at) end
end
return {'new'}
