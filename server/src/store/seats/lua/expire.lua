-- End holds whose time is up, checked out ("hc") or not ("h", "hx"); sold
-- seats ("s") have no expiry. Atomic, so each seat's expiry is processed
-- once however many nodes sweep.
-- KEYS: 1 state, 2 holder, 3 expiry, 4 version, 5 log
-- ARGV: 1 now_ms, 2 max seats, 3 log max length, 4 prefix of the per-buyer
--       held-seat sets (the lowercase hex of the user id's bytes is
--       appended; same hash tag as KEYS), 5 prefix of the per-buyer sets
--       of the layout before (user id appended raw)
-- Returns {user, n, seat × n, user, n, …}
local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local order, by_user = {}, {}
for _, seat in ipairs(due) do
  redis.call('ZREM', KEYS[3], seat)
  local v = redis.call('HGET', KEYS[1], seat)
  if v and string.sub(v, 1, 1) == 'h' then
    local user = redis.call('HGET', KEYS[2], seat)
    if user then
      redis.call('SREM', ARGV[4] .. hex(user), seat)
    else
      -- Written by the layout before: "h|user|expires_ms". The expiry is
      -- digits only, so the greedy match takes the whole user id.
      user = string.match(v, '^h|(.*)|%-?%d+$') or ''
      redis.call('SREM', ARGV[5] .. user, seat)
    end
    redis.call('HDEL', KEYS[1], seat)
    redis.call('HDEL', KEYS[2], seat)
    if not by_user[user] then
      by_user[user] = {}
      order[#order + 1] = user
    end
    table.insert(by_user[user], seat)
  end
end
local out = {}
for _, user in ipairs(order) do
  local seats = by_user[user]
  local version = redis.call('INCRBY', KEYS[4], #seats)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*',
    'v', version, 's', 'f', 'u', user, 'k', 'expired', 'j', cjson.encode(seats))
  out[#out + 1] = user
  out[#out + 1] = #seats
  for _, seat in ipairs(seats) do out[#out + 1] = seat end
end
return out
