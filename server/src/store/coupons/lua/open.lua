-- Make a campaign that was just created live at once: its stock, nothing
-- issued, no claims. Only if it is not live already (a loader, or an
-- earlier open, got there first: that one stands).
-- KEYS: 1 stock, 2 issued, 3 claims
-- ARGV: 1 stock ("-1": unlimited), 2 when the keys expire (unix ms)
-- Returns 1 when opened, 0 when it was live already
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
-- Nothing can be claimed without the stock key: a claims hash here is a
-- stray one.
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], '0', 'PXAT', ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1
