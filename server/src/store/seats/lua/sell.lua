-- Mark seats sold to a buyer, whatever the store had (the SQL record of the
-- sale is the truth); seats already sold are left as they are. A sold
-- seat's state is "s" and its holder the whole buyer id; it leaves the
-- expiry zset and its holder's held-seat set. Holds of other buyers that
-- were overruled are returned by buyer. One log entry for the seats that
-- changed; the version rises by their number.
-- KEYS: 1 state, 2 holder, 3 expiry, 4 version, 5 log
-- ARGV: 1 user, 2 log max length, 3 prefix of the per-buyer held-seat sets
--       (hex of the user id appended, as in expire.lua), 4 prefix of the
--       per-buyer sets of the layout before (user id appended raw), 5.. seats
-- Returns {version, n, sold seat × n, user, m, seat × m, user, …}
local function hex(s)
  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))
end
local user = ARGV[1]
local sold, order, by_user = {}, {}, {}
for i = 5, #ARGV do
  local seat = ARGV[i]
  local v = redis.call('HGET', KEYS[1], seat)
  if not (v and string.sub(v, 1, 1) == 's') then
    if v then
      local holder = redis.call('HGET', KEYS[2], seat)
      if holder then
        redis.call('SREM', ARGV[3] .. hex(holder), seat)
      else
        -- A hold of the layout before: "h|user|expires_ms".
        holder = string.match(v, '^h|(.*)|%-?%d+$') or ''
        redis.call('SREM', ARGV[4] .. holder, seat)
      end
      if holder ~= user then
        if not by_user[holder] then
          by_user[holder] = {}
          order[#order + 1] = holder
        end
        table.insert(by_user[holder], seat)
      end
    end
    redis.call('ZREM', KEYS[3], seat)
    redis.call('HSET', KEYS[1], seat, 's')
    redis.call('HSET', KEYS[2], seat, user)
    sold[#sold + 1] = seat
  end
end
local version = tonumber(redis.call('GET', KEYS[4]) or '0')
if #sold > 0 then
  version = redis.call('INCRBY', KEYS[4], #sold)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[2], '*',
    'v', version, 's', 's', 'u', user, 'k', 'sold', 'j', cjson.encode(sold))
end
local out = {version, #sold}
for _, seat in ipairs(sold) do out[#out + 1] = seat end
for _, holder in ipairs(order) do
  out[#out + 1] = holder
  out[#out + 1] = #by_user[holder]
  for _, seat in ipairs(by_user[holder]) do out[#out + 1] = seat end
end
return out
