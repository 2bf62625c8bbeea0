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
-- With a tenant allowance, a tenant's tests running anywhere (summed over
-- the live executions, so only then does a claim read every one) stay
-- under it; work without a tenant is not counted.
-- Cost: the ready set with scores and every tenant in two calls; an
-- execution's own hash only when it is about to be claimed from (or, with
-- ageing or a minimum priority, for every candidate, as before).
-- KEYS[1]  P:ready
-- ARGV     prefix, now (unix ms), lease (ms), max, share cap (0: none),
--          ageing step (ms; 0: none), minimum priority (0: any),
--          tenant allowance (0: none), then
--          pairs: execution id, slots the caller holds of it
-- Returns  flat list: token, job payload, token, job payload, ...
local now, lease_ms, want, cap = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local aging, min_prio, tenant_cap = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])

-- The ready executions; the score is (10 - priority) * 1e12 + arrival.
local ready = redis.call('ZRANGE', P .. ':ready', 0, -1, 'WITHSCORES')
local held, held_ids = {}, {}
for i = 9, #ARGV, 2 do
  held[ARGV[i]] = tonumber(ARGV[i + 1])
  held_ids[#held_ids + 1] = ARGV[i]
end
-- Every candidate's and held execution's tenant, in one call.
local ids = {}
for i = 1, #ready, 2 do
  ids[#ids + 1] = ready[i]
end
for _, id in ipairs(held_ids) do
  ids[#ids + 1] = id
end
local tenant_of = {}
for first = 1, #ids, 1000 do
  local last = math.min(first + 999, #ids)
  local tenants = redis.call('HMGET', P .. ':tenant', unpack(ids, first, last))
  for i = first, last do
    tenant_of[ids[i]] = tenants[i - first + 1] or ''
  end
end
-- With an allowance: each tenant's tests running anywhere.
local tenant_running = {}
if tenant_cap > 0 then
  local live = redis.call('SMEMBERS', P .. ':live')
  for first = 1, #live, 1000 do
    local last = math.min(first + 999, #live)
    local tenants = redis.call('HMGET', P .. ':tenant', unpack(live, first, last))
    for i = first, last do
      local t = tenants[i - first + 1] or ''
      if t ~= '' then
        local running = tonumber(redis.call('HGET', xkey(live[i]), 'running')) or 0
        tenant_running[t] = (tenant_running[t] or 0) + running
      end
    end
  end
end
local function tenant_may_run(t)
  return tenant_cap == 0 or t == '' or (tenant_running[t] or 0) < tenant_cap
end

local tenant_held = {}
for _, id in ipairs(held_ids) do
  local t = tenant_of[id]
  tenant_held[t] = (tenant_held[t] or 0) + held[id]
end

local cands = {}
for i = 1, #ready, 2 do
  local id, score = ready[i], tonumber(ready[i + 1])
  local prio = 10 - math.floor(score / 1e12)
  cands[#cands + 1] = { id = id, rank = prio, prio = prio, arrival = score % 1e12, tenant = tenant_of[id], taken = 0 }
end
-- Reads an execution's own state, once.
local function load(c)
  if not c.loaded then
    local v = redis.call('HMGET', xkey(c.id), 'running', 'max', 'started', 'since')
    c.running, c.max, c.started, c.since = tonumber(v[1]) or 0, tonumber(v[2]) or 0, v[3], tonumber(v[4])
    c.waiting, c.loaded = 1, true
  end
  return c
end
if min_prio > 0 then
  local admitted = {}
  for _, c in ipairs(cands) do
    if c.prio >= min_prio then
      admitted[#admitted + 1] = c
    end
  end
  cands = admitted
end
if aging > 0 and #cands > 1 then
  for _, c in ipairs(cands) do
    load(c)
    local steps = math.floor((now - (c.since or now)) / aging)
    c.rank = math.min(10, c.prio + math.max(0, math.min(10, steps)))
  end
  table.sort(cands, function(a, b)
    if a.rank ~= b.rank then
      return a.rank > b.rank
    end
    return a.arrival < b.arrival
  end)
end

local function claimable(c, fair)
  load(c)
  if c.waiting <= 0 or c.running >= c.max or not tenant_may_run(c.tenant) then
    return false
  end
  return not fair or cap == 0 or (held[c.id] or 0) + c.taken < cap
end

-- The candidate the next slot goes to, or nil: the first of the top rank
-- whose tenant holds the fewest. Tenants are known for all; an execution's
-- hash is read only when it would win. Also how many slots in a row it
-- keeps winning: until its tenant holds as many as another tenant at that
-- rank (at least one; all, when no other tenant is there).
local function pick(fair)
  local best, best_rank
  for _, c in ipairs(cands) do
    if best_rank and c.rank < best_rank then
      break
    end
    if (not best or (tenant_held[c.tenant] or 0) < (tenant_held[best.tenant] or 0)) and claimable(c, fair) then
      best, best_rank = c, c.rank
    end
  end
  if not best then
    return nil, 0
  end
  local mine, next_tenant = tenant_held[best.tenant] or 0, nil
  for _, c in ipairs(cands) do
    if c.rank < best_rank then
      break
    end
    if c.tenant ~= best.tenant then
      local theirs = tenant_held[c.tenant] or 0
      if not next_tenant or theirs < next_tenant then
        next_tenant = theirs
      end
    end
  end
  if not next_tenant then
    return best, want
  end
  return best, math.max(1, next_tenant - mine)
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
  c.running, c.taken, got = c.running + 1, c.taken + 1, got + 1
  tenant_held[c.tenant] = (tenant_held[c.tenant] or 0) + 1
  tenant_running[c.tenant] = (tenant_running[c.tenant] or 0) + 1
end

while got < want do
  local c, run = pick(true)
  if not c then
    break
  end
  for _ = 1, run do
    if got >= want or not claimable(c, true) then
      break
    end
    take_one(c)
  end
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
  if c.loaded and (c.taken > 0 or c.waiting <= 0) and redis.call('LLEN', xkey(c.id, ':q')) == 0 then
    redis.call('ZREM', P .. ':ready', c.id)
  end
end
return out
