-- tollgate record save, version 1.
-- Loaded by src/records/redis.rs; change both together and bump the version.
--
-- Compare-and-set of one record: writes it when the stored version
-- is ARGV[1] ('' = only when there is no record), bumping the version, and
-- lists its id in its collection's index.
--
-- KEYS[1] the record hash, KEYS[2] the collection's index (sorted set, score 0,
-- members in name order). One hash tag, the collection's.
-- ARGV[1] the expected version or '', ARGV[2] the record JSON, ARGV[3] its
-- expires_at (Unix s), ARGV[4] the record's id.
-- Returns 1 when written, 0 when the version did not match.
local v = redis.call('HGET', KEYS[1], 'v')
local next
if ARGV[1] == '' then
  if v then
    return 0
  end
  next = 1
else
  if v ~= ARGV[1] then
    return 0
  end
  next = tonumber(v) + 1
end
redis.call('HSET', KEYS[1], 'v', next, 'record', ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return 1
