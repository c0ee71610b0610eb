-- Settle one finished request, atomically, on Redis's clock (TIME): give the TPM bucket back
-- what the estimate over-charged (or take what it under-charged), drop the request's budget
-- reservation, and add the real cost to the period's spend counter.
-- An unknown or already expired request id is fine: there is no reservation to drop, the cost
-- still counts. The RPM token is never given back.
--
-- KEYS: as admit.lua (1 rate hash, 2 spend counter, 3 reserved total, 4 reservation expiries,
--       5 reservation amounts)
-- ARGV: request id, tpm limit, estimated tokens, real tokens, real cost nano-USD,
--       spend counter TTL seconds (0 = never expires), 1 if admission reserved budget else 0
-- Returns {tpm remaining (-1 when the bucket was not touched), spend counter after (0 when a
-- request that reserved nothing cost nothing: then the counter is not read)}.

local request_id = ARGV[1]
local tpm = tonumber(ARGV[2])
local estimated = tonumber(ARGV[3])
local real = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local spend_ttl = tonumber(ARGV[6])
local had_reservation = ARGV[7] ~= '0'

local RATE_TTL_MS = 120000

local function int(x)
  return string.format('%d', x)
end

local remaining = -1
local delta = estimated - real
if tpm > 0 and delta ~= 0 then
  if redis.replicate_commands then redis.replicate_commands() end -- Redis < 5: see admit.lua
  local clock = redis.call('TIME')
  local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  local s = redis.call('HMGET', KEYS[1], 't', 'tts', 'tl')
  local tokens, stamp = tonumber(s[1]), tonumber(s[2])
  if tokens == nil or stamp == nil or tonumber(s[3]) ~= tpm then
    tokens = tpm -- no state (or another limit) is a full bucket, as in admit.lua
  else
    tokens = math.min(tpm, tokens + math.max(0, now_us - stamp) * tpm / 60000000)
  end
  tokens = math.max(0, math.min(tpm, tokens + delta))
  redis.call('HSET', KEYS[1], 't', tokens, 'tts', int(now_us), 'tl', int(tpm))
  redis.call('PEXPIRE', KEYS[1], RATE_TTL_MS)
  remaining = math.floor(tokens)
end

local reserved = had_reservation and tonumber(redis.call('HGET', KEYS[5], request_id))
if reserved then
  redis.call('HDEL', KEYS[5], request_id)
  redis.call('ZREM', KEYS[4], request_id)
  redis.call('DECRBY', KEYS[3], int(reserved))
  if redis.call('ZCARD', KEYS[4]) == 0 then
    redis.call('DEL', KEYS[3], KEYS[5])
  end
end

local spent
if cost > 0 then
  spent = redis.call('INCRBY', KEYS[2], int(cost))
  if spend_ttl > 0 then redis.call('EXPIRE', KEYS[2], spend_ttl) end
elseif had_reservation then
  spent = tonumber(redis.call('GET', KEYS[2])) or 0
else
  spent = 0 -- not read: nobody asks for the spend of a request that cost nothing
end

return {remaining, spent}
