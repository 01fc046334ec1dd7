-- tollgate settle, version 4 (after the refresh.lua prelude, version 3).
-- Loaded by src/credits/redis.rs; change both together and bump the version.
--
-- Charges a finished call and releases the rest of its reservation, at most
-- once per reservation id: the reservation record is the proof the call is
-- unsettled, and it is deleted here, so a settle retried after a timeout
-- finds nothing and does nothing. If the reaper released the reservation
-- first, it left the id in the reaped hash: the cost is then charged from the
-- balance directly. Never takes a balance below zero: what cannot be
-- collected is added to K:uncollected.
--
-- KEYS[1] credits hash, KEYS[2] reservations hash, KEYS[3] unused (v2's expiry index),
-- KEYS[4] reaped ids hash, KEYS[5] usage hash of the day,
-- KEYS[6] key tpm limiter, KEYS[7] workspace tpm limiter.
-- ARGV[1] reservation id, ARGV[2] kind, ARGV[3] cost (micro-credits),
-- ARGV[4] tokens used minus tokens charged at admission,
-- ARGV[5] key tpm limit, ARGV[6] workspace tpm limit (0: none),
-- ARGV[7] usage field (key id, 0x1f, agent), ARGV[8] input tokens,
-- ARGV[9] output tokens, ARGV[10] 1 if admit recorded the call (0: it was
-- neither limited nor metered, so only the usage totals change),
-- ARGV[11] usage TTL s.
-- The usage field's value is "requests,input_tokens,output_tokens,credits".
-- Returns 1 when this call settled, 0 when the id was already settled.
local function add_usage()
  local old = redis.call('HGET', KEYS[5], ARGV[7])
  local totals = { 0, 0, 0, 0 }
  if old then
    local i = 1
    for n in string.gmatch(old, '%d+') do
      totals[i] = tonumber(n)
      i = i + 1
    end
  end
  local new = int(totals[1] + 1) .. ',' .. int(totals[2] + tonumber(ARGV[8])) .. ','
    .. int(totals[3] + tonumber(ARGV[9])) .. ',' .. int(totals[4] + tonumber(ARGV[3]))
  redis.call('HSET', KEYS[5], ARGV[7], new)
  redis.call('EXPIRE', KEYS[5], ARGV[11])
end

if ARGV[10] == '0' then
  add_usage()
  return 1
end

local kind = ARGV[2]
local cost = tonumber(ARGV[3])
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then
  if redis.call('HDEL', KEYS[4], ARGV[1]) == 0 then
    return 0
  end
end
local c = load_credits(KEYS[1])
local from_plan_part, from_top_up_part, same_period = 0, 0, false
if record then
  -- "kind|plan part|top-up part|period" then "|expires at" (v3)
  local _, _, _, p, t, period = string.find(record, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)')
  from_plan_part, from_top_up_part = tonumber(p), tonumber(t)
  same_period = (period == c.period)
  redis.call('HDEL', KEYS[2], ARGV[1])
  if same_period then
    add(c, kind .. ':held_plan', -from_plan_part)
  end
  add(c, kind .. ':held_top_up', -from_top_up_part)
end

-- What was held goes back whatever happens; only charging depends on the
-- kind being metered (a plan may have stopped metering meanwhile).
if get(c, kind .. ':metered') ~= 1 then
  cost = 0
end
do
  local use_plan = math.min(cost, from_plan_part)
  local use_top_up = math.min(cost - use_plan, from_top_up_part)
  if same_period then
    add(c, kind .. ':plan', from_plan_part - use_plan)
  end
  add(c, kind .. ':top_up', from_top_up_part - use_top_up)
  local extra = cost - use_plan - use_top_up
  if extra > 0 then
    local p, t = take(c, kind, extra)
    add(c, kind .. ':uncollected', extra - p - t)
  end
end
save(KEYS[1], c)
add_usage()

-- Token limits: move the arrival time by the difference between the tokens
-- used and those charged at admission.
local delta = tonumber(ARGV[4])
if delta ~= 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  for i = 0, 1 do
    local limit = tonumber(ARGV[5 + i])
    if limit > 0 then
      local tat = tonumber(redis.call('GET', KEYS[6 + i]) or '0')
      local next_tat = tat + delta * 60000000 / limit
      if delta > 0 then
        next_tat = math.max(tat, now) + delta * 60000000 / limit
      end
      -- A wild overrun blocks the limiter for a day at most (and keeps the
      -- numbers far from what %d and PX can hold).
      next_tat = math.min(next_tat, now + 86400000000)
      if next_tat > now then
        redis.call('SET', KEYS[6 + i], int(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
      else
        redis.call('DEL', KEYS[6 + i])
      end
    end
  end
end
return 1
