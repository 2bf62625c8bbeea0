-- claim: leases up to `max` jobs, in queue order, from executions under
-- their concurrency limit (which therefore holds across every worker).
-- Each slot goes to the highest effective priority; among executions of
-- that priority, to the first to arrive of the tenant holding the fewest
-- of the caller's slots (`held`, plus what this claim took), so one
-- tenant's many executions cannot keep another tenant's run waiting.
-- With a share cap, an execution gets at most `cap` of the caller's slots
-- (counting `held`) while another execution has claimable work; a single
-- execution left alone may use more.
-- With ageing, an execution counts one priority higher (up to 10) per
-- `aging` ms it has waited since it last got a slot.
-- Only executions whose own priority (not aged) is at least the minimum
-- are claimed: the caller's resource manager may admit critical work only.
-- KEYS[1]  P:ready
-- ARGV     prefix, now (unix ms), lease (ms), max, share cap (0: none),
--          ageing step (ms; 0: none), minimum priority (0: any), then
--          pairs: execution id, slots the caller holds of it
-- Returns  flat list: token, job payload, token, job payload, ...
local now, lease_ms, want, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local aging, min_prio = tonumber(ARGV[6]), tonumber(ARGV[7])

-- What the caller holds, per execution and per tenant ('' = no tenant).
local held, tenant_held = {}, {}
for i = 8, #ARGV, 2 do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  held[id] = n
  local tenant = redis.call('HGET', xkey(id), 'tenant') or ''
  tenant_held[tenant] = (tenant_held[tenant] or 0) + n
end

-- The candidates, read once: ready executions at or above the minimum.
local cands = {}
for _, id in ipairs(redis.call('ZRANGE', P .. ':ready', 0, -1)) do
  local v = redis.call('HMGET', xkey(id), 'prio', 'since', 'score', 'running', 'max', 'tenant', 'started')
  local prio = tonumber(v[1]) or 0
  if prio >= min_prio then
    local rank = prio
    if aging > 0 then
      local steps = math.floor((now - (tonumber(v[2]) or now)) / aging)
      rank = math.min(10, prio + math.max(0, math.min(10, steps)))
    end
    cands[#cands + 1] = {
      id = id, rank = rank,
      -- The score is (10 - priority) * 1e12 + arrival sequence.
      arrival = (tonumber(v[3]) or 0) % 1e12,
      running = tonumber(v[4]) or 0, max = tonumber(v[5]) or 0,
      tenant = v[6] or '', started = v[7],
      waiting = redis.call('LLEN', xkey(id, ':q')), taken = 0,
    }
  end
end
if aging > 0 then
  table.sort(cands, function(a, b)
    if a.rank ~= b.rank then
      return a.rank > b.rank
    end
    return a.arrival < b.arrival
  end)
end

local function claimable(c, fair)
  if c.waiting <= 0 or c.running >= c.max then
    return false
  end
  return not fair or cap == 0 or (held[c.id] or 0) + c.taken < cap
end

-- The candidate the next slot goes to, or nil.
local function pick(fair)
  local best
  for _, c in ipairs(cands) do
    if claimable(c, fair) then
      if not best then
        best = c
      elseif c.rank < best.rank then
        break
      elseif (tenant_held[c.tenant] or 0) < (tenant_held[best.tenant] or 0) then
        best = c
      end
    end
  end
  return best
end

local out, got = {}, 0
local function take_one(c)
  local t = redis.call('LPOP', xkey(c.id, ':q'))
  if not t then
    c.waiting = 0
    return
  end
  local token = redis.call('INCR', P .. ':tokens')
  redis.call('ZADD', P .. ':leases', now + lease_ms, token)
  redis.call('HSET', P .. ':lease', token, c.id .. '|' .. t)
  out[#out + 1] = token
  out[#out + 1] = redis.call('HGET', xkey(c.id, ':j'), t)
  c.waiting, c.running, c.taken, got = c.waiting - 1, c.running + 1, c.taken + 1, got + 1
  tenant_held[c.tenant] = (tenant_held[c.tenant] or 0) + 1
end

while got < want do
  local c = pick(true)
  if not c then
    break
  end
  take_one(c)
end

-- Beyond the share: only when a single execution has claimable work left.
if cap > 0 and got < want then
  local alone, count = nil, 0
  for _, c in ipairs(cands) do
    if claimable(c, false) then
      alone, count = c, count + 1
    end
  end
  if count == 1 then
    while got < want and claimable(alone, false) do
      take_one(alone)
    end
  end
end

for _, c in ipairs(cands) do
  if c.taken > 0 then
    local x = xkey(c.id)
    redis.call('HSET', x, 'running', c.running, 'since', now)
    if not c.started then
      redis.call('HSET', x, 'started', now)
      emit('started', cjson.encode({ execution_id = c.id }))
    end
  end
  if c.waiting <= 0 and redis.call('LLEN', xkey(c.id, ':q')) == 0 then
    redis.call('ZREM', P .. ':ready', c.id)
  end
end
return out
