-- Put sold seats back on sale (a refund); seats not sold are left. One log
-- entry per buyer the seats were sold to (the holder hash names them
-- whole), cause "refunded"; the version rises by the seats freed.
-- KEYS: 1 state, 2 holder, 3 version, 4 log
-- ARGV: 1 log max length, 2.. seats
-- Returns {version after, freed seats…}
local freed, order, by_user = {}, {}, {}
for i = 2, #ARGV do
  local seat = ARGV[i]
  local v = redis.call('HGET', KEYS[1], seat)
  if v and string.sub(v, 1, 1) == 's' then
    local buyer = redis.call('HGET', KEYS[2], seat) or ''
    redis.call('HDEL', KEYS[1], seat)
    redis.call('HDEL', KEYS[2], seat)
    if not by_user[buyer] then
      by_user[buyer] = {}
      order[#order + 1] = buyer
    end
    table.insert(by_user[buyer], seat)
    freed[#freed + 1] = seat
  end
end
local version = tonumber(redis.call('GET', KEYS[3]) or '0')
for _, buyer in ipairs(order) do
  local seats = by_user[buyer]
  version = redis.call('INCRBY', KEYS[3], #seats)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[1], '*',
    'v', version, 's', 'f', 'u', buyer, 'k', 'refunded', 'j', cjson.encode(seats))
end
table.insert(freed, 1, version)
return freed
