-- tollgate cancel, version 2 (after the refresh.lua prelude, version 3).
-- Loaded by src/credits/redis.rs; change both together and bump the version.
--
-- Undoes an admission the gateway gave up on (admit.lua timed out or failed,
-- and the caller was answered 503): the gateway queues this script with the
-- reservation's id and retries it until Redis answers, like a settle.
-- - The admission ran: what it held goes back (the plan part only within the
--   same period), its limiter charges are refunded, and its record deleted.
-- - It has not run (yet): a tombstone takes its place in the reservations
--   hash, so an admission that arrives later finds it and writes nothing
--   (admit.lua v5 writes its record with HSETNX first). The reaper deletes
--   the tombstone after the reservation's expiry.
--
-- KEYS[1] credits hash, KEYS[2] reservations hash,
-- KEYS[3..6] limiters: key rpm, workspace rpm, key tpm, workspace tpm.
-- ARGV[1] reservation id, ARGV[2] tombstone expiry (Unix ms),
-- ARGV[3..6] the four limits (0: none), ARGV[7] tokens charged at admission.
-- Returns 1 when an admission was undone, 2 when a tombstone was written,
-- 0 when one was already there.
-- v2: an admission that granted a lease (admit v6) is refunded every
-- request it granted.
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then
  redis.call('HSET', KEYS[2], ARGV[1], 'cancelled|0|0|-|' .. ARGV[2])
  return 2
end
local _, _, kind, p, t, at = string.find(record, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)')
local granted = tonumber(string.match(record, '^[^|]*|[^|]*|[^|]*|[^|]*|[^|]*|(%d+)') or '1')
if kind == 'cancelled' then
  return 0
end
local c = load_credits(KEYS[1])
release(c, kind, tonumber(p), tonumber(t), at)
save(KEYS[1], c)
redis.call('HDEL', KEYS[2], ARGV[1])

-- The limiters: take back the requests and the tokens they were charged.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tokens = tonumber(ARGV[7])
local costs = { granted, granted, granted * tokens, granted * tokens }
for i = 1, 4 do
  local limit = tonumber(ARGV[2 + i])
  if limit > 0 and costs[i] > 0 then
    local tat = tonumber(redis.call('GET', KEYS[2 + i]) or '0')
    local next_tat = tat - costs[i] * 60000000 / limit
    if next_tat > now then
      redis.call('SET', KEYS[2 + i], int(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
    else
      redis.call('DEL', KEYS[2 + i])
    end
  end
end
return 1
