-- delete.lua, version 1: deletes a workspace agent, and the workspace's
-- default agent when it named it. Called by src/agents/store/redis.rs
-- (RedisAgents::delete).
-- KEYS[1] the agents hash, KEYS[2] the ids sorted set, KEYS[3] the default
-- ARGV[1] the id. Returns 1 deleted, 0 no such agent.
local deleted = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if deleted == 1 and redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return deleted
