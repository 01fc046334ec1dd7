-- insert.lua, version 1: stores a new workspace agent, unless its id is
-- taken or the workspace is full. Called by src/agents/store/redis.rs
-- (RedisAgents::insert).
-- KEYS[1] the workspace's agents hash (id -> JSON record)
-- KEYS[2] the workspace's agent ids (sorted set, all scores 0: by id)
-- ARGV[1] the id, ARGV[2] the record, ARGV[3] the most agents a workspace holds
-- Returns 1 created, 0 the id exists, -1 the workspace is full.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return -1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
