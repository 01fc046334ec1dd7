-- tollgate reap, version 2 (after the refresh.lua prelude, version 2).
-- Loaded by src/credits/redis.rs; change both together and bump the version.
--
-- Releases a workspace's reservations that expired without a settle (their
-- replica died mid-call): what each held goes back to the part it came from
-- (the plan part only within the same period), and the id is remembered in
-- the reaped hash, so a settle arriving later still charges its cost (see
-- settle.lua). The reaped hash expires two days after the last reaping.
--
-- KEYS[1] credits hash, KEYS[2] reservations hash, KEYS[3] expiry zset,
-- KEYS[4] reaped ids hash.
-- ARGV[1] now (Unix ms), ARGV[2] the most to release in this call.
-- Returns how many were released.
local ids = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids == 0 then
  return 0
end
local c = load_credits(KEYS[1])
for _, id in ipairs(ids) do
  local record = redis.call('HGET', KEYS[2], id)
  if record then
    local _, _, kind, p, t, at = string.find(record, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    if at == c.period then
      add(c, kind .. ':plan', tonumber(p))
      add(c, kind .. ':held_plan', -tonumber(p))
    end
    add(c, kind .. ':top_up', tonumber(t))
    add(c, kind .. ':held_top_up', -tonumber(t))
    redis.call('HDEL', KEYS[2], id)
    redis.call('HSET', KEYS[4], id, ARGV[1])
  end
  redis.call('ZREM', KEYS[3], id)
end
save(KEYS[1], c)
redis.call('EXPIRE', KEYS[4], 172800)
return #ids
