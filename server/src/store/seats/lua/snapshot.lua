-- The version and every seat that is not free, read atomically.
-- KEYS: 1 state (hash seat → status code), 2 version
-- Returns {version, seat, code, seat, code, …}
local out = {tonumber(redis.call('GET', KEYS[2]) or '0')}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  out[#out + 1] = all[i]
  -- The code is the first letter: "h", "hc", "hx" are holds, "s" is
  -- sold; the layout before stored "h|user|ms".
  out[#out + 1] = string.sub(all[i + 1], 1, 1)
end
return out
