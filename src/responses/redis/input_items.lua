-- tollgate responses input_items, version 1.
-- Loaded by src/responses/redis.rs; change both together and bump the version.
--
-- One page of a stored response's input items (the first `inputs` entries of
-- its lists), after the item whose id is the cursor.
--
-- KEYS[1] the record hash, KEYS[2] its items list, KEYS[3] its item ids list.
-- ARGV[1] the page size (at least 1), ARGV[2] 'asc' or 'desc', ARGV[3] (only
-- when there is a cursor) the id of the item the page starts after.
-- Returns nil when there is no such record; else {has_more (1 or 0), ids,
-- items}, both oldest first whatever the order (the caller reverses a desc
-- page). A cursor that is not an input item's id gives an empty page.
local inputs = redis.call('HGET', KEYS[1], 'inputs')
if not inputs then
  return false
end
inputs = tonumber(inputs)
local size = tonumber(ARGV[1])
local at = nil
if #ARGV >= 3 then
  -- MAXLEN 0 would mean the whole list: without inputs there is no cursor.
  if inputs > 0 then
    at = redis.call('LPOS', KEYS[3], ARGV[3], 'MAXLEN', inputs)
  end
  if not at then
    return {0, {}, {}}
  end
end
local from, to, more
if ARGV[2] == 'asc' then
  from = at and at + 1 or 0
  to = math.min(from + size, inputs) - 1
  more = from + size < inputs
else
  to = (at or inputs) - 1
  from = math.max(to - size + 1, 0)
  more = from > 0
end
if to < from then
  return {0, {}, {}}
end
return {more and 1 or 0, redis.call('LRANGE', KEYS[3], from, to), redis.call('LRANGE', KEYS[2], from, to)}
