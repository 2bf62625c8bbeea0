-- claim: leases up to `max` jobs, in queue order, from executions under
-- their concurrency limit (which therefore holds across every worker).
-- With a share cap, an execution gets at most `cap` of the caller's slots
-- (counting `held`, what the caller runs of it now) while another
-- execution has claimable work; a single execution left alone may use more.
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
local held = {}
for i = 8, #ARGV, 2 do
  held[ARGV[i]] = tonumber(ARGV[i + 1])
end
local out, got = {}, 0
local order = redis.call('ZRANGE', P .. ':ready', 0, -1)
if min_prio > 0 then
  local admitted = {}
  for _, id in ipairs(order) do
    if (tonumber(redis.call('HGET', xkey(id), 'prio')) or 0) >= min_prio then
      admitted[#admitted + 1] = id
    end
  end
  order = admitted
end
if aging > 0 and #order > 1 then
  local rank, arrival = {}, {}
  for _, id in ipairs(order) do
    local v = redis.call('HMGET', xkey(id), 'prio', 'since', 'score')
    local steps = math.floor((now - (tonumber(v[2]) or now)) / aging)
    rank[id] = math.min(10, (tonumber(v[1]) or 0) + math.max(0, math.min(10, steps)))
    -- The score is (10 - priority) * 1e12 + arrival sequence.
    arrival[id] = (tonumber(v[3]) or 0) % 1e12
  end
  table.sort(order, function(a, b)
    if rank[a] ~= rank[b] then
      return rank[a] > rank[b]
    end
    return arrival[a] < arrival[b]
  end)
end

-- Takes up to `limit` jobs of execution `id`.
local function take(id, limit)
  local x = xkey(id)
  local v = redis.call('HMGET', x, 'running', 'max', 'started')
  local running, max = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  local taken = 0
  while got < want and running < max and taken < limit do
    local t = redis.call('LPOP', xkey(id, ':q'))
    if not t then
      break
    end
    local token = redis.call('INCR', P .. ':tokens')
    redis.call('ZADD', P .. ':leases', now + lease_ms, token)
    redis.call('HSET', P .. ':lease', token, id .. '|' .. t)
    out[#out + 1] = token
    out[#out + 1] = redis.call('HGET', xkey(id, ':j'), t)
    running, got, taken = running + 1, got + 1, taken + 1
  end
  if taken > 0 then
    redis.call('HSET', x, 'running', running, 'since', now)
    if not v[3] then
      redis.call('HSET', x, 'started', now)
      emit('started', cjson.encode({ execution_id = id }))
    end
  end
  if redis.call('LLEN', xkey(id, ':q')) == 0 then
    redis.call('ZREM', P .. ':ready', id)
  end
end

for _, id in ipairs(order) do
  if got >= want then
    break
  end
  local limit = want
  if cap > 0 then
    limit = cap - (held[id] or 0)
  end
  if limit > 0 then
    take(id, limit)
  end
end

-- Beyond the share: only when a single execution has claimable work left.
if cap > 0 and got < want then
  local alone, count = nil, 0
  for _, id in ipairs(redis.call('ZRANGE', P .. ':ready', 0, -1)) do
    local v = redis.call('HMGET', xkey(id), 'running', 'max', 'prio')
    if (tonumber(v[1]) or 0) < (tonumber(v[2]) or 0) and (tonumber(v[3]) or 0) >= min_prio then
      alone, count = id, count + 1
    end
  end
  if count == 1 then
    take(alone, want)
  end
end
return out
