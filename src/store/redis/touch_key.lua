-- tollgate touch_key, version 1.
-- Loaded by src/store/redis.rs (`TOUCH_KEY`, through include_str!); change
-- both together and bump the version.
--
-- Moves a key record's `last_used_at` forward, never back, atomically.
-- KEYS[1]: the key record (a hash, `<prefix>:key:{<workspace>}:<key id>`).
-- ARGV[1]: the time the key was last used, Unix seconds.
-- Returns 1 when the time was written; 0 when there is no record or it already
-- holds this time or a later one. An unreadable stored time is overwritten.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local current = tonumber(redis.call('HGET', KEYS[1], 'last_used_at'))
if current and current >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1])
return 1
