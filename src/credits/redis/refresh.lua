-- tollgate ledger prelude, version 3 (v3: `release`): src/credits/redis.rs prepends it to
-- every ledger script; change them together.
--
-- A workspace's credits hash (KEYS[1] of the scripts) holds `period` and, per
-- kind K in {message, integration}: K:plan, K:top_up (both net of what calls
-- in flight hold), K:held_plan, K:held_top_up, K:uncollected, K:metered,
-- K:allowance. Scripts read it once (HGETALL), change a Lua table, and write
-- the changed fields back in one HSET: few commands per call, which is what
-- Redis's time per call is made of.

-- Formats an integral number without an exponent (Lua's tostring would
-- write 1e+15), for arguments and stored strings.
local function int(x)
  return string.format('%d', x)
end

-- The credits hash as a table of numbers (`period` stays a string).
local function load_credits(credits)
  local flat = redis.call('HGETALL', credits)
  local c = { changed = {} }
  for i = 1, #flat, 2 do
    local field, value = flat[i], flat[i + 1]
    if field == 'period' then
      c.period = value
    else
      c[field] = tonumber(value)
    end
  end
  return c
end

local function get(c, field)
  return c[field] or 0
end

local function set(c, field, value)
  c[field] = value
  c.changed[field] = true
end

local function add(c, field, delta)
  if delta ~= 0 then
    set(c, field, get(c, field) + delta)
  end
end

-- Writes the changed fields back, in one HSET.
local function save(credits, c)
  local args = {}
  for field in pairs(c.changed) do
    table.insert(args, field)
    if field == 'period' then
      table.insert(args, c.period)
    else
      table.insert(args, int(c[field]))
    end
  end
  if #args > 0 then
    redis.call('HSET', credits, unpack(args))
  end
end

-- Records the plan's terms and, when `period` (YYYY-MM) is newer than the
-- stored one, sets each plan part to its allowance: exactly once per month
-- however many replicas call it, because the compare and the write are one
-- script. An allowance of -1 means the kind is not metered.
local function refresh(c, period, allow_message, allow_integration)
  local allowances = { message = tonumber(allow_message), integration = tonumber(allow_integration) }
  for kind, allowance in pairs(allowances) do
    local metered = allowance >= 0 and 1 or 0
    if c[kind .. ':metered'] ~= metered then
      set(c, kind .. ':metered', metered)
    end
    if c[kind .. ':allowance'] ~= allowance then
      set(c, kind .. ':allowance', allowance)
    end
  end
  if c.period and c.period >= period then
    return 0
  end
  set(c, 'period', period)
  for kind, allowance in pairs(allowances) do
    set(c, kind .. ':plan', math.max(allowance, 0))
    set(c, kind .. ':held_plan', 0)
  end
  return 1
end

-- Takes `amount` from a kind, plan part first, never below zero; returns the
-- parts taken.
local function take(c, kind, amount)
  local p = math.min(amount, math.max(get(c, kind .. ':plan'), 0))
  local t = math.min(amount - p, math.max(get(c, kind .. ':top_up'), 0))
  add(c, kind .. ':plan', -p)
  add(c, kind .. ':top_up', -t)
  return p, t
end

-- Gives back what a reservation held, to the parts it came from: the plan
-- part only within the period it was taken in (a new month's plan starts
-- afresh), the top-up part always. Used by reap.lua and cancel.lua.
local function release(c, kind, plan_part, top_up_part, period)
  if period == c.period then
    add(c, kind .. ':plan', plan_part)
    add(c, kind .. ':held_plan', -plan_part)
  end
  add(c, kind .. ':top_up', top_up_part)
  add(c, kind .. ':held_top_up', -top_up_part)
end
