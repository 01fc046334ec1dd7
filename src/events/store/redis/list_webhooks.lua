-- tollgate events list_webhooks, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Reads every webhook record of one workspace in one call, so a listing (and
-- the fan-out of each appended event) sees one consistent set.
--
-- KEYS[1] the workspace's set of webhook ids.
-- ARGV[1] the prefix of its webhook record hashes (the id is appended).
-- Returns the records' HGETALL replies, ids whose record is gone skipped.
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local rec = redis.call('HGETALL', ARGV[1] .. id)
  if #rec > 0 then table.insert(out, rec) end
end
return out
