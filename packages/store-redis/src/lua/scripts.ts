/**
 * The Lua scripts of the Redis store. Each atomic step of the Store contract is one script,
 * loaded with ioredis `defineCommand` (EVALSHA with the NOSCRIPT fallback).
 *
 * Every key a script touches starts with the store's hash tag (`{prefix}:`), passed as `BASE`,
 * so that all of them live in one hash slot and Redis Cluster accepts the script. Keys derived
 * inside a script (a record whose id the script assigns with INCR) use the same tag.
 *
 * Record hashes hold one field per record property, each JSON-encoded; numeric counters
 * (`remainQuota`, `usedQuota`, `quota`) are plain integers, so HINCRBY works on them.
 *
 * @module
 */

/**
 * Prelude of the scripts that publish change notifications. ARGV[1] = BASE (`{prefix}:`),
 * ARGV[2] = pub/sub channel, ARGV[3] = the writing instance's id. KEYS[1] = the change log stream.
 * Each change is appended to the stream (bounded) and published as `<stream id> <json>`.
 */
const NOTIFY = `
local BASE, CHANNEL, ORIGIN = ARGV[1], ARGV[2], ARGV[3]
local function notify(collection, id, op)
  local msg = cjson.encode({o = ORIGIN, c = collection, i = id, p = op})
  local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', '1000', '*', 'm', msg)
  redis.call('PUBLISH', CHANNEL, sid .. ' ' .. msg)
end
local function pairsFrom(first)
  local out = {}
  for i = first, #ARGV do out[#out + 1] = ARGV[i] end
  return out
end
`;

/** KEYS: log, key id sequence, keyHash index, key id set. ARGV[4] = keyHash, then field/value pairs. Returns the id, or -1 for a duplicate hash. */
export const KEY_CREATE = `${NOTIFY}
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return -1 end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', BASE .. 'key:' .. id, 'id', id, unpack(pairsFrom(5)))
redis.call('HSET', KEYS[3], ARGV[4], id)
redis.call('ZADD', KEYS[4], id, id)
notify('keys', tostring(id), 'upsert')
return id
`;

/** KEYS: log, record. ARGV[4] = collection, ARGV[5] = id, then field/value pairs. Returns the updated record (HGETALL) or an empty array for an unknown id. */
export const RECORD_UPDATE = `${NOTIFY}
if redis.call('EXISTS', KEYS[2]) == 0 then return {} end
if #ARGV >= 7 then redis.call('HSET', KEYS[2], unpack(pairsFrom(6))) end
notify(ARGV[4], ARGV[5], 'upsert')
return redis.call('HGETALL', KEYS[2])
`;

/**
 * KEYS: log, record, keyHash index. ARGV[4] = id, ARGV[5] = the new keyHash, ARGV[6] = the new
 * keyCipher field (JSON). Moves the lookup index with the hash (secret rotation). Returns the
 * updated record, an empty array for an unknown id, or -1 for a hash another key holds.
 */
export const KEY_REKEY = `${NOTIFY}
if redis.call('EXISTS', KEYS[2]) == 0 then return {} end
local id = ARGV[4]
local holder = redis.call('HGET', KEYS[3], ARGV[5])
if holder and holder ~= id then return -1 end
local old = cjson.decode(redis.call('HGET', KEYS[2], 'keyHash') or 'null')
if type(old) == 'string' and old ~= ARGV[5] and redis.call('HGET', KEYS[3], old) == id then
  redis.call('HDEL', KEYS[3], old)
end
redis.call('HSET', KEYS[3], ARGV[5], id)
redis.call('HSET', KEYS[2], 'keyHash', cjson.encode(ARGV[5]), 'keyCipher', ARGV[6])
notify('keys', id, 'upsert')
return redis.call('HGETALL', KEYS[2])
`;

/** KEYS: log, keyHash index, key id set. ARGV[4..] = ids. Returns the ids deleted. */
export const KEY_DELETE = `${NOTIFY}
local deleted = {}
for i = 4, #ARGV do
  local rec = BASE .. 'key:' .. ARGV[i]
  local h = redis.call('HGET', rec, 'keyHash')
  if h then
    redis.call('DEL', rec)
    local hash = cjson.decode(h)
    if redis.call('HGET', KEYS[2], hash) == ARGV[i] then redis.call('HDEL', KEYS[2], hash) end
    redis.call('ZREM', KEYS[3], ARGV[i])
    notify('keys', ARGV[i], 'delete')
    deleted[#deleted + 1] = ARGV[i]
  end
end
return deleted
`;

/**
 * A record by a unique index, in one round trip (the HGET of the index, then the HGETALL of the
 * record it names). KEYS[1] = the index hash. ARGV[1] = the record key's prefix with the store's
 * hash tag (`{prefix}:key:` / `{prefix}:user:`), ARGV[2] = the indexed value. Returns the record
 * (HGETALL, flat), or an empty array when the index has no entry or its record is gone.
 */
export const INDEX_GET = `
local id = redis.call('HGET', KEYS[1], ARGV[2])
if not id then return {} end
return redis.call('HGETALL', ARGV[1] .. id)
`;

/** KEYS: log, user id sequence, username index, access-token index, user id set. ARGV[4] = username, ARGV[5] = token hash ('' = none), then pairs. Returns the id, or -1 for a duplicate username. */
export const USER_CREATE = `${NOTIFY}
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return -1 end
local id = redis.call('INCR', KEYS[2])
redis.call('HSET', BASE .. 'user:' .. id, 'id', id, unpack(pairsFrom(6)))
redis.call('HSET', KEYS[3], ARGV[4], id)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[4], ARGV[5], id) end
redis.call('ZADD', KEYS[5], id, id)
notify('users', tostring(id), 'upsert')
return id
`;

/**
 * KEYS: log, record, username index, access-token index. ARGV[4] = id, ARGV[5] = '1' when the
 * username changes, ARGV[6] = new username, ARGV[7] = '1' when the token hash changes,
 * ARGV[8] = new token hash ('' = null), then pairs. Returns the record, {} for an unknown id,
 * or -1 for a duplicate username.
 */
export const USER_UPDATE = `${NOTIFY}
if redis.call('EXISTS', KEYS[2]) == 0 then return {} end
local id = ARGV[4]
if ARGV[5] == '1' then
  local old = cjson.decode(redis.call('HGET', KEYS[2], 'username'))
  if old ~= ARGV[6] then
    if redis.call('HEXISTS', KEYS[3], ARGV[6]) == 1 then return -1 end
    redis.call('HDEL', KEYS[3], old)
    redis.call('HSET', KEYS[3], ARGV[6], id)
  end
end
if ARGV[7] == '1' then
  local old = cjson.decode(redis.call('HGET', KEYS[2], 'accessTokenHash') or 'null')
  if type(old) == 'string' and redis.call('HGET', KEYS[4], old) == id then redis.call('HDEL', KEYS[4], old) end
  if ARGV[8] ~= '' then redis.call('HSET', KEYS[4], ARGV[8], id) end
end
if #ARGV >= 10 then redis.call('HSET', KEYS[2], unpack(pairsFrom(9))) end
notify('users', id, 'upsert')
return redis.call('HGETALL', KEYS[2])
`;

/** KEYS: log, record, username index, access-token index, user id set. ARGV[4] = id. Returns 1 when deleted. */
export const USER_DELETE = `${NOTIFY}
local f = redis.call('HMGET', KEYS[2], 'username', 'accessTokenHash')
if not f[1] then return 0 end
local id = ARGV[4]
local name = cjson.decode(f[1])
if redis.call('HGET', KEYS[3], name) == id then redis.call('HDEL', KEYS[3], name) end
local tok = cjson.decode(f[2] or 'null')
if type(tok) == 'string' and redis.call('HGET', KEYS[4], tok) == id then redis.call('HDEL', KEYS[4], tok) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[5], id)
notify('users', id, 'delete')
return 1
`;

/** KEYS: log, record, credential order set, credential sequence. ARGV[4] = id, then pairs. Returns 1, or -1 for an existing id. */
export const CRED_CREATE = `${NOTIFY}
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[2], unpack(pairsFrom(5)))
redis.call('ZADD', KEYS[3], seq, ARGV[4])
notify('credentials', ARGV[4], 'upsert')
return 1
`;

/** KEYS: log, record, credential order set. ARGV[4] = id. Returns 1 when deleted. */
export const CRED_DELETE = `${NOTIFY}
if redis.call('DEL', KEYS[2]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[4])
notify('credentials', ARGV[4], 'delete')
return 1
`;

/** KEYS: log, settings hash. ARGV[4..] = name/JSON pairs. */
export const SETTINGS_SET = `${NOTIFY}
if #ARGV < 5 then return 0 end
redis.call('HSET', KEYS[2], unpack(pairsFrom(4)))
for i = 4, #ARGV, 2 do notify('settings', ARGV[i], 'upsert') end
return 1
`;

/** KEYS: log, settings hash. ARGV[4] = name. Returns 1 when deleted. */
export const SETTINGS_DELETE = `${NOTIFY}
if redis.call('HDEL', KEYS[2], ARGV[4]) == 0 then return 0 end
notify('settings', ARGV[4], 'delete')
return 1
`;

/**
 * A record's `quotaPeriod` field as the decimal text of an integer: '0' when absent (or not a
 * number). Text, not a Lua number: a number would reach a reply or a hash as a float.
 */
const PERIOD_FN = `
local function period(v)
  local n = tonumber(v or '0')
  if n == nil or n ~= n or n <= 0 then return '0' end
  return string.format('%d', n)
end
`;

/**
 * KEYS: key record, reservation expiry index (ZSET id -> expiresAt), reservation rows (HASH id ->
 * row), in-flight units (HASH 'k:<keyId>' / 'u:<userId>' -> units). ARGV[1] = BASE, ARGV[2] =
 * units, ARGV[3] = reservation id, ARGV[4] = expiresAt (ms), ARGV[5] = meta JSON, ARGV[6] = keyId. Checks and
 * debits the key and its owner together, and writes the durable reservation row in the same
 * step. Returns {1, userId or '', keyDebited 0/1, keyPeriod, userPeriod} or {0, reason,
 * in-flight units}. A row is `keyId|userId|units|keyDebited|metaJSON`; the script adds the key's
 * and the owner's refill periods (`quotaPeriod`, absent = 0) to the meta JSON as `keyPeriod` and
 * `userPeriod` (rows written before they existed lack them: period 0).
 */
export const RESERVE = `${PERIOD_FN}
local units = tonumber(ARGV[2])
local keyId = ARGV[6]
local f = redis.call('HMGET', KEYS[1], 'remainQuota', 'unlimitedQuota', 'userId', 'quotaPeriod')
if not f[1] then return {0, 'key_not_found'} end
local debit = f[2] ~= 'true'
if debit and tonumber(f[1]) < units then
  return {0, 'key_quota', tonumber(redis.call('HGET', KEYS[4], 'k:' .. keyId) or '0')}
end
local uid = f[3]
local urec = false
local uperiod = '0'
if uid and uid ~= 'null' then
  urec = ARGV[1] .. 'user:' .. uid
  local u = redis.call('HMGET', urec, 'quota', 'quotaPeriod')
  if not u[1] then urec = false
  elseif tonumber(u[1]) < units then
    return {0, 'user_quota', tonumber(redis.call('HGET', KEYS[4], 'u:' .. uid) or '0')}
  else uperiod = period(u[2]) end
end
local kperiod = period(f[4])
if debit then redis.call('HINCRBY', KEYS[1], 'remainQuota', 0 - units) end
if urec then redis.call('HINCRBY', urec, 'quota', 0 - units) end
local ustr = urec and uid or ''
local meta = '{"keyPeriod":' .. kperiod .. ',"userPeriod":' .. uperiod .. ',' .. string.sub(ARGV[5], 2)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[3], keyId .. '|' .. ustr .. '|' .. units .. '|' .. (debit and 1 or 0) .. '|' .. meta)
redis.call('HINCRBY', KEYS[4], 'k:' .. keyId, units)
if urec then redis.call('HINCRBY', KEYS[4], 'u:' .. uid, units) end
return {1, ustr, debit and 1 or 0, kperiod, uperiod}
`;

/**
 * Settles one reservation (shared by SETTLE, COMMIT and RECOVER). Returns the units charged.
 * The reservation row goes in the same step; when it is already gone (recovered, so charged in
 * full), nothing changes and 0 is charged.
 * The arithmetic (charged, room, delta) is `settleAmounts` of `@tokenpool/core/store-kernel`
 * (packages/core/src/store/settlement.ts), the reference every store follows: keep the two in step.
 * A balance whose `quotaPeriod` (absent = 0) is no longer the reservation's (`keyPeriod`,
 * `userPeriod`, '' = 0) was refilled since: it is left as it is and caps nothing.
 */
const SETTLE_FN = `${PERIOD_FN}
local function settle(base, resId, keyId, userId, units, keyDebited, actual, nowSec, keyPeriod, userPeriod)
  if redis.call('HDEL', base .. 'res:data', resId) == 0 then return 0 end
  redis.call('ZREM', base .. 'res', resId)
  local inflight = base .. 'res:inflight'
  if redis.call('HINCRBY', inflight, 'k:' .. keyId, 0 - units) <= 0 then redis.call('HDEL', inflight, 'k:' .. keyId) end
  if userId ~= '' and redis.call('HINCRBY', inflight, 'u:' .. userId, 0 - units) <= 0 then
    redis.call('HDEL', inflight, 'u:' .. userId)
  end
  local k = base .. 'key:' .. keyId
  local kf = redis.call('HMGET', k, 'remainQuota', 'quotaPeriod')
  local kexists = kf[1] ~= false and kf[1] ~= nil
  local kopen = kexists and period(kf[2]) == period(keyPeriod)
  local u = false
  local uremain = 0
  if userId ~= '' then
    u = base .. 'user:' .. userId
    local uf = redis.call('HMGET', u, 'quota', 'quotaPeriod')
    if not uf[1] or period(uf[2]) ~= period(userPeriod) then u = false
    else uremain = tonumber(uf[1]) end
  end
  local charged = actual
  if actual > units then
    local room = actual - units
    if kopen and keyDebited then room = math.min(room, tonumber(kf[1])) end
    if u then room = math.min(room, uremain) end
    charged = units + math.max(0, room)
  end
  local delta = units - charged
  if kopen then
    if keyDebited then redis.call('HINCRBY', k, 'remainQuota', delta) end
    redis.call('HINCRBY', k, 'usedQuota', charged)
  end
  if kexists then redis.call('HSET', k, 'accessedTime', nowSec) end
  if u then
    redis.call('HINCRBY', u, 'quota', delta)
    redis.call('HINCRBY', u, 'usedQuota', charged)
  end
  return charged
end
`;

/** KEYS: key record. ARGV: BASE, keyId, userId ('' = none), units, keyDebited (0/1), actualUnits, nowSeconds, reservation id, keyPeriod, userPeriod. Returns the units charged. */
export const SETTLE = `${SETTLE_FN}
return settle(ARGV[1], ARGV[8], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6]), ARGV[7], ARGV[9], ARGV[10])
`;

/**
 * Removes one usage detail: its hash and its entries in every index (`usage`, and per what the
 * hash keeps: `usage:key:<k>`, `usage:user:<u>`, and the model, credential, name, group and
 * failure indexes its `x` names, see APPEND_FN). A detail written before the request log has no
 * `x`: only its `k` and `u` entries are removed, the other indexes never held it.
 */
const REMOVE_DETAIL_FN = `
local function removeDetail(base, member)
  local rec = base .. 'usage:' .. member
  local f = redis.call('HMGET', rec, 'k', 'u', 'x')
  redis.call('ZREM', base .. 'usage', member)
  if f[1] and f[1] ~= '' then redis.call('ZREM', base .. 'usage:key:' .. f[1], member) end
  if f[2] and f[2] ~= '' then redis.call('ZREM', base .. 'usage:user:' .. f[2], member) end
  if f[3] then
    local x = cjson.decode(f[3])
    if x[3] ~= '' then redis.call('ZREM', base .. 'usage:model:' .. x[3], member) end
    if x[4] ~= '' then redis.call('ZREM', base .. 'usage:cred:' .. x[4], member) end
    if x[5] ~= '' then redis.call('ZREM', base .. 'usage:kname:' .. x[5], member) end
    if x[6] ~= '' then redis.call('ZREM', base .. 'usage:uname:' .. x[6], member) end
    if x[7] ~= '' then redis.call('ZREM', base .. 'usage:group:' .. x[7], member) end
    if x[2] ~= '1' then redis.call('ZREM', base .. 'usage:fail', member) end
  end
  redis.call('DEL', rec)
end
`;

/**
 * Appends one usage record with its roll-up (shared by COMMIT and RECOVER). Returns its id.
 * The hash keeps the record JSON (`r`), `id`, `quota`, `k`/`u` (key / user id, '' = null), and
 * in `x` what the indexes and the filters read without decoding `r`, as the JSON array of
 * strings [total tokens, success 1/0, model, credential ('' = null), key name, username, group]
 * ('' = none / the default group). One field, not seven: the record JSON makes the hash a
 * hashtable, where each field costs some 70 bytes. Every index is a sorted set scored by timestamp
 * whose members are the zero-padded ids: `usage` (all), `usage:key:<id>`, `usage:user:<id>`,
 * `usage:model:<m>`, `usage:cred:<c>`, `usage:kname:<n>`, `usage:uname:<n>`, `usage:group:<g>`
 * (non-empty values only) and `usage:fail` (failed requests only). `usage:groups` is the SET of
 * group names ever indexed.
 */
const APPEND_FN = `
local function append(base, a, quota)
  local id = redis.call('INCR', base .. 'seq:usage')
  local member = string.format('%016d', id)
  local ts, kid, uid = ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local ok, model, cred, kname, uname, group = ARGV[a + 11], ARGV[a + 12], ARGV[a + 13], ARGV[a + 14], ARGV[a + 15], ARGV[a + 16]
  local x = cjson.encode({ARGV[a + 10], ok, model, cred, kname, uname, group})
  redis.call('HSET', base .. 'usage:' .. member, 'r', ARGV[a + 1], 'id', id, 'quota', quota, 'k', kid, 'u', uid, 'x', x)
  redis.call('ZADD', base .. 'usage', ts, member)
  if kid ~= '' then redis.call('ZADD', base .. 'usage:key:' .. kid, ts, member) end
  if uid ~= '' then redis.call('ZADD', base .. 'usage:user:' .. uid, ts, member) end
  if model ~= '' then redis.call('ZADD', base .. 'usage:model:' .. model, ts, member) end
  if cred ~= '' then redis.call('ZADD', base .. 'usage:cred:' .. cred, ts, member) end
  if kname ~= '' then redis.call('ZADD', base .. 'usage:kname:' .. kname, ts, member) end
  if uname ~= '' then redis.call('ZADD', base .. 'usage:uname:' .. uname, ts, member) end
  if group ~= '' then
    redis.call('ZADD', base .. 'usage:group:' .. group, ts, member)
    redis.call('SADD', base .. 'usage:groups', group)
  end
  if ok ~= '1' then redis.call('ZADD', base .. 'usage:fail', ts, member) end
  local rk = ARGV[a + 5]
  local row = base .. 'rollup:' .. rk
  redis.call('ZADD', base .. 'rollups', 0, rk)
  redis.call('HINCRBY', row, 'requests', 1)
  if ok == '1' then redis.call('HINCRBY', row, 'successes', 1) else redis.call('HINCRBY', row, 'failures', 1) end
  redis.call('HINCRBY', row, 'inputTokens', ARGV[a + 6])
  redis.call('HINCRBY', row, 'outputTokens', ARGV[a + 7])
  redis.call('HINCRBY', row, 'reasoningTokens', ARGV[a + 8])
  redis.call('HINCRBY', row, 'cachedTokens', ARGV[a + 9])
  redis.call('HINCRBY', row, 'totalTokens', ARGV[a + 10])
  redis.call('HINCRBY', row, 'quota', quota)
  return id
end
`;

/** Number of ARGV entries per usage record in {@link COMMIT} and {@link RECOVER}. */
export const RECORD_STRIDE = 16;

/** Number of ARGV entries per commit in {@link COMMIT}. */
export const COMMIT_STRIDE = 9 + RECORD_STRIDE;

/**
 * Settles reservations and appends usage records with their hourly roll-ups, as one step.
 * KEYS: usage sequence, usage index, roll-up index (the script derives them from BASE too).
 * ARGV[1] = BASE, ARGV[2] = nowSeconds, ARGV[3] = details limit (0 = none), ARGV[4] = number of
 * commits, then per commit {@link COMMIT_STRIDE} values: hasReservation, reservation id, keyId,
 * userId, units, keyDebited, actualUnits, keyPeriod, userPeriod, then the record's
 * {@link RECORD_STRIDE} values: record
 * JSON (without id and quota), timestamp, record keyId ('' = null), record userId, roll-up id,
 * input, output, reasoning, cached, total tokens, success (0/1), model, credentialId ('' = null),
 * keyName, username, group ('' = none).
 * Returns {id, quota, id, quota, ...}.
 */
export const COMMIT = `${SETTLE_FN}${REMOVE_DETAIL_FN}${APPEND_FN}
local base, nowSec, limit, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for c = 0, n - 1 do
  local a = 4 + c * ${COMMIT_STRIDE}
  local quota = tonumber(ARGV[a + 7])
  if ARGV[a + 1] == '1' then
    quota = settle(base, ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], tonumber(ARGV[a + 5]), ARGV[a + 6] == '1', quota, nowSec, ARGV[a + 8], ARGV[a + 9])
  end
  out[#out + 1] = append(base, a + 9, quota)
  out[#out + 1] = quota
end
if limit > 0 then
  local excess = redis.call('ZCARD', KEYS[2]) - limit
  if excess > 0 then
    for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do removeDetail(base, m) end
  end
end
return out
`;

/**
 * Recovers expired reservations: each candidate whose row still exists and is still expired
 * (not settled, renewed or recovered by another caller meanwhile) is settled at its full units
 * and gets its recovered usage record, in this one step. KEYS: reservation expiry index.
 * ARGV[1] = BASE, ARGV[2] = nowSeconds, ARGV[3] = nowMs, ARGV[4] = number of candidates, then per
 * candidate 7 + {@link RECORD_STRIDE} values: reservation id, keyId, userId, units, keyDebited,
 * keyPeriod, userPeriod, then the recovered record's values as in {@link COMMIT}.
 * Returns {id or 0 (skipped), quota, ...}.
 */
export const RECOVER = `${SETTLE_FN}${APPEND_FN}
local base, nowSec, nowMs, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for c = 0, n - 1 do
  local a = 4 + c * ${7 + RECORD_STRIDE}
  local score = redis.call('ZSCORE', KEYS[1], ARGV[a + 1])
  local units = tonumber(ARGV[a + 4])
  -- The expiry index and the row are written and deleted together: a score means a live row.
  if score and tonumber(score) <= nowMs then
    settle(base, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], units, ARGV[a + 5] == '1', units, nowSec, ARGV[a + 6], ARGV[a + 7])
    out[#out + 1] = append(base, a + 7, units)
    out[#out + 1] = units
  else
    out[#out + 1] = 0
    out[#out + 1] = 0
  end
end
return out
`;

/**
 * Starts a refill period of a key's or a user's quota (Store.refillQuota): a compare-and-set on
 * `quotaPeriod`. KEYS: log, record. ARGV[4] = collection (`keys` / `users`), ARGV[5] = id,
 * ARGV[6] = balance field (`remainQuota` / `quota`), ARGV[7] = period (decimal), ARGV[8] = amount.
 * Returns 1 when the record existed in an earlier period and was refilled, else 0.
 */
export const REFILL = `${NOTIFY}${PERIOD_FN}
local f = redis.call('HMGET', KEYS[2], ARGV[6], 'quotaPeriod')
if not f[1] then return 0 end
if tonumber(period(f[2])) >= tonumber(ARGV[7]) then return 0 end
redis.call('HSET', KEYS[2], ARGV[6], ARGV[8], 'usedQuota', '0', 'quotaPeriod', ARGV[7])
notify(ARGV[4], ARGV[5], 'upsert')
return 1
`;

/**
 * KEYS: usage index. ARGV: BASE, before (ms, exclusive), batch size, keep ('' = no bound).
 * Deletes at most a batch of details: first those older than `before`, then, with `keep`, the
 * oldest (by timestamp, then id: the index's order) beyond the newest `keep`. Returns how many
 * details were deleted; fewer than the batch means nothing is left to delete.
 */
export const PRUNE = `${REMOVE_DETAIL_FN}
local batch = tonumber(ARGV[3])
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, batch)
for _, m in ipairs(members) do removeDetail(ARGV[1], m) end
local n = #members
if ARGV[4] ~= '' and n < batch then
  local excess = math.min(redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4]), batch - n)
  if excess > 0 then
    for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do removeDetail(ARGV[1], m) end
    n = n + excess
  end
end
return n
`;

/**
 * One bounded step of a filtered walk over a usage index, newest first (`usage.list` and
 * `usage.stat` call it in a loop, so that no call holds Redis for long).
 * KEYS[1] = the index walked (the smallest one the query names, else `usage`).
 * ARGV[1] = BASE, ARGV[2] = from (ms, inclusive; '' = none), ARGV[3] = to (ms, exclusive;
 * '' = none), ARGV[4]/ARGV[5] = the cursor: score and member of the last entry the previous
 * step looked at ('' = start at `to`), ARGV[6] = how many entries to look at, ARGV[7] = matches
 * still to skip (the page's offset), ARGV[8] = matches still to collect (the page's limit),
 * ARGV[9] = '1' to stop once they are collected, then name/value pairs every match must have
 * (`k`, `u`, and `s`, `m`, `c`, `kn`, `un`, `g`: the values APPEND stores in `x`).
 * Returns {done (0/1), cursor score, cursor member, matches, sum of quota, sum of total tokens,
 * collected members...}.
 *
 * Each entry costs a ZREVRANGE step, one HMGET of its hash and decoding its `x`. A hash written
 * before the request log (no `x`) is decoded from its JSON instead, so these filters hold for it.
 * The cursor is an entry, not a rank: details committed or pruned between steps shift ranks but
 * not entries; a cursor entry pruned meanwhile is found again by its score.
 */
export const USAGE_SCAN = `
local idx, base = KEYS[1], ARGV[1]
local from = ARGV[2] == '' and -math.huge or tonumber(ARGV[2])
local to, cs, cm = ARGV[3], ARGV[4], ARGV[5]
local chunk, skip, want, stop = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9] == '1'
local names, wanted = {}, {}
for i = 10, #ARGV, 2 do
  names[#names + 1] = ARGV[i]
  wanted[#wanted + 1] = ARGV[i + 1]
end
local function str(v)
  if v == nil or v == cjson.null then return '' end
  return tostring(v)
end
-- Where each filter's value is in a detail's x (k and u are fields of their own).
local slot = {t = 1, s = 2, m = 3, c = 4, kn = 5, un = 6, g = 7}
-- The index of each filter that has one per value (a non-empty value).
local index = {m = 'usage:model:', c = 'usage:cred:', kn = 'usage:kname:', un = 'usage:uname:',
  k = 'usage:key:', u = 'usage:user:'}
-- Whether a detail passes a filter by its index alone: true / false, nil when the filter has
-- no index for that value (a group, an empty name).
local function indexed(n, v, m, rec)
  if n == 's' then
    if redis.call('ZSCORE', base .. 'usage:fail', m) then return v == '0' end
    -- Not in the failures: a success, unless the detail predates the index (no x field).
    if v == '0' then return false end
    return redis.call('HEXISTS', rec, 'x') == 1 or nil
  end
  local p = index[n]
  if not p or v == '' then return nil end
  return redis.call('ZSCORE', base .. p .. v, m) ~= false
end
-- {matches, quota, total tokens} of one detail from its fields (decoded).
local function checkFields(rec)
  local h = redis.call('HMGET', rec, 'x', 'quota', 'k', 'u')
  local f
  if h[1] then
    f = cjson.decode(h[1])
  else
    -- Written before the request log: the values come from the record JSON.
    local r = redis.call('HGET', rec, 'r')
    if not r then return false end
    r = cjson.decode(r)
    f = {str(r.totalTokens), r.success == true and '1' or '0', str(r.model), str(r.credentialId),
      str(r.keyName), str(r.username), str(r.group)}
  end
  for i = 1, #names do
    local n = names[i]
    local v
    if n == 'k' then v = h[3] elseif n == 'u' then v = h[4] else v = f[slot[n]] end
    if v ~= wanted[i] then return false end
  end
  return true, tonumber(h[2]) or 0, tonumber(f[1]) or 0
end
-- Whether the walk sums quota and tokens (usage.stat): then every match is decoded.
local sums = ARGV[9] == '2'
-- {matches, quota, total tokens} of one detail: its index filters are checked by membership (a
-- ZSCORE each) before anything is decoded; a list decodes only for filters without an index.
local function check(rec, m)
  local decode = sums
  for i = 1, #names do
    local ok = indexed(names[i], wanted[i], m, rec)
    if ok == false then
      -- A detail written before the request log is in no new index: its record decides.
      if redis.call('HEXISTS', rec, 'x') == 1 then return false end
      return checkFields(rec)
    elseif ok == nil then
      decode = true
    end
  end
  if not decode then return true, 0, 0 end
  return checkFields(rec)
end
local start
if cs == '' then
  start = to == '' and 0 or redis.call('ZCOUNT', idx, to, '+inf')
else
  local rank = redis.call('ZREVRANK', idx, cm)
  if rank then
    start = rank + 1
  else
    start = redis.call('ZCOUNT', idx, '(' .. cs, '+inf')
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', idx, cs, cs)) do
      if m > cm then start = start + 1 end
    end
  end
end
local stopAt = start + chunk - 1
local done = false
if ARGV[2] ~= '' then
  local last = redis.call('ZCOUNT', idx, ARGV[2], '+inf') - 1
  if last <= stopAt then
    stopAt = last
    done = true
  end
end
local rows = stopAt >= start and redis.call('ZREVRANGE', idx, start, stopAt, 'WITHSCORES') or {}
done = done or #rows < 2 * chunk
local matched, quota, tokens, page = 0, 0, 0, {}
for i = 1, #rows, 2 do
  local m, score = rows[i], rows[i + 1]
  if tonumber(score) < from then
    done = true
    break
  end
  cs, cm = score, m
  local ok, q, t = check(base .. 'usage:' .. m, m)
  if ok then
    matched = matched + 1
    quota = quota + q
    tokens = tokens + t
    if skip > 0 then
      skip = skip - 1
    elseif want > 0 then
      page[#page + 1] = m
      want = want - 1
      if want == 0 and stop then
        done = true
        break
      end
    end
  end
end
local out = {done and 1 or 0, cs, cm, matched, quota, tokens}
for _, m in ipairs(page) do out[#out + 1] = m end
return out
`;

/** KEYS: counter. ARGV: by, ttl in ms ('' = none). INCRBY, and PEXPIRE only when the counter was created. */
export const KV_INCR = `
local existed = redis.call('EXISTS', KEYS[1])
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and ARGV[2] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
`;

/** KEYS: lock. ARGV: token. Deletes the lock only when the token owns it. */
export const LOCK_RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * Shared head of the window scripts: the bucket arithmetic of `@tokenpool/core`'s
 * `store/limits.ts` (`windowSpan`, `bucketLeavesAt`), line by line. Bucket indexes are integers
 * below 2^53, formatted with %d so that hash fields never take an exponent.
 */
const WINDOW_HEAD = `
local function fmt(n) return string.format('%d', n) end
local function span(windowMs, now, nb)
  local b = math.ceil(windowMs / nb)
  return b, math.floor(now / b), math.floor((now - windowMs) / b)
end
local function keepTtl(key, ms)
  if ms < 1 then ms = 1 end
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
`;

/**
 * hitWindows. KEYS: one counter hash per hit (`{p}:win:<windowMs>:<key>`, field = bucket index,
 * value = units). ARGV[1] = nowMs, ARGV[2] = buckets per window, then per hit: limit, windowMs,
 * cost. All or nothing: returns `{1, remaining1, resetMs1, ...}`, or `{0, index (0-based),
 * remaining, retryAfterMs (-1 = never)}` and writes nothing. On success, buckets that have left
 * the window are deleted and each hash expires when its newest bucket leaves.
 */
export const HIT_WINDOWS = `${WINDOW_HEAD}
local now, nb = tonumber(ARGV[1]), tonumber(ARGV[2])
local pending, stale, out = {}, {}, {1}
for i = 1, #KEYS do
  local key = KEYS[i]
  local limit, w, cost = tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local b, cur, oldest = span(w, now, nb)
  local counted, order, count = {}, {}, 0
  local flat = redis.call('HGETALL', key)
  stale[key] = stale[key] or {}
  for j = 1, #flat, 2 do
    local bi, u = tonumber(flat[j]), tonumber(flat[j + 1])
    if bi < oldest then
      table.insert(stale[key], flat[j])
    elseif u > 0 then
      counted[bi] = (counted[bi] or 0) + u
    end
  end
  local p = pending[key] or 0
  if p > 0 then counted[cur] = (counted[cur] or 0) + p end
  for bi, u in pairs(counted) do
    count = count + u
    order[#order + 1] = bi
  end
  table.sort(order)
  local function leaveIn(bi) return (bi + 1) * b + w - now end
  if count + cost <= limit then
    local first = order[1]
    if cost > 0 and (first == nil or first > cur) then first = cur end
    out[#out + 1] = limit - count - cost
    out[#out + 1] = first and leaveIn(first) or 0
    pending[key] = p + cost
  else
    local retry = -1
    if cost <= limit then
      local left = count
      for _, bi in ipairs(order) do
        left = left - counted[bi]
        if left + cost <= limit then
          retry = leaveIn(bi)
          break
        end
      end
    end
    local remaining = limit - count
    if remaining < 0 then remaining = 0 end
    return {0, i - 1, remaining, retry}
  end
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local w, cost = tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  if #stale[key] > 0 then
    redis.call('HDEL', key, unpack(stale[key]))
    stale[key] = {}
  end
  if cost > 0 then
    local b, cur = span(w, now, nb)
    redis.call('HINCRBY', key, fmt(cur), cost)
    keepTtl(key, (cur + 1) * b + w - now)
  end
end
return out
`;

/**
 * adjustWindow. KEYS[1] = the counter hash. ARGV: windowMs, atMs, delta, nowMs, buckets per
 * window. Adds delta to the bucket of atMs (never below 0; deleted at 0); a no-op when that
 * bucket has left the window at nowMs.
 */
export const ADJUST_WINDOW = `${WINDOW_HEAD}
local w, at, delta, now, nb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local b, _, oldest = span(w, now, nb)
local bi = math.floor(at / b)
if bi < oldest then return 0 end
local field = fmt(bi)
local units = tonumber(redis.call('HGET', KEYS[1], field) or '0')
local nextUnits = units + delta
if nextUnits > 0 then
  redis.call('HSET', KEYS[1], field, fmt(nextUnits))
  keepTtl(KEYS[1], (bi + 1) * b + w - now)
elseif units > 0 then
  redis.call('HDEL', KEYS[1], field)
end
return 1
`;

/**
 * acquireLeases. KEYS: one sorted set per pool (`{p}:lease:<pool>`, member = lease id, score =
 * expiry ms). ARGV[1] = lease id, ARGV[2] = expiresAt, ARGV[3] = nowMs, then one limit per pool.
 * Drops expired leases, then all or nothing: `{1, inUse1, ...}` or `{0, index (0-based),
 * retryAfterMs}`. Each set expires with its last lease.
 */
export const ACQUIRE_LEASES = `
local id, exp, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local adding, order, out = {}, {}, {1}
for i = 1, #KEYS do
  local key = KEYS[i]
  local limit = tonumber(ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local n = redis.call('ZCARD', key)
  local held = redis.call('ZSCORE', key, id) ~= false
  if adding[key] and not held then n = n + 1 end
  local mine = held or adding[key] == true
  if not mine and n >= limit then
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {0, i - 1, tonumber(first[2]) - now}
  end
  if not adding[key] then order[#order + 1] = key end
  adding[key] = true
  out[#out + 1] = mine and n or n + 1
end
for _, key in ipairs(order) do
  redis.call('ZADD', key, exp, id)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  local ttl = tonumber(last[2]) - now
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', key, ttl)
end
return out
`;

/**
 * renewLeases. KEYS: pool sets. ARGV[1] = lease id, ARGV[2] = expiresAt, ARGV[3] = nowMs.
 * Extends the lease where it is still live; returns how many were.
 */
export const RENEW_LEASES = `
local id, exp, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = 0
for i = 1, #KEYS do
  local score = redis.call('ZSCORE', KEYS[i], id)
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[i], 'XX', exp, id)
    local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')
    local ttl = tonumber(last[2]) - now
    if ttl < 1 then ttl = 1 end
    redis.call('PEXPIRE', KEYS[i], ttl)
    n = n + 1
  end
end
return n
`;

/** releaseLeases. KEYS: pool sets. ARGV[1] = lease id. Returns how many leases were removed. */
export const RELEASE_LEASES = `
local n = 0
for i = 1, #KEYS do n = n + redis.call('ZREM', KEYS[i], ARGV[1]) end
return n
`;
