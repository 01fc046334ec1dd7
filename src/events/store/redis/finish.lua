-- tollgate events finish, version 1.
-- Loaded by src/events/store/redis.rs; change both together and bump the version.
--
-- Finishes a batch of claimed deliveries in one step: each done one is
-- acknowledged and deleted; each one to retry is acknowledged and moved to the
-- retry set, only if this replica still held it (another that took it over
-- meanwhile owns it now).
--
-- KEYS[1] the delivery stream, KEYS[2] the retry set.
-- ARGV[1] the consumer group, then three per delivery: its stream entry id,
-- when its retry is due (Unix ms; empty when done), the retry set member (the
-- delivery as JSON; empty when done).
-- Returns how many retries were scheduled.
local done = {}
local scheduled = 0
for i = 2, #ARGV, 3 do
  local id, due = ARGV[i], ARGV[i + 1]
  if due == '' then
    done[#done + 1] = id
  elseif redis.call('XACK', KEYS[1], ARGV[1], id) == 1 then
    redis.call('XDEL', KEYS[1], id)
    redis.call('ZADD', KEYS[2], due, ARGV[i + 2])
    scheduled = scheduled + 1
  end
end
if #done > 0 then
  redis.call('XACK', KEYS[1], ARGV[1], unpack(done))
  redis.call('XDEL', KEYS[1], unpack(done))
end
return scheduled
