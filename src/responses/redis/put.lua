-- tollgate responses put, version 1.
-- Loaded by src/responses/redis.rs; change both together and bump the version.
--
-- Writes one stored response whole, or nothing when its id is taken in its
-- scope: the record hash, its items and their ids, each expiring at the
-- response's expires_at (Redis deletes them itself; an expires_at already
-- past deletes them at once, so the response is gone, as it should be).
--
-- KEYS[1] the record hash, KEYS[2] its items list, KEYS[3] its item ids list
-- (one hash tag, the scope's: one Cluster slot).
-- ARGV[1] created_at, ARGV[2] expires_at (Unix s), ARGV[3] the previous
-- response's id in key form ('' for none), ARGV[4] how many items are inputs,
-- ARGV[5] the Response JSON, ARGV[6] n, the number of items; then the n items
-- (inputs first) and then their n ids, in the same order.
-- Returns 1 when written, 0 when the id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
-- Lists left without their record (a hand-deleted hash) must not leak in.
redis.call('DEL', KEYS[2], KEYS[3])
local fields = {'created_at', ARGV[1], 'expires_at', ARGV[2], 'inputs', ARGV[4], 'response', ARGV[5]}
if ARGV[3] ~= '' then
  table.insert(fields, 'prev')
  table.insert(fields, ARGV[3])
end
redis.call('HSET', KEYS[1], unpack(fields))
local n = tonumber(ARGV[6])
-- unpack() of many values at once overflows Lua's C stack: push in chunks.
local chunk = 1000
for first = 1, n, chunk do
  local last = math.min(first + chunk - 1, n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 6 + first, 6 + last))
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 6 + n + first, 6 + n + last))
end
for i = 1, 3 do
  redis.call('EXPIREAT', KEYS[i], ARGV[2])
end
return 1
