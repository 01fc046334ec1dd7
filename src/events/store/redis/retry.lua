-- tollgate events retry, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Acknowledges a delivery and schedules its retry in one step, only if this
-- replica still held it (another that took it over meanwhile owns it now).
--
-- KEYS[1] the delivery stream, KEYS[2] the retry set.
-- ARGV[1] the consumer group, ARGV[2] the stream entry id, ARGV[3] when the
-- retry is due (Unix ms), ARGV[4] the retry set member (the delivery as JSON).
-- Returns 1 when scheduled, 0 when the entry was no longer held.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
