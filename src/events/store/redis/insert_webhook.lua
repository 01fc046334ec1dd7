-- tollgate events insert_webhook, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Registers one webhook atomically: the workspace's cap is checked, the
-- record written and its id added to the workspace's set, or nothing is.
--
-- KEYS[1] the workspace's set of webhook ids, KEYS[2] the webhook's record hash.
-- ARGV[1] the most webhooks a workspace may have, ARGV[2] the webhook id,
-- ARGV[3..] the record's fields and values, alternating.
-- Returns 1 when written, 0 when the workspace is at its cap, -1 when the
-- record exists already.
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[1], ARGV[2])
return 1
