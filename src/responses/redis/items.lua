-- tollgate responses items, version 1.
-- Loaded by src/responses/redis.rs; change both together and bump the version.
--
-- Finds stored items by id in one scope: for each id, the newest entry of
-- its index list (written by put.lua, version 2) whose response is live and
-- still holds an item of that id at that position.
--
-- Cluster: the records the entries name are not in KEYS (they are only
-- known from the index), but every one of them is named ARGV[1] .. id and so
-- shares the hash tag of KEYS, the scope's: they all live in one slot, on
-- this node.
--
-- KEYS[k] the index list of the k-th id looked up (distinct ids).
-- ARGV[1] the scope's record name prefix, ARGV[1 + k] the k-th id.
-- Returns the items found, in the order of their ids; an id with no live
-- item is left out.
local found = {}
for k = 1, #KEYS do
  local index, id = KEYS[k], ARGV[k + 1]
  for at = redis.call('LLEN', index) - 1, 0, -1 do
    local position, response = string.match(redis.call('LINDEX', index, at), '^(%d+) (.*)$')
    if position then
      local record = ARGV[1] .. response
      -- A deleted or expired response is gone (Redis hides an expired key at
      -- once); an id stored again after its expiry holds other items, so the
      -- item at the position must still have this id.
      if redis.call('EXISTS', record) == 1 and redis.call('LINDEX', record .. ':ids', position) == id then
        local item = redis.call('LINDEX', record .. ':items', position)
        if item then
          found[#found + 1] = item
        end
        break
      end
    end
  end
end
return found
