-- tollgate events enqueue, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Adds a batch of webhook deliveries to the delivery stream in one call (one
-- round trip whatever the batch's size), each as a fresh delivery: no
-- attempts yet.
--
-- KEYS[1] the delivery stream.
-- ARGV per delivery six values: webhook id, workspace, event id, event type,
-- body (the event's JSON), queued at (Unix ms).
-- Returns how many were added.
local n = 0
for i = 1, #ARGV - 5, 6 do
  redis.call('XADD', KEYS[1], '*', 'webhook', ARGV[i], 'workspace', ARGV[i + 1], 'event_id', ARGV[i + 2],
    'event_type', ARGV[i + 3], 'body', ARGV[i + 4], 'attempts', '0', 'queued_at', ARGV[i + 5])
  n = n + 1
end
return n
