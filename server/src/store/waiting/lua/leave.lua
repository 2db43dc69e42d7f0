-- Give up a place in line or an open window.
-- KEYS: 1 wait, 2 seen, 3 active; ARGV: 1 user. Returns how many were removed.
local n = redis.call('ZREM', KEYS[1], ARGV[1]) + redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return n
