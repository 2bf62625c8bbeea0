-- reap: returns expired leases to the head of their executions; after
-- `max deliveries` expiries of one test it is settled as an error, and a
-- halted execution's test is settled as cancelled.
-- KEYS[1]  P:leases
-- ARGV     prefix, now (unix ms), max deliveries, batch size
-- Returns  the number of expired leases handled
local now, max_deliveries = tonumber(ARGV[2]), tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, token in ipairs(expired) do
  local id, t = lease_of(token)
  redis.call('ZREM', P .. ':leases', token)
  if id then
    release(token, id)
    if redis.call('EXISTS', xkey(id)) == 1 and redis.call('SISMEMBER', xkey(id, ':s'), t) == 0 then
      local n = redis.call('HINCRBY', xkey(id, ':e'), t, 1)
      local halted = redis.call('HGET', xkey(id), 'halt')
      local status, reason = nil, nil
      if halted == 'stopped_on_failure' then
        status, reason = 'cancelled', 'cancelled: stop_on_first_failure'
      elseif halted then
        status, reason = 'cancelled', 'cancelled while running'
      elseif n >= max_deliveries then
        status = 'error'
        reason = 'lease expired ' .. n .. ' times: the worker running this test stopped responding each time'
      end
      if status then
        local entry = settle_unrun(id, t, status)
        if entry then
          emit_unrun(id, status, reason, { entry })
        end
        finish_if_settled(id)
      else
        requeue_front(id, t)
      end
    end
  end
end
if #expired > 0 then
  redis.call('HINCRBY', P .. ':stats', 'reaped', #expired)
end
return #expired
