-- End holds whose time is up. Atomic, so each seat's expiry is processed
-- once however many nodes sweep.
-- KEYS: 1 state, 2 expiry, 3 version, 4 log
-- ARGV: 1 now_ms, 2 max seats, 3 log max length, 4 prefix of the per-buyer
--       held-seat sets (the buyer id is appended; same hash tag as KEYS)
-- Returns {user, n, seat × n, user, n, …}
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local order, by_user = {}, {}
for _, seat in ipairs(due) do
  redis.call('ZREM', KEYS[2], seat)
  local v = redis.call('HGET', KEYS[1], seat)
  if v and string.sub(v, 1, 2) == 'h|' then
    local user = string.match(v, '^h|(.*)|[^|]*$')
    redis.call('HDEL', KEYS[1], seat)
    redis.call('SREM', ARGV[4] .. user, seat)
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
  local version = redis.call('INCRBY', KEYS[3], #seats)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*',
    'v', version, 's', 'f', 'u', user, 'k', 'expired', 'c', table.concat(seats, ','))
  out[#out + 1] = user
  out[#out + 1] = #seats
  for _, seat in ipairs(seats) do out[#out + 1] = seat end
end
return out
