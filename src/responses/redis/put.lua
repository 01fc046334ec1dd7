-- tollgate responses put, version 2.
-- Loaded by src/responses/redis.rs; change both together and bump the version.
--
-- Writes one stored response whole, or nothing when its id is taken in its
-- scope: the record hash, its items and their ids, each expiring at the
-- response's expires_at (Redis deletes them itself; an expires_at already
-- past deletes them at once, so the response is gone, as it should be), and
-- one entry per item in the scope's index of that item id (read by
-- items.lua).
--
-- KEYS[1] the record hash, KEYS[2] its items list, KEYS[3] its item ids list,
-- then KEYS[3 + i] the index list of item i's id, for each of the n items
-- (one hash tag, the scope's: one Cluster slot).
-- ARGV[1] created_at, ARGV[2] expires_at (Unix s), ARGV[3] the previous
-- response's id in key form ('' for none), ARGV[4] how many items are inputs,
-- ARGV[5] the Response JSON, ARGV[6] this response's id in key form, ARGV[7]
-- n, the number of items; then the n items (inputs first) and then their n
-- ids, in the same order.
-- Returns 1 when written, 0 when the id is taken.
--
-- Version 2 added the item index (KEYS[4..], ARGV[6]); version 1 wrote none,
-- so the items of responses it stored are not found by id.
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
local n = tonumber(ARGV[7])
-- unpack() of many values at once overflows Lua's C stack: push in chunks.
local chunk = 1000
for first = 1, n, chunk do
  local last = math.min(first + chunk - 1, n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 7 + first, 7 + last))
  redis.call('RPUSH', KEYS[3], unpack(ARGV, 7 + n + first, 7 + n + last))
end
for i = 1, 3 do
  redis.call('EXPIREAT', KEYS[i], ARGV[2])
end
-- Each index entry is '<position in the items list> <response id in key
-- form>', newest last. An index lives as long as the longest-lived response
-- it names: its expiry only ever moves later. Entries of responses deleted
-- or expired meanwhile stay until then; items.lua skips them.
local now = tonumber(redis.call('TIME')[1])
local expires = tonumber(ARGV[2])
for i = 1, n do
  local index = KEYS[3 + i]
  redis.call('RPUSH', index, (i - 1) .. ' ' .. ARGV[6])
  local ttl = redis.call('TTL', index)
  if ttl < 0 or now + ttl < expires then
    redis.call('EXPIREAT', index, ARGV[2])
  end
end
return 1
