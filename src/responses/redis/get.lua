-- tollgate responses get, version 1.
-- Loaded by src/responses/redis.rs; change both together and bump the version.
--
-- Reads a stored response and its items in one step, so a concurrent delete
-- is seen whole or not at all.
--
-- KEYS[1] the record hash, KEYS[2] its items list.
-- Returns nil when there is no such record; else {record fields and values
-- (flat), items (inputs first)}.
local record = redis.call('HGETALL', KEYS[1])
if #record == 0 then
  return false
end
return {record, redis.call('LRANGE', KEYS[2], 0, -1)}
