-- Shared helpers, prepended to every script of this folder when it is
-- loaded. ARGV[1] is always the deployment's key prefix with its hash tag
-- (e.g. "{cardrun}"), so every key below lands in one Redis Cluster slot.
--
-- Keys (P = prefix):
--   P:ready        zset  execution id -> claim order (priority, then arrival)
--   P:seq          int   arrival counter
--   P:tokens       int   lease token counter
--   P:leases       zset  token -> expiry (unix ms)
--   P:lease        hash  token -> "<execution id>|<test case id>"
--   P:live         set   execution ids the queue holds
--   P:tenant       hash  execution id -> tenant id ('' for none), so that a
--                        claim reads every candidate's tenant in one call
--   P:events       stream of events for the hosts that store results
--   P:workers      zset  worker id -> heartbeat expiry (unix ms)
--   P:stats        hash  reaped
--   P:x:<id>       hash  prio, max, total, score, running, n (settled),
--                        passed, failed, error, skipped, cancelled, flaky,
--                        time, halt, started, since (last got a slot, ms),
--                        tenant ('' for none)
--   P:x:<id>:q     list  waiting test case ids, in claim order
--   P:x:<id>:j     hash  test case id -> job payload (JSON), until settled
--   P:x:<id>:s     set   settled test case ids
--   P:x:<id>:e     hash  test case id -> lease expiries
--   P:admission    hash  worker -> what its resource manager holds back (JSON;
--                        written by plain HSET, read by HGETALL)
--   P:endpoints    hash  model endpoint -> the deployment's concurrency limit
--   P:endpoints:cut hash model endpoint -> its last decrease (unix ms)
local P = ARGV[1]

local function xkey(id, suffix)
  return P .. ':x:' .. id .. (suffix or '')
end

local function emit(kind, data)
  redis.call('XADD', P .. ':events', '*', 'k', kind, 'd', data)
end

-- Counts one settled test in the execution's summary.
local function count(id, status, time_ms, flaky)
  local x = xkey(id)
  redis.call('HINCRBY', x, 'n', 1)
  redis.call('HINCRBY', x, status, 1)
  if time_ms > 0 then
    redis.call('HINCRBY', x, 'time', time_ms)
  end
  if flaky then
    redis.call('HINCRBY', x, 'flaky', 1)
  end
end

local function summary(id)
  local v = redis.call('HMGET', xkey(id), 'n', 'passed', 'failed', 'error', 'skipped', 'cancelled', 'flaky', 'time')
  for i = 1, 8 do
    v[i] = tonumber(v[i]) or 0
  end
  local ran = v[1] - v[5] - v[6]
  local average = 0
  if ran > 0 then
    average = v[8] / ran
  end
  return {
    total_tests = v[1], passed_tests = v[2], failed_tests = v[3], error_tests = v[4],
    skipped_tests = v[5], cancelled_tests = v[6], flaky_tests = v[7],
    total_execution_time = v[8], average_execution_time = average,
  }
end

-- Ends the execution once every test is settled: the finished event comes
-- after all of its other events, and its keys are deleted.
local function finish_if_settled(id)
  local x = xkey(id)
  local v = redis.call('HMGET', x, 'n', 'total', 'halt')
  if not v[2] or (tonumber(v[1]) or 0) < tonumber(v[2]) then
    return
  end
  local status = 'completed'
  if v[3] == 'cancelled' then
    status = 'cancelled'
  elseif v[3] == 'stopped_on_failure' then
    status = 'failed'
  end
  emit('finished', cjson.encode({ execution_id = id, status = status, summary = summary(id) }))
  redis.call('DEL', x, xkey(id, ':q'), xkey(id, ':j'), xkey(id, ':s'), xkey(id, ':e'))
  redis.call('ZREM', P .. ':ready', id)
  redis.call('SREM', P .. ':live', id)
  redis.call('HDEL', P .. ':tenant', id)
end

-- Settles test `t` without a result of its own; returns its name entry, or
-- nil if it was settled already.
local function settle_unrun(id, t, status)
  if redis.call('SADD', xkey(id, ':s'), t) == 0 then
    return nil
  end
  local payload = redis.call('HGET', xkey(id, ':j'), t)
  local name = ''
  if payload then
    name = cjson.decode(payload).test_case_name
  end
  redis.call('HDEL', xkey(id, ':j'), t)
  count(id, status, 0, false)
  return { test_case_id = tonumber(t), test_case_name = name }
end

local function emit_unrun(id, status, reason, tests)
  if #tests > 0 then
    emit('unrun', cjson.encode({ execution_id = id, status = status, reason = reason, tests = tests }))
  end
end

-- Stops an execution: its waiting tests are settled as skipped or
-- cancelled. The wording matches `Halt::unrun` in queue/mod.rs.
local function halt(id, reason)
  local x = xkey(id)
  if redis.call('HEXISTS', x, 'halt') == 1 then
    return
  end
  redis.call('HSET', x, 'halt', reason)
  local status, why = 'cancelled', 'execution cancelled'
  if reason == 'stopped_on_failure' then
    status, why = 'skipped', 'skipped: stop_on_first_failure'
  end
  local tests = {}
  for _, t in ipairs(redis.call('LRANGE', xkey(id, ':q'), 0, -1)) do
    local entry = settle_unrun(id, t, status)
    if entry then
      tests[#tests + 1] = entry
    end
  end
  redis.call('DEL', xkey(id, ':q'))
  redis.call('ZREM', P .. ':ready', id)
  emit_unrun(id, status, why, tests)
  finish_if_settled(id)
end

-- The execution and test of a lease, if `token` is live.
local function lease_of(token)
  local of = redis.call('HGET', P .. ':lease', token)
  if not of then
    return nil
  end
  local id, t = string.match(of, '^([^|]+)|(.+)$')
  return id, t
end

-- Gives a lease up, freeing its execution's slot.
local function release(token, id)
  redis.call('HDEL', P .. ':lease', token)
  redis.call('ZREM', P .. ':leases', token)
  if redis.call('EXISTS', xkey(id)) == 1 then
    redis.call('HINCRBY', xkey(id), 'running', -1)
  end
end

-- Puts test `t` back at the head of its execution.
local function requeue_front(id, t)
  redis.call('LPUSH', xkey(id, ':q'), t)
  redis.call('ZADD', P .. ':ready', redis.call('HGET', xkey(id), 'score'), id)
end

