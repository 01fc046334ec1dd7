-- tollgate events count_attempt, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Counts one delivery attempt against a webhook's consecutive failures,
-- atomically: a success resets them, a failure adds one.
--
-- KEYS[1] the webhook's record hash.
-- ARGV[1] '1' for a success, else a failure.
-- Returns the consecutive failures after this attempt (0 when there is no
-- such webhook).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'failures', 0) return 0 end
return redis.call('HINCRBY', KEYS[1], 'failures', 1)
