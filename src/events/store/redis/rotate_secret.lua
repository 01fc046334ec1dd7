-- tollgate events rotate_secret, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Replaces a webhook's signing secret, keeping the old one as the previous
-- secret until a deadline, in one step (no reader sees one without the other).
--
-- KEYS[1] the webhook's record hash.
-- ARGV[1] the new secret, ARGV[2] until when the old one still signs (Unix ms).
-- Returns 1 when rotated, 0 when there is no such webhook.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], 'secret')
redis.call('HSET', KEYS[1], 'previous_secret', old, 'previous_until_ms', ARGV[2], 'secret', ARGV[1])
return 1
