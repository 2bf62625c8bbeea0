-- claim: leases up to `max` jobs, in queue order, from executions under
-- their concurrency limit (which therefore holds across every worker).
-- KEYS[1]  P:ready
-- ARGV     prefix, now (unix ms), lease (ms), max
-- Returns  flat list: token, job payload, token, job payload, ...
local now, lease_ms, want = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local out, got = {}, 0
for _, id in ipairs(redis.call('ZRANGE', P .. ':ready', 0, -1)) do
  if got >= want then
    break
  end
  local x = xkey(id)
  local v = redis.call('HMGET', x, 'running', 'max', 'started')
  local running, max = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  local taken = 0
  while got < want and running < max do
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
    redis.call('HSET', x, 'running', running)
    if not v[3] then
      redis.call('HSET', x, 'started', now)
      emit('started', cjson.encode({ execution_id = id }))
    end
  end
  if redis.call('LLEN', xkey(id, ':q')) == 0 then
    redis.call('ZREM', P .. ':ready', id)
  end
end
return out
