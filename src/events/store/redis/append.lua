-- tollgate events append, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Appends a batch of one workspace's events to its log in one call (one
-- round trip whatever the batch's size), then trims the log once: to its
-- most entries and to its retention. Trimming after the batch leaves the
-- log as trimming after each entry would.
--
-- KEYS[1] the workspace's event log (a stream).
-- ARGV[1] the most entries kept, ARGV[2] the oldest stream id kept (Unix ms),
-- then per event three values: its id, its type, its JSON.
-- Returns how many were appended.
local n = 0
for i = 3, #ARGV - 2, 3 do
  redis.call('XADD', KEYS[1], '*', 'id', ARGV[i], 'type', ARGV[i + 1], 'json', ARGV[i + 2])
  n = n + 1
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1])
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[2])
return n
