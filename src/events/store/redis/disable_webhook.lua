-- tollgate events disable_webhook, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Disables a webhook once: the first caller records when and why, a webhook
-- already disabled keeps its first reason.
--
-- KEYS[1] the webhook's record hash.
-- ARGV[1] when (Unix ms), ARGV[2] the reason.
-- Returns 1 when this call disabled it, 0 when there is no such webhook or
-- it was disabled already.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local d = redis.call('HGET', KEYS[1], 'disabled_at')
if d and d ~= '' then return 0 end
redis.call('HSET', KEYS[1], 'disabled_at', ARGV[1], 'disabled_reason', ARGV[2])
return 1
