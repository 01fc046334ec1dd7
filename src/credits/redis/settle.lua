-- tollgate settle, version 7 (after the refresh.lua prelude, version 3).
-- Loaded by src/credits/redis.rs; change both together and bump the version.
--
-- Charges a batch of finished calls of one workspace and releases the rest
-- of their reservations, each at most once per reservation id: the
-- reservation record is the proof a call is unsettled, and it is deleted
-- here, so a batch retried after a timeout finds nothing and does nothing.
-- If the reaper released a reservation first, it left the id in the reaped
-- hash: that call's cost is then charged from the balance directly. Never
-- takes a balance below zero: what cannot be collected is added to
-- K:uncollected.
--
-- v5: a batch per call. Redis's time per script call is mostly fixed cost,
-- so the settle queue hands over what has gathered while the previous batch
-- ran; the credits hash is read and written once per batch, each usage
-- field and each limiter once.
-- v6: leases (admit v6). A lease's return is one settle that adds no usage
-- line (its requests were counted one by one, as usage-only settles) and
-- gives the limiters back the requests it did not use.
-- v7: a lease's usage lines ride with its return. The calls of a lease add
-- their usage to the lease in memory, per day and agent, and the return is
-- followed in the same call by those lines, each marked 2: a line applies
-- only if the settle before it did, so a retried return adds them once.
--
-- KEYS[1] credits hash, KEYS[2] reservations hash, KEYS[3] unused (v2's expiry index),
-- KEYS[4] reaped ids hash; then for settle i (from 0): KEYS[5 + 5i] the usage
-- hash of its day, KEYS[6 + 5i] its key's tpm limiter, KEYS[7 + 5i] the
-- workspace tpm limiter, KEYS[8 + 5i] its key's rpm limiter, KEYS[9 + 5i]
-- the workspace rpm limiter.
-- ARGV[1] usage TTL s; then for settle i, ARGV[2 + 14i ..] fourteen values:
-- reservation id, kind, cost (micro-credits), tokens used minus tokens
-- charged at admission, key tpm limit, workspace tpm limit (0: none), usage
-- field (key id, 0x1f, agent), input tokens, output tokens, 1 if admit
-- recorded the call (0: it was neither limited nor metered, so only the
-- usage totals change; 2: the same, but only if the settle before it in this
-- batch applied: a lease's usage line after its return), the requests the
-- usage line counts (0: none, a lease's return), the requests given back to
-- the rpm limiters, key rpm limit, workspace rpm limit.
-- The usage field's value is "requests,input_tokens,output_tokens,credits".
-- Returns how many of the batch's calls this call settled (the others were
-- settled before).
local N = 14
local count = (#ARGV - 1) / N
local c = nil
local usage = {}
local tats = {}
local now = nil
local settled = 0
local previous_applied = false

local function credits()
  if not c then
    c = load_credits(KEYS[1])
  end
  return c
end

local function add_usage(key, field, requests, input, output, cost)
  local of_key = usage[key]
  if not of_key then
    of_key = {}
    usage[key] = of_key
  end
  local t = of_key[field]
  if not t then
    t = { 0, 0, 0, 0 }
    of_key[field] = t
  end
  t[1] = t[1] + requests
  t[2] = t[2] + input
  t[3] = t[3] + output
  t[4] = t[4] + cost
end

-- Moves a limiter's arrival time by `delta` units: the tokens used minus
-- those charged at admission, or minus the requests a lease gives back.
local function move_limiter(name, limit, delta)
  if not now then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  end
  local tat = tats[name]
  if not tat then
    tat = tonumber(redis.call('GET', name) or '0')
  end
  local next_tat = tat + delta * 60000000 / limit
  if delta > 0 then
    next_tat = math.max(tat, now) + delta * 60000000 / limit
  end
  -- A wild overrun blocks the limiter for a day at most (and keeps the
  -- numbers far from what %d and PX can hold).
  tats[name] = math.min(next_tat, now + 86400000000)
end

-- One call's charge; false when it was settled before.
local function settle(kind, id, cost)
  local record = redis.call('HGET', KEYS[2], id)
  if not record then
    if redis.call('HDEL', KEYS[4], id) == 0 then
      return false
    end
  end
  local c = credits()
  local from_plan_part, from_top_up_part, same_period = 0, 0, false
  if record then
    -- "kind|plan part|top-up part|period" then "|expires at" (v3)
    local _, _, _, p, t, period = string.find(record, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)')
    from_plan_part, from_top_up_part = tonumber(p), tonumber(t)
    same_period = (period == c.period)
    redis.call('HDEL', KEYS[2], id)
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
  return true
end

for i = 0, count - 1 do
  local a = 1 + i * N
  local id, kind, cost = ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local recorded = ARGV[a + 10]
  local applies
  if recorded == '2' then
    applies = previous_applied
  else
    applies = recorded == '0' or settle(kind, id, cost)
  end
  previous_applied = applies
  if applies and recorded ~= '2' then
    settled = settled + 1
  end
  if applies then
    local k = 5 + 5 * i
    local requests = tonumber(ARGV[a + 11])
    if requests > 0 then
      add_usage(KEYS[k], ARGV[a + 7], requests, tonumber(ARGV[a + 8]), tonumber(ARGV[a + 9]), cost)
    end
    if recorded == '1' then
      local moves = { tonumber(ARGV[a + 4]), -tonumber(ARGV[a + 12]) }
      local limits = { { ARGV[a + 5], ARGV[a + 6] }, { ARGV[a + 13], ARGV[a + 14] } }
      for m = 1, 2 do
        if moves[m] ~= 0 then
          for j = 1, 2 do
            local limit = tonumber(limits[m][j])
            if limit > 0 then
              move_limiter(KEYS[k + 2 * m - 2 + j], limit, moves[m])
            end
          end
        end
      end
    end
  end
end

if c then
  save(KEYS[1], c)
end
for key, fields in pairs(usage) do
  for field, t in pairs(fields) do
    local old = redis.call('HGET', key, field)
    if old then
      local i = 1
      for n in string.gmatch(old, '%d+') do
        t[i] = t[i] + tonumber(n)
        i = i + 1
      end
    end
    redis.call('HSET', key, field, int(t[1]) .. ',' .. int(t[2]) .. ',' .. int(t[3]) .. ',' .. int(t[4]))
  end
  redis.call('EXPIRE', key, ARGV[1])
end
for name, tat in pairs(tats) do
  if tat > now then
    redis.call('SET', name, int(tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
  else
    redis.call('DEL', name)
  end
end
return settled
