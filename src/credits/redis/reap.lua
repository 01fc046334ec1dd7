-- tollgate reap, version 5 (after the refresh.lua prelude, version 3).
-- Loaded by src/credits/redis.rs; change both together and bump the version.
--
-- Releases a workspace's reservations that expired without a settle (their
-- replica died mid-call): what each held goes back to the part it came from
-- (the plan part only within the same period), and the id is remembered in
-- the reaped hash, so a settle arriving later still charges its cost (see
-- settle.lua). The reaped hash expires two days after the last reaping.
-- The expiry is read from each record (the reservations hash holds only the
-- calls in flight); a record without one (written by admit v2) counts as
-- expired, so an upgrade leaves nothing held forever. v4: a cancel's
-- tombstone (kind `cancelled`, see cancel.lua) is only deleted once expired.
-- v5: fields after the expiry (admit v6's granted count) are ignored.
--
-- KEYS[1] credits hash, KEYS[2] reservations hash, KEYS[3] v2's expiry index
-- (deleted), KEYS[4] reaped ids hash.
-- ARGV[1] now (Unix ms), ARGV[2] the most to release in this call.
-- Returns how many were released.
redis.call('DEL', KEYS[3])
local flat = redis.call('HGETALL', KEYS[2])
local now, most = tonumber(ARGV[1]), tonumber(ARGV[2])
local released = 0
local c = nil
for i = 1, #flat, 2 do
  if released >= most then
    break
  end
  local id, record = flat[i], flat[i + 1]
  local _, _, kind, p, t, at, expires = string.find(record, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|?([^|]*)')
  if kind == 'cancelled' then
    if (tonumber(expires) or 0) <= now then
      redis.call('HDEL', KEYS[2], id)
    end
  elseif kind and (tonumber(expires) or 0) <= now then
    c = c or load_credits(KEYS[1])
    release(c, kind, tonumber(p), tonumber(t), at)
    redis.call('HDEL', KEYS[2], id)
    redis.call('HSET', KEYS[4], id, ARGV[1])
    released = released + 1
  end
end
if c then
  save(KEYS[1], c)
  redis.call('EXPIRE', KEYS[4], 172800)
end
return released
