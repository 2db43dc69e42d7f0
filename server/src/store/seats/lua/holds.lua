-- The seats a buyer holds and when each hold ends, read atomically. Only
-- seats whose holder is the whole user id and whose state is a hold count
-- (the holder hash names a sold seat's buyer too).
-- KEYS: 1 holder (hash seat → user), 2 expiry (zset seat → ms),
--       3 the buyer's held seats (set), 4 state (hash seat → code)
-- ARGV: 1 user
-- Returns {seat, expires_ms, seat, expires_ms, …}
local out = {}
for _, seat in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local v = redis.call('HGET', KEYS[4], seat)
  if redis.call('HGET', KEYS[1], seat) == ARGV[1] and v and string.sub(v, 1, 1) == 'h' then
    local ms = redis.call('ZSCORE', KEYS[2], seat)
    if ms then
      out[#out + 1] = seat
      out[#out + 1] = ms
    end
  end
end
return out
