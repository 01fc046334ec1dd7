-- tollgate record list, version 1.
-- Loaded by src/records/redis.rs; change both together and bump the version.
--
-- One page of a collection's records by id: walks the index from just after
-- ARGV[2], reads each record, and drops index entries whose record is gone
-- (expired or deleted), until it has ARGV[3] records or the index ends.
--
-- Cluster: the records are not in KEYS, but each is named ARGV[1] .. name
-- and so shares KEYS[1]'s hash tag: they live in its slot.
--
-- KEYS[1] the collection's index. ARGV[1] the record name prefix, ARGV[2] the
-- name to start after ('' from the first), ARGV[3] how many to return.
-- Returns a flat list: name, version, record JSON, ...
local want = tonumber(ARGV[3])
local from = ARGV[2] == '' and '-' or '(' .. ARGV[2]
local out = {}
local found = 0
while found < want do
  local names = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, want - found)
  if #names == 0 then
    break
  end
  for _, name in ipairs(names) do
    local fields = redis.call('HMGET', ARGV[1] .. name, 'v', 'record')
    if fields[1] then
      out[#out + 1] = name
      out[#out + 1] = fields[1]
      out[#out + 1] = fields[2]
      found = found + 1
    else
      redis.call('ZREM', KEYS[1], name)
    end
    from = '(' .. name
  end
end
return out
