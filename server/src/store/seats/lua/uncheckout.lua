-- Make those of the seats the buyer holds checked out ordinary holds again
-- ("hc" → "hx": the hold keeps its expiry and will not be extended by a
-- later checkout). Holder compared whole with ==.
-- KEYS: 1 state, 2 holder
-- ARGV: 1 user, 2.. seats
-- Returns the number of seats changed.
local n = 0
for i = 2, #ARGV do
  local seat = ARGV[i]
  if redis.call('HGET', KEYS[1], seat) == 'hc' and redis.call('HGET', KEYS[2], seat) == ARGV[1] then
    redis.call('HSET', KEYS[1], seat, 'hx')
    n = n + 1
  end
end
return n
