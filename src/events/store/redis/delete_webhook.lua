-- tollgate events delete_webhook, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Removes one webhook whole, in one call: its record, its id from the
-- workspace's set and its attempts list.
--
-- KEYS[1] the workspace's set of webhook ids, KEYS[2] the webhook's record
-- hash, KEYS[3] its attempts list.
-- ARGV[1] the webhook id.
-- Returns 1 when the record existed, else 0.
local n = redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[3])
return n
