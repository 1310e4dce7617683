-- Replace an admitted request's estimates with its actual figures (the caller settles a
-- ticket once).
-- KEYS: the tokens window hashes, then the quota hash if there is a quota.
-- ARGV: now ('' = the server's clock), the ticket's second, has quota (0/1), request id, usd,
--       tokens, then the correction (actual - estimate) per tokens window.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end

local has_quota = ARGV[3] == '1'
local last_window = #KEYS - (has_quota and 1 or 0)
local second = ARGV[2]
-- A bucket that has left the window no longer counts, so correcting it would change nothing.
if tonumber(second) >= math.floor(now) - 60 then
  for i = 1, last_window do
    if redis.call('HEXISTS', KEYS[i], second) == 1 then
      if redis.call('HINCRBY', KEYS[i], second, ARGV[6 + i]) < 0 then
        redis.call('HSET', KEYS[i], second, 0)
      end
    end
  end
end

if has_quota then
  local quota = KEYS[#KEYS]
  local until_ = redis.call('HGET', quota, 'until')
  -- A period that has ended (or a counter Redis lost) is not reopened by a late settle; the
  -- next admit seeds a new counter from the ledger.
  if redis.call('HEXISTS', quota, 'usd') == 1 and not (until_ and now >= tonumber(until_)) then
    redis.call('HDEL', quota, 'r:' .. ARGV[4])
    redis.call('HINCRBYFLOAT', quota, 'usd', ARGV[5])
    redis.call('HINCRBY', quota, 'tok', ARGV[6])
  end
end
return 1
