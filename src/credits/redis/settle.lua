-- tollgate settle, version 1 (after the refresh.lua prelude).
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
-- KEYS[1] credits hash, KEYS[2] reservations hash, KEYS[3] expiry zset,
-- KEYS[4] reaped ids hash, KEYS[5] usage hash of the day,
-- KEYS[6] key tpm limiter, KEYS[7] workspace tpm limiter.
-- ARGV[1] reservation id, ARGV[2] kind, ARGV[3] cost (micro-credits),
-- ARGV[4] tokens used minus tokens charged at admission,
-- ARGV[5] key tpm limit, ARGV[6] workspace tpm limit (0: none),
-- ARGV[7] usage field prefix (key id, agent), ARGV[8] input tokens,
-- ARGV[9] output tokens, ARGV[10] 1 if admit recorded the call (0: it was
-- neither limited nor metered, so only the usage totals change),
-- ARGV[11] usage TTL s.
-- Returns 1 when this call settled, 0 when the id was already settled.
local function add_usage()
  local field = ARGV[7]
  redis.call('HINCRBY', KEYS[5], field .. '\31requests', 1)
  redis.call('HINCRBY', KEYS[5], field .. '\31input_tokens', ARGV[8])
  redis.call('HINCRBY', KEYS[5], field .. '\31output_tokens', ARGV[9])
  redis.call('HINCRBY', KEYS[5], field .. '\31credits', ARGV[3])
  redis.call('EXPIRE', KEYS[5], ARGV[11])
end
if ARGV[10] == '0' then
  add_usage()
  return 1
end

local credits, kind = KEYS[1], ARGV[2]
local cost = tonumber(ARGV[3])
local from_plan_part, from_top_up_part, same_period = 0, 0, false
local record = redis.call('HGET', KEYS[2], ARGV[1])
if not record then
  if redis.call('HDEL', KEYS[4], ARGV[1]) == 0 then
    return 0
  end
end
if record then
  local _, _, _, p, t, period = string.find(record, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  from_plan_part, from_top_up_part = tonumber(p), tonumber(t)
  same_period = (period == redis.call('HGET', credits, 'period'))
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  if same_period then
    redis.call('HINCRBY', credits, kind .. ':held_plan', int(-from_plan_part))
  end
  redis.call('HINCRBY', credits, kind .. ':held_top_up', int(-from_top_up_part))
end

if redis.call('HGET', credits, kind .. ':metered') == '1' then
  local use_plan = math.min(cost, from_plan_part)
  local use_top_up = math.min(cost - use_plan, from_top_up_part)
  if same_period then
    redis.call('HINCRBY', credits, kind .. ':plan', int(from_plan_part - use_plan))
  end
  redis.call('HINCRBY', credits, kind .. ':top_up', int(from_top_up_part - use_top_up))
  local extra = cost - use_plan - use_top_up
  if extra > 0 then
    local plan = math.max(tonumber(redis.call('HGET', credits, kind .. ':plan') or '0'), 0)
    local top_up = math.max(tonumber(redis.call('HGET', credits, kind .. ':top_up') or '0'), 0)
    local p = math.min(extra, plan)
    local t = math.min(extra - p, top_up)
    redis.call('HINCRBY', credits, kind .. ':plan', int(-p))
    redis.call('HINCRBY', credits, kind .. ':top_up', int(-t))
    if extra - p - t > 0 then
      redis.call('HINCRBY', credits, kind .. ':uncollected', int(extra - p - t))
    end
  end
end

add_usage()

-- Token limits: move the arrival time by the difference between the tokens
-- used and those charged at admission.
local delta = tonumber(ARGV[4])
if delta ~= 0 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  for i = 0, 1 do
    local limit = tonumber(ARGV[5 + i])
    local tat = tonumber(redis.call('GET', KEYS[6 + i]) or '0')
    if limit > 0 then
      local next_tat = tat + delta * 60000000 / limit
      if delta > 0 then
        next_tat = math.max(tat, now) + delta * 60000000 / limit
      end
      if next_tat > now then
        redis.call('SET', KEYS[6 + i], int(next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
      else
        redis.call('DEL', KEYS[6 + i])
      end
    end
  end
end
return 1
