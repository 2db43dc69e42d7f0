-- Set a live campaign's stock, unless fewer than already issued. The
-- stock key keeps its expiry (the same as the campaign's other keys).
-- KEYS: 1 stock, 2 issued
-- ARGV: 1 new stock ("-1": unlimited)
-- Returns {'ok'} | {'below', issued} | {'cold'}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'cold'} end
local issued = redis.call('GET', KEYS[2]) or '0'
local limit = tonumber(ARGV[1])
if limit >= 0 and tonumber(issued) > limit then return {'below', issued} end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
return {'ok'}
