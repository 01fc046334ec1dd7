-- tollgate responses history, version 1.
-- Loaded by src/responses/redis.rs; change both together and bump the version.
--
-- Walks a chain of stored responses back from KEYS[1] through each record's
-- `prev` link, collecting items from the newest turn back until it has
-- enough, and returns them oldest first. The chain ends at the first record
-- that is missing (deleted or expired), at a record without `prev`, or after
-- ARGV[3] records.
--
-- Cluster: the records it walks are not in KEYS (they are only known as it
-- goes), but every one of them is named ARGV[1] .. id and so shares KEYS[1]'s
-- hash tag, the scope's: they all live in KEYS[1]'s slot, on this node.
--
-- KEYS[1] the record hash of the response the chain ends at.
-- ARGV[1] the scope's record name prefix (KEYS[1] is ARGV[1] .. its id in key
-- form, and so is every `prev`), ARGV[2] the most items to return,
-- ARGV[3] the most records to visit.
-- Returns nil when KEYS[1] is missing; else the items, oldest first (each
-- turn's inputs then outputs; the oldest turn taken may be cut part-way).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local want, hops = tonumber(ARGV[2]), tonumber(ARGV[3])
local turns = {}
local taken = 0
local name = KEYS[1]
for _ = 1, hops do
  if taken >= want then
    break
  end
  local list = name .. ':items'
  local len = redis.call('LLEN', list)
  local take = math.min(len, want - taken)
  if take > 0 then
    table.insert(turns, redis.call('LRANGE', list, len - take, -1))
    taken = taken + take
  end
  local prev = redis.call('HGET', name, 'prev')
  if not prev then
    break
  end
  name = ARGV[1] .. prev
  if redis.call('EXISTS', name) == 0 then
    break
  end
end
local items = {}
for t = #turns, 1, -1 do
  for _, item in ipairs(turns[t]) do
    items[#items + 1] = item
  end
end
return items
