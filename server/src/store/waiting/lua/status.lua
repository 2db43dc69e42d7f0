-- Statuses of many buyers in one round trip; marks the waiting ones seen.
-- KEYS: 1 wait, 2 seen, 3 active, 4 stats (hash)
-- ARGV: 1 now_ms, 2.. users
-- Returns {waiting, {per_min, low, high}, code...} where code is the
-- position (> 0), minus the window end (< 0) when admitted, or 0 when gone.
local now = tonumber(ARGV[1])
local out = {redis.call('ZCARD', KEYS[1]), redis.call('HMGET', KEYS[4], 'per_min', 'low_per_min', 'high_per_min')}
for i = 2, #ARGV do
  local u = ARGV[i]
  local rank = redis.call('ZRANK', KEYS[1], u)
  if rank then
    redis.call('ZADD', KEYS[2], 'GT', now, u)
    out[#out + 1] = rank + 1
  else
    local until_ms = tonumber(redis.call('ZSCORE', KEYS[3], u))
    if until_ms and until_ms > now then out[#out + 1] = -until_ms else out[#out + 1] = 0 end
  end
end
return out
