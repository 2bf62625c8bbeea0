-- enqueue: adds an execution (mode "create") or more of its jobs ("append",
-- for executions queued in chunks).
-- KEYS[1]  P:ready (routing only; every key shares its hash tag)
-- ARGV     prefix, mode, execution id, priority, max concurrent, total,
--          then the already settled summary: n, passed, failed, error,
--          skipped, cancelled, flaky, time (ARGV[7..14]),
--          tenant id ('' for none; ARGV[15]),
--          then pairs: test case id, job payload (ARGV[16..])
-- Returns  1 if added, 0 if "create" found the execution already queued
--          (or "append" found it gone).
local id = ARGV[3]
local x = xkey(id)
if ARGV[2] == 'create' then
  if redis.call('EXISTS', x) == 1 then
    return 0
  end
  local seq = redis.call('INCR', P .. ':seq')
  local score = string.format('%.0f', (10 - tonumber(ARGV[4])) * 1e12 + seq)
  redis.call('HSET', x, 'prio', ARGV[4], 'max', ARGV[5], 'total', ARGV[6], 'score', score, 'running', 0,
    'n', ARGV[7], 'passed', ARGV[8], 'failed', ARGV[9], 'error', ARGV[10], 'skipped', ARGV[11],
    'cancelled', ARGV[12], 'flaky', ARGV[13], 'time', ARGV[14], 'tenant', ARGV[15])
  local time = redis.call('TIME')
  redis.call('HSET', x, 'since', tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000))
  redis.call('SADD', P .. ':live', id)
  redis.call('HSET', P .. ':tenant', id, ARGV[15])
elseif redis.call('EXISTS', x) == 0 then
  return 0
end
local q, j = xkey(id, ':q'), xkey(id, ':j')
for i = 16, #ARGV, 2 do
  redis.call('RPUSH', q, ARGV[i])
  redis.call('HSET', j, ARGV[i], ARGV[i + 1])
end
if #ARGV >= 16 and redis.call('HEXISTS', x, 'halt') == 0 then
  redis.call('ZADD', P .. ':ready', redis.call('HGET', x, 'score'), id)
end
finish_if_settled(id)
return 1
