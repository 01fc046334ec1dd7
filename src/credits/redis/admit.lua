-- tollgate admit, version 6 (after the refresh.lua prelude, version 3).
-- Loaded by src/credits/redis.rs; change both together and bump the version.
--
-- One request's rate limits and credit reservation, in one atomic call:
-- either every limit passes and the reservation is recorded, or nothing is
-- written. Rate limits are GCRA on Redis's own clock (TIME), so all replicas
-- share one clock; a limiter key holds the theoretical arrival time in µs.
--
-- KEYS[1] credits hash, KEYS[2] reservations hash, KEYS[3] unused (v2's expiry index),
-- KEYS[4..7] limiters: key rpm, workspace rpm, key tpm, workspace tpm.
-- ARGV[1] reservation id, ARGV[2] kind, ARGV[3] amount (micro-credits),
-- ARGV[4] period, ARGV[5] message allowance, ARGV[6] integration allowance (-1: not metered),
-- ARGV[7] reservation expiry (Unix ms), ARGV[8..11] the four limits (0: none), ARGV[12] tokens,
-- ARGV[13] the most requests of this size to grant at once (a lease; 1: just this one).
-- Returns {status, a, b, then limit, remaining, reset µs for each limiter, then (status 0) the
-- requests granted}:
-- status 0 admitted (a, b = plan and top-up parts); 1 limited (a = limiter index,
-- b = retry after µs); 2 too large (a = limiter index, b = requested);
-- 3 insufficient quota (a = available; the windows as if admitted, nothing written);
-- 4 given up: cancel.lua ran first for this id (the gateway stopped waiting for
-- this call), so nothing is written.
-- v5: the record is written with HSETNX before anything else, so an admission
-- that arrives after its cancel (a Redis that hung, then resumed) does nothing.
-- v6: leases. When every limiter and the balance could grant LEASE_MARGIN
-- times ARGV[13] more requests of this size, all ARGV[13] are granted at once
-- (each limiter charged for all of them, the credits reserved for all of
-- them) and the replica admits the rest locally (src/credits/redis/lease.rs).
-- Nearer an edge, one request is granted, exactly as in v5, so a limit or a
-- balance is never split into slices that strand capacity on other replicas.
-- The record ends with "|granted" (cancel.lua refunds that many).
local WINDOW = 60000000
local LEASE_MARGIN = 16
local wanted = math.max(tonumber(ARGV[13] or '1'), 1)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tokens = tonumber(ARGV[12])
local costs = { 1, 1, tokens, tokens }
local windows = {}
local writes = {}
-- How many more requests of this size each limiter could take after this one.
local headroom = {}
local tats = redis.call('MGET', KEYS[4], KEYS[5], KEYS[6], KEYS[7])
for i = 1, 4 do
  local limit = tonumber(ARGV[7 + i])
  if limit > 0 then
    local per = WINDOW / limit
    local n = costs[i]
    if n > limit then
      return { 2, i, n }
    end
    local tat = math.max(tonumber(tats[i] or '0'), now)
    local next_tat = tat + n * per
    local ahead = next_tat - now
    if ahead > WINDOW then
      local out = { 1, i, math.ceil(ahead - WINDOW) }
      for j = 1, 4 do
        if j == i then
          table.insert(out, limit); table.insert(out, 0); table.insert(out, math.ceil(tat - now))
        else
          table.insert(out, 0); table.insert(out, 0); table.insert(out, 0)
        end
      end
      return out
    end
    if n > 0 then
      writes[i] = next_tat
      headroom[i] = math.floor((WINDOW - ahead) / (n * per))
    end
    windows[i] = { limit, math.floor((WINDOW - ahead) / per), math.ceil(ahead) }
  else
    windows[i] = { 0, 0, 0 }
  end
end

-- The answer: status, two values, then every limiter's window.
local function answer(status, a, b)
  local out = { status, a, b }
  for i = 1, 4 do
    for _, v in ipairs(windows[i]) do
      table.insert(out, v)
    end
  end
  return out
end

local c = load_credits(KEYS[1])
refresh(c, ARGV[4], ARGV[5], ARGV[6])
local kind = ARGV[2]
local amount = tonumber(ARGV[3])
local from_plan, from_top_up = 0, 0
if amount > 0 and get(c, kind .. ':metered') == 1 then
  local available = math.max(get(c, kind .. ':plan'), 0) + math.max(get(c, kind .. ':top_up'), 0)
  if amount > available then
    save(KEYS[1], c)
    return answer(3, available, 0)
  end
  headroom[5] = math.floor((available - amount) / amount)
end
-- A lease only far from every edge; else this one request.
local granted = wanted
for _, more in pairs(headroom) do
  if more < LEASE_MARGIN * wanted then
    granted = 1
  end
end
if amount > 0 and get(c, kind .. ':metered') == 1 then
  from_plan, from_top_up = take(c, kind, amount * granted)
  add(c, kind .. ':held_plan', from_plan)
  add(c, kind .. ':held_top_up', from_top_up)
end
-- Recorded even when nothing is held: the record is what makes the settle
-- apply exactly once. "kind|plan part|top-up part|period|expires at (ms)";
-- the reaper reads the expiry from it (no separate index to keep in step).
-- The month is the ledger's (c.period), which may be ahead of the caller's.
-- A cancel's tombstone under this id means the gateway gave up: write nothing.
local record = kind .. '|' .. int(from_plan) .. '|' .. int(from_top_up) .. '|' .. c.period .. '|' .. ARGV[7]
  .. '|' .. int(granted)
if redis.call('HSETNX', KEYS[2], ARGV[1], record) == 0 then
  return { 4 }
end
save(KEYS[1], c)

for i, tat in pairs(writes) do
  -- The lease's other requests are charged now too.
  tat = tat + (granted - 1) * costs[i] * WINDOW / tonumber(ARGV[7 + i])
  redis.call('SET', KEYS[3 + i], int(tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
end
local out = answer(0, from_plan, from_top_up)
table.insert(out, granted)
return out
