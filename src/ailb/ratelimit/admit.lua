-- Check and, if everything has room, charge: the semantics of ailb.ratelimit, in one step.
-- KEYS: the window hashes (second -> units), then the quota hash if there is a quota, then the
--       revocation key if there is one.
-- ARGV: now ('' = the server's clock, shared by every instance), window count, has quota (0/1),
--       has revocation (0/1), request id, reservation ttl, then limit and cost per window, then
--       for a quota: usd limit, token limit ('' = unchecked), usd estimate, token estimate,
--       period ttl ('' = none), seed usd, seed tokens; then, for a request without a completion
--       limit (ailb.ratelimit.Flex): most, least, step, usd per token.
-- Returns: reason ('' = allowed), index of the refusing window (0 if none), retry after,
--          second, extra tokens granted, then remaining and reset per window. Fractions travel
--          as strings: Redis truncates Lua numbers to integers.
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local second = math.floor(now)
local oldest = second - 60 -- 61 whole seconds, so no 60-second span exceeds the limit
local nwin = tonumber(ARGV[2])
local has_quota = ARGV[3] == '1'
local extra = 0

local function fmt(x)
  return string.format('%.17g', x)
end

local windows = {}
for i = 1, nwin do
  local key = KEYS[i]
  local flat = redis.call('HGETALL', key)
  local buckets, count = {}, 0
  for j = 1, #flat, 2 do
    local s = tonumber(flat[j])
    if s < oldest then
      redis.call('HDEL', key, flat[j])
    else
      local units = tonumber(flat[j + 1])
      buckets[#buckets + 1] = {s, units}
      count = count + units
    end
  end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  windows[i] = {
    key = key, limit = tonumber(ARGV[5 + 2 * i]), cost = tonumber(ARGV[6 + 2 * i]),
    buckets = buckets, count = count, tokens = string.sub(key, -7) == ':tokens',
  }
end

local function reply(reason, refusing, retry_after)
  local out = {reason, refusing, fmt(retry_after), second, extra}
  for _, w in ipairs(windows) do
    local count, last = w.count, nil
    for j = #w.buckets, 1, -1 do
      if w.buckets[j][2] > 0 then
        last = w.buckets[j][1]
        break
      end
    end
    if reason == '' then
      count = count + w.cost
      if w.cost > 0 then
        last = second
      end
    end
    out[#out + 1] = math.max(0, w.limit - count)
    out[#out + 1] = last and fmt(last + 61 - now) or '0'
  end
  return out
end

local function retry_after(w)
  if w.cost > w.limit then
    return 60 -- never fits; ask again after a full window
  end
  local excess = w.count + w.cost - w.limit
  for _, b in ipairs(w.buckets) do
    excess = excess - b[2]
    if excess <= 0 then
      return b[1] + 61 - now
    end
  end
  return 60
end

if ARGV[4] == '1' then
  local until_ = redis.call('GET', KEYS[#KEYS])
  if until_ and now < tonumber(until_) then
    return reply('revoked', 0, 0)
  end
end

-- The quota's state (spent plus live reservations), read before any check: a Flex request's
-- extra tokens are sized by it.
local quota, q, usd_limit, token_limit, usd, tokens, used_usd, used_tokens
if has_quota then
  quota = KEYS[nwin + 1]
  q = 7 + 2 * nwin
  usd_limit, token_limit = tonumber(ARGV[q]), tonumber(ARGV[q + 1])
  usd, tokens = tonumber(ARGV[q + 2]), tonumber(ARGV[q + 3])
  local period = tonumber(ARGV[q + 4])
  local flat = redis.call('HGETALL', quota)
  local fields = {}
  for j = 1, #flat, 2 do
    fields[flat[j]] = flat[j + 1]
  end
  -- 'until' mirrors EXPIRE on the script's clock, so an injected (test) clock ends the period
  -- just as the server's clock does.
  if fields['until'] and now >= tonumber(fields['until']) then
    redis.call('DEL', quota)
    fields = {}
  end
  if not fields['usd'] then
    fields = {usd = ARGV[q + 5], tok = ARGV[q + 6]}
    redis.call('HSET', quota, 'usd', fields['usd'], 'tok', fields['tok'])
    if period then
      redis.call('HSET', quota, 'until', fmt(now + period))
      redis.call('EXPIRE', quota, period)
    end
  end
  used_usd, used_tokens = tonumber(fields['usd']), tonumber(fields['tok'])
  for name, value in pairs(fields) do
    if string.sub(name, 1, 2) == 'r:' then
      local r_usd, r_tokens, r_until = string.match(value, '^([^|]*)|([^|]*)|(.*)$')
      if now >= tonumber(r_until) then
        redis.call('HDEL', quota, name)
      else
        used_usd = used_usd + tonumber(r_usd)
        used_tokens = used_tokens + tonumber(r_tokens)
      end
    end
  end
end

-- A request without a completion limit gets as many extra tokens as every tokens window and
-- the quota leave room for (at most `most`, in steps); fewer than `least` and it is refused.
local f = 7 + 2 * nwin + (has_quota and 7 or 0)
if ARGV[f] then
  local most, least, step = tonumber(ARGV[f]), tonumber(ARGV[f + 1]), tonumber(ARGV[f + 2])
  local per_token = tonumber(ARGV[f + 3])
  local room, limited = most, false
  for _, w in ipairs(windows) do
    if w.tokens then
      room = math.min(room, w.limit - w.count - w.cost)
      limited = true
    end
  end
  if has_quota then
    if token_limit then
      room = math.min(room, token_limit - used_tokens - tokens)
      limited = true
    end
    if usd_limit then
      limited = true
      if per_token > 0 then
        local money = usd_limit + 1e-9 - used_usd - usd
        room = math.min(room, money > 0 and math.floor(money / per_token) or 0)
      end
    end
  end
  if limited then
    extra = room > 0 and room - room % step or 0
    if extra < least then
      extra = least
    end
    for _, w in ipairs(windows) do
      if w.tokens then
        w.cost = w.cost + extra
      end
    end
    if has_quota then
      tokens = tokens + extra
      usd = usd + extra * per_token
    end
  end
end

for i, w in ipairs(windows) do
  if w.count + w.cost > w.limit then
    return reply('rate', i, retry_after(w))
  end
end

local reservation
if has_quota then
  if (usd_limit and used_usd + usd > usd_limit + 1e-9)
      or (token_limit and used_tokens + tokens > token_limit) then
    return reply('quota', 0, 0)
  end
  reservation = fmt(usd) .. '|' .. fmt(tokens) .. '|' .. fmt(now + tonumber(ARGV[6]))
end

for _, w in ipairs(windows) do
  redis.call('HINCRBY', w.key, second, w.cost)
  redis.call('PEXPIRE', w.key, 62000)
end
if quota then
  redis.call('HSET', quota, 'r:' .. ARGV[5], reservation)
end
return reply('', 0, 0)
