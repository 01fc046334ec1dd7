-- tollgate events promote, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Moves due retries back into the delivery stream: each is added to the
-- stream and removed from the retry set in the same call, so none is lost or
-- queued twice.
--
-- KEYS[1] the retry set (members are deliveries as JSON, scored by due time),
-- KEYS[2] the delivery stream.
-- ARGV[1] now (Unix ms): members scored up to it are due, ARGV[2] the most
-- to move at once.
-- Returns how many were moved.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  local f = cjson.decode(member)
  redis.call('XADD', KEYS[2], '*', 'webhook', f.webhook, 'workspace', f.workspace, 'event_id', f.event_id,
    'event_type', f.event_type, 'body', f.body, 'attempts', f.attempts, 'queued_at', f.queued_at)
  redis.call('ZREM', KEYS[1], member)
end
return #due
