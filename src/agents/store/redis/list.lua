-- list.lua, version 1: one page of a workspace's agents, by id. Called by
-- src/agents/store/redis.rs (RedisAgents::list).
-- KEYS[1] the agents hash, KEYS[2] the ids sorted set (scores 0: by id)
-- ARGV[1] list after this id ('' from the first), ARGV[2] at most this many
-- Returns a flat array id1, record1, id2, record2, ...
local min = '-'
if ARGV[1] ~= '' then
  min = '(' .. ARGV[1]
end
local ids = redis.call('ZRANGEBYLEX', KEYS[2], min, '+', 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then
  return {}
end
local records = redis.call('HMGET', KEYS[1], unpack(ids))
local out = {}
for i, id in ipairs(ids) do
  if records[i] then
    out[#out + 1] = id
    out[#out + 1] = records[i]
  end
end
return out
