-- replace.lua, version 1: replaces an existing workspace agent's record.
-- Called by src/agents/store/redis.rs (RedisAgents::replace).
-- KEYS[1] the workspace's agents hash; ARGV[1] the id, ARGV[2] the record.
-- Returns 1 replaced, 0 no such agent (nothing written).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
