-- Admit one request for one API key, atomically, on Redis's clock (TIME).
-- Checks in Gandalf's order: budget, then RPM (1 token), then TPM (the estimate). Takes the RPM
-- token, the TPM tokens and the budget reservation only when all three pass: a refusal writes
-- nothing, so a refused request costs nothing.
--
-- KEYS[1] rate hash: r, rts, rl (RPM tokens, their refill time in µs, the limit they are for)
--                    and t, tts, tl (the same for TPM)
-- KEYS[2] spend counter of the period (integer nano-USD; read only here)
-- KEYS[3] reserved total (integer nano-USD of the reservations in flight)
-- KEYS[4] reservation expiries (sorted set: request id, score = expiry in ms)
-- KEYS[5] reservation amounts (hash: request id -> nano-USD)
-- ARGV: request id, rpm limit, tpm limit, estimated tokens, budget nano-USD,
--       estimated cost nano-USD, reservation hold ms (a limit or budget of 0 = none)
-- Returns {code, rpm remaining, tpm remaining, wait ms}; code 0 allowed, 1 budget, 2 rpm, 3 tpm.
-- Remaining counts are whole tokens after taking; wait is until the refused bucket would pass.

local request_id = ARGV[1]
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local budget = tonumber(ARGV[5])
local cost = tonumber(ARGV[6])
local hold_ms = tonumber(ARGV[7])

-- A full bucket equals no state: after 60 s idle every bucket is full, so 120 s is safe.
local RATE_TTL_MS = 120000
-- unpack() is bounded by Lua's C stack (LUAI_MAXCSTACK = 8000): purge in chunks.
local CHUNK = 1000

local function int(x)
  return string.format('%d', x)
end

-- Redis < 5 replicates scripts verbatim and refuses writes after TIME; later ones ignore this
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local now_ms = math.floor(now_us / 1000)

-- Lazy refill: limit/60 tokens per second since the last write, capped at the limit. A bucket
-- without state, or computed for another limit, starts full (Gandalf: a changed limit gets a
-- fresh limiter).
local function refill(limit, tokens, stamp, stored_limit)
  tokens, stamp = tonumber(tokens), tonumber(stamp)
  if tokens == nil or stamp == nil or tonumber(stored_limit) ~= limit then
    return limit
  end
  local elapsed = math.max(0, now_us - stamp)
  return math.min(limit, tokens + elapsed * limit / 60000000)
end

local rpm_tokens, tpm_tokens = 0, 0
if rpm > 0 or tpm > 0 then
  local s = redis.call('HMGET', KEYS[1], 'r', 'rts', 'rl', 't', 'tts', 'tl')
  if rpm > 0 then rpm_tokens = refill(rpm, s[1], s[2], s[3]) end
  if tpm > 0 then tpm_tokens = refill(tpm, s[4], s[5], s[6]) end
end

local code, wait_ms = 0, 0

if budget > 0 then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now_ms)
  if #expired > 0 then
    local freed = 0
    for i = 1, #expired, CHUNK do
      local ids = {unpack(expired, i, math.min(i + CHUNK - 1, #expired))}
      local amounts = redis.call('HMGET', KEYS[5], unpack(ids))
      for j = 1, #amounts do freed = freed + (tonumber(amounts[j]) or 0) end
      redis.call('HDEL', KEYS[5], unpack(ids))
      redis.call('ZREM', KEYS[4], unpack(ids))
    end
    if freed > 0 then redis.call('DECRBY', KEYS[3], int(freed)) end
  end
  local spent = tonumber(redis.call('GET', KEYS[2])) or 0
  local reserved = tonumber(redis.call('GET', KEYS[3])) or 0
  if spent + reserved + cost > budget then code = 1 end
end

if code == 0 and rpm > 0 and rpm_tokens < 1 then
  code = 2
  wait_ms = math.ceil((1 - rpm_tokens) * 60000 / rpm)
end

if code == 0 and tpm > 0 then
  if need > tpm then
    -- can never pass: a full minute, and no loop of retries that refill nothing useful
    code = 3
    wait_ms = 60000
  elseif tpm_tokens < need then
    code = 3
    wait_ms = math.ceil((need - tpm_tokens) * 60000 / tpm)
  end
end

if code == 0 then
  if rpm > 0 or tpm > 0 then
    local fields = {}
    if rpm > 0 then
      rpm_tokens = rpm_tokens - 1
      for _, v in ipairs({'r', rpm_tokens, 'rts', int(now_us), 'rl', int(rpm)}) do
        fields[#fields + 1] = v
      end
    else
      redis.call('HDEL', KEYS[1], 'r', 'rts', 'rl')
    end
    if tpm > 0 then
      tpm_tokens = tpm_tokens - need
      for _, v in ipairs({'t', tpm_tokens, 'tts', int(now_us), 'tl', int(tpm)}) do
        fields[#fields + 1] = v
      end
    else
      redis.call('HDEL', KEYS[1], 't', 'tts', 'tl')
    end
    redis.call('HSET', KEYS[1], unpack(fields))
    redis.call('PEXPIRE', KEYS[1], RATE_TTL_MS)
  end
  if budget > 0 and cost > 0 then
    -- the same request id twice replaces its reservation
    local previous = tonumber(redis.call('HGET', KEYS[5], request_id)) or 0
    redis.call('ZADD', KEYS[4], int(now_ms + hold_ms), request_id)
    redis.call('HSET', KEYS[5], request_id, int(cost))
    redis.call('INCRBY', KEYS[3], int(cost - previous))
    -- every member expires within hold_ms, so the three keys can go a minute after that
    local keys_ttl = int(hold_ms + 60000)
    redis.call('PEXPIRE', KEYS[3], keys_ttl)
    redis.call('PEXPIRE', KEYS[4], keys_ttl)
    redis.call('PEXPIRE', KEYS[5], keys_ttl)
  end
end

return {code, math.floor(rpm_tokens), math.floor(tpm_tokens), wait_ms}
