"""The Lua scripts that change the shared state: each runs atomically in Redis.

Every rule that must hold across processes lives here, in one script per change, so a slow or
stale process can never evict a newer connection nor end a membership twice: each script
checks the member's generation (a global counter, one per connection) before it acts.

Layout of the keys (``{room}`` is a hash tag, so a room's keys stay on one node if rooms are
ever sharded):

- ``wsroom:r:{room}:m``   hash pid → member record (JSON: ``st`` J/W/L/O, ``g`` generation,
  ``p`` process, ``j`` joined, ``d`` grace deadline ms, ``cc``/``cr`` last close, ``rt``
  returning from OFFLINE, ``ho`` handovers pending: "proc|gen" → the ``r`` entry's id, ``n``
  the numbered sequence of a resume membership (contract §7), see below)
- ``wsroom:r:{room}:c``   hash: ``live``, ``joined`` counts, ``grace`` ms, ``maxq``
- ``wsroom:r:{room}:w``   set: joined members without a live connection (their sends queue)
- ``wsroom:r:{room}:q:<pid>`` list: a member's queue, oldest first
- ``wsroom:r:{room}:s``   stream: the room's broadcasts, sends and notices, in the room's order
- ``wsroom:r:{room}:x``   zset pid → time: the room's recent grace expiries (a late resume is
  told "expired")
- ``wsroom:rooms``        set of rooms with a member; ``wsroom:deadlines`` zset of grace ends;
  ``wsroom:procs`` zset process → last heartbeat; ``wsroom:proc:<p>:m`` its members;
  ``wsroom:proc:<p>:ho`` handovers it owes; ``wsroom:events`` hook calls for any hub to run;
  ``wsroom:gen`` the generation counter; ``wsroom:done:<call>`` answers of calls already made.

States: J a first join whose ``on_join`` runs (not a member yet), W a member with a connection
that is not live (its ``on_join`` runs, its backlog is being flushed, or it replaced a
connection whose handover is pending), L live, O offline inside its grace period.

A resume membership (contract §7) has ``n`` in its record. While a process serves it live, that
process's ``OutboundLog`` holds the sequence and ``n`` is ``{}``. When the connection ends, is
replaced or holds its backlog, the process hands the log over: its unacknowledged frames go to the
queue's head and ``n`` becomes ``{q, f, c, l}``: the queue's items are numbered implicitly, item
``i`` has ``seq`` ``q + i``; ``f`` is the lowest ``last_seq`` a resume may ask from; ``c`` the last
``cseq`` handed to ``on_message``; ``l`` how many frames after the queue's tail were lost for want
of room. A process that dies while it holds the sequence leaves ``d`` (the sequence is lost: the
resume is told so). Only the scripts that drop or prepend frames touch ``n``; a plain connection's
join removes it.

Each script takes a call id first: a retry after a lost reply gets the first answer back
instead of doing the change twice (answers are kept 30 s, longer than any retry lasts; read-only
calls pass no id and keep nothing). Each answers one JSON text.
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

_PRELUDE = r"""
local P = 'wsroom:'
local function rk(room, s) return P .. 'r:{' .. room .. '}:' .. s end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function getm(room, pid)
  local v = redis.call('HGET', rk(room, 'm'), pid)
  if v then return cjson.decode(v) end
  return nil
end
local function putm(room, pid, m)
  redis.call('HSET', rk(room, 'm'), pid, cjson.encode(m))
end
local function cnum(room, field)
  return tonumber(redis.call('HGET', rk(room, 'c'), field) or '0')
end
local RETAIN_MS = 60000  -- how long a room's stream keeps an entry
local function xadd(room, ...)
  local minid = tostring(now_ms() - RETAIN_MS) .. '-0'
  local s = rk(room, 's')
  local id = redis.call('XADD', s, 'MINID', '~', minid, '*', ...)
  redis.call('PEXPIRE', s, RETAIN_MS * 10)
  return id
end
local function tail(room)
  local last = redis.call('XREVRANGE', rk(room, 's'), '+', '-', 'COUNT', 1)
  if #last == 0 then return '0-0' end
  return last[1][1]
end
local function memkey(room, pid) return room .. '\0' .. pid end
local function entry_field(e, name)
  for i = 1, #e, 2 do if e[i] == name then return e[i + 1] end end
  return nil
end
-- The frames of stream entries in (after, upto) that were meant for pid, oldest first.
local function missed(room, pid, after, upto)
  local out = {}
  local hi = '+'
  if upto then hi = '(' .. upto end
  local entries = redis.call('XRANGE', rk(room, 's'), '(' .. after, hi)
  for _, e in ipairs(entries) do
    local f = e[2]
    local k = entry_field(f, 'k')
    if k == 'b' then
      local skip = false
      local x = entry_field(f, 'x')
      if x and x ~= '[]' then
        for _, p in ipairs(cjson.decode(x)) do if p == pid then skip = true end end
      end
      if not skip then table.insert(out, entry_field(f, 'f')) end
    elseif k == 's' and entry_field(f, 't') == pid then
      table.insert(out, entry_field(f, 'f'))
    end
  end
  return out
end
-- What a replaced connection missed before its replacement (entry ho = {r's id, was live}).
local function handed_missed(room, pid, after, ho)
  if not ho[2] then return {} end
  return missed(room, pid, after, ho[1])
end
-- Put head in front of pid's queue, keeping at most maxq (the newest are cut, as in one process).
local function prepend(room, pid, head)
  if #head == 0 then return 0 end
  local q = rk(room, 'q:' .. pid)
  local maxq = cnum(room, 'maxq')
  local rest = redis.call('LRANGE', q, 0, -1)
  redis.call('DEL', q)
  local n, cut = 0, 0
  for _, f in ipairs(head) do
    if n < maxq then redis.call('RPUSH', q, f); n = n + 1 else cut = cut + 1 end
  end
  for _, f in ipairs(rest) do
    if n < maxq then redis.call('RPUSH', q, f); n = n + 1 else cut = cut + 1 end
  end
  return cut
end
-- A numbered member lost k frames after its queue's tail (their seqs are spent: a gap).
local function lose(m, k)
  if m.n and k > 0 then m.n.l = (m.n.l or 0) + k end
end
-- Take a process's hand-over of a numbered sequence (meta: JSON {q, f, c}, or '' for none).
local function take_sequence(m, meta, cut)
  if meta == '' then
    lose(m, cut)
    return
  end
  local n = cjson.decode(meta)
  n.l = cut
  m.n = n
end
-- A process that held a member's sequence is gone: the sequence is lost with it.
-- (``h``: it handed the queue's numbering over but kept the frames before it, holding a backlog.)
local function sequence_lost(m)
  if m.n and (m.n.q == nil or m.n.h) then m.n.d = 1 end
end
local function dead_key(room, pid, gen) return cjson.encode({room, pid, gen}) end
-- Remove a member and everything it holds; keeps the counts and the room set right.
local function remove(room, pid, m)
  redis.call('HDEL', rk(room, 'm'), pid)
  redis.call('DEL', rk(room, 'q:' .. pid))
  redis.call('SREM', rk(room, 'w'), pid)
  redis.call('SREM', P .. 'proc:' .. m.p .. ':m', memkey(room, pid))
  if m.st == 'O' then redis.call('ZREM', P .. 'deadlines', dead_key(room, pid, m.g)) end
  if m.st == 'L' then redis.call('HINCRBY', rk(room, 'c'), 'live', -1) end
  if m.j == 1 then
    if redis.call('HINCRBY', rk(room, 'c'), 'joined', -1) <= 0 then
      redis.call('SREM', P .. 'rooms', room)
    end
  end
  if redis.call('HLEN', rk(room, 'm')) == 0 then
    redis.call('DEL', rk(room, 'c'), rk(room, 'w'))
  end
end
-- Go OFFLINE for the grace period (or end now without one): answers the leave, if any.
local function to_offline(room, pid, m, code, reason)
  if m.st == 'L' then redis.call('HINCRBY', rk(room, 'c'), 'live', -1) end
  if m.j ~= 1 then
    m.st = 'gone'
    remove(room, pid, m)
    return nil
  end
  local grace = cnum(room, 'grace')
  if grace <= 0 then
    m.st = 'gone'
    remove(room, pid, m)
    return {room, pid, code, reason}
  end
  m.st = 'O'
  m.d = now_ms() + grace
  m.cc = code
  m.cr = reason
  m.rt = 0
  redis.call('SADD', rk(room, 'w'), pid)
  redis.call('ZADD', P .. 'deadlines', m.d, dead_key(room, pid, m.g))
  putm(room, pid, m)
  return nil
end
local function handover_done(room, pid, m, key)
  m.ho[key] = nil
  local parts = {}
  for part in string.gmatch(key, '[^|]+') do table.insert(parts, part) end
  redis.call('SREM', P .. 'proc:' .. parts[1] .. ':ho', memkey(room, pid))
  if next(m.ho) == nil then
    m.ho = nil
    xadd(room, 'k', 'h', 't', pid, 'g', tostring(m.g))
  end
end
"""

_BODIES = {
    # ARGV: room, frame, exclude (JSON list) → {sent, queued, dropped} | {err}
    "broadcast": r"""
local room, frame, exclude = ARGV[2], ARGV[3], ARGV[4]
local counts = redis.call('HMGET', rk(room, 'c'), 'joined', 'live', 'maxq')
if tonumber(counts[1] or '0') <= 0 then return {err = 'RoomNotFound'} end
local ex = {}
for _, p in ipairs(cjson.decode(exclude)) do ex[p] = true end
local sent = tonumber(counts[2] or '0')
for p, _ in pairs(ex) do
  local m = getm(room, p)
  if m and m.st == 'L' then sent = sent - 1 end
end
xadd(room, 'k', 'b', 'f', frame, 'x', exclude)
local queued, dropped = 0, {}
local maxq = tonumber(counts[3] or '0')
for _, p in ipairs(redis.call('SMEMBERS', rk(room, 'w'))) do
  if not ex[p] then
    local q = rk(room, 'q:' .. p)
    if redis.call('LLEN', q) < maxq then
      redis.call('RPUSH', q, frame)
      queued = queued + 1
    else
      table.insert(dropped, p)
      local m = getm(room, p)
      if m and m.n then
        lose(m, 1)
        putm(room, p, m)
      end
    end
  end
end
return {sent = sent, queued = queued, dropped = dropped}
""",
    # ARGV: room, pid, frame → {delivery} | {err}
    "send_to": r"""
local room, pid, frame = ARGV[2], ARGV[3], ARGV[4]
if cnum(room, 'joined') <= 0 then return {err = 'RoomNotFound'} end
local m = getm(room, pid)
if not m or m.j ~= 1 then return {err = 'ParticipantNotFound'} end
if m.st == 'L' then
  xadd(room, 'k', 's', 't', pid, 'f', frame)
  return {delivery = 'SENT'}
end
local q = rk(room, 'q:' .. pid)
if redis.call('LLEN', q) < cnum(room, 'maxq') then
  redis.call('RPUSH', q, frame)
  return {delivery = 'QUEUED'}
end
if m.n then
  lose(m, 1)
  putm(room, pid, m)
end
return {err = 'ParticipantOffline'}
""",
    # ARGV: room, pid, proc, grace_ms, maxq → {gen, reconnect, tail}
    "begin_join": r"""
local room, pid, proc = ARGV[2], ARGV[3], ARGV[4]
redis.call('HSET', rk(room, 'c'), 'grace', ARGV[5], 'maxq', ARGV[6])
local gen = redis.call('INCR', P .. 'gen')
local m = getm(room, pid)
redis.call('SADD', P .. 'proc:' .. proc .. ':m', memkey(room, pid))
if not m then
  putm(room, pid, {st = 'J', g = gen, p = proc, j = 0, rt = 0})
  return {gen = gen, reconnect = false, tail = tail(room)}
end
local old = m.st
if old == 'L' then redis.call('HINCRBY', rk(room, 'c'), 'live', -1) end
if old == 'O' then redis.call('ZREM', P .. 'deadlines', dead_key(room, pid, m.g)) end
if m.p ~= proc then redis.call('SREM', P .. 'proc:' .. m.p .. ':m', memkey(room, pid)) end
local joined = m.j == 1
if joined and (old == 'O' or (m.rt == 1 and old == 'W')) then m.rt = 1 else m.rt = 0 end
if old ~= 'O' then
  -- A connection is replaced: it closes with 4001 where it lives, and hands what it had not
  -- written over to the queue's head before this join may go live.
  local rid = xadd(room, 'k', 'r', 't', pid, 'g', tostring(m.g), 'n', tostring(gen))
  if joined then
    m.ho = m.ho or {}
    -- Whether it was live: only then did the stream carry its traffic (else it was queued).
    m.ho[m.p .. '|' .. tostring(m.g)] = {rid, old == 'L'}
    redis.call('SADD', P .. 'proc:' .. m.p .. ':ho', memkey(room, pid))
  end
end
if joined then
  m.st = 'W'
  redis.call('SADD', rk(room, 'w'), pid)
else
  m.st = 'J'
end
m.g = gen
m.p = proc
m.d = nil
putm(room, pid, m)
return {gen = gen, reconnect = joined, tail = tail(room)}
""",
    # ARGV: room, pid, gen, numbered ('1': a resume connection)
    #   → {ok, first, back, tail, frames, n, expired} | {wait} | {stale} | {gone}
    "complete_join": r"""
local room, pid, gen, numbered = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5] == '1'
local m = getm(room, pid)
if not m then return {gone = true} end
if m.g ~= gen then return {stale = true} end
if m.ho then return {wait = true} end
local first = m.j ~= 1
if first then
  m.j = 1
  redis.call('HINCRBY', rk(room, 'c'), 'joined', 1)
  redis.call('SADD', P .. 'rooms', room)
end
local back = m.rt == 1
m.rt = 0
if m.st ~= 'L' then redis.call('HINCRBY', rk(room, 'c'), 'live', 1) end
m.st = 'L'
redis.call('SREM', rk(room, 'w'), pid)
putm(room, pid, m)
local q = rk(room, 'q:' .. pid)
local frames = redis.call('LRANGE', q, 0, -1)
redis.call('DEL', q)
-- The queue's numbering goes to the joining process, which holds the sequence from now on; a
-- plain connection's join ends the numbering (its queue is plain frames).
local seq, expired = m.n, false
if numbered then
  m.n = {}
  if first and redis.call('ZREM', rk(room, 'x'), pid) == 1 then expired = true end
else
  m.n = nil
end
putm(room, pid, m)
return {ok = true, first = first, back = back, tail = tail(room), frames = frames, n = seq,
  expired = expired}
""",
    # ARGV: room, pid, gen, after, meta, frames... → {} : the outbox filled during a flush; the
    # rest, and what the stream carried for it since ``after``, wait in the queue (``meta``: a
    # numbered member's sequence, as in go_offline; its log keeps the rest, so ``frames`` is empty)
    "hold": r"""
local room, pid, gen, after, meta = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local m = getm(room, pid)
if not m or m.g ~= gen or m.st ~= 'L' then return {stale = true} end
m.st = 'W'
redis.call('HINCRBY', rk(room, 'c'), 'live', -1)
redis.call('SADD', rk(room, 'w'), pid)
local head = {}
for i = 7, #ARGV do table.insert(head, ARGV[i]) end
for _, f in ipairs(missed(room, pid, after, nil)) do table.insert(head, f) end
take_sequence(m, meta, prepend(room, pid, head))
putm(room, pid, m)
return {ok = true}
""",
    # ARGV: room, pid, gen → {joined} | {stale}: on_join raised
    "fail_join": r"""
local room, pid, gen = ARGV[2], ARGV[3], tonumber(ARGV[4])
local m = getm(room, pid)
if not m or m.g ~= gen then return {stale = true} end
local joined = m.j == 1
remove(room, pid, m)
return {joined = joined}
""",
    # ARGV: room, pid, gen, proc, after, code, reason, handoff, meta, unsent...
    #   → {offline|left|gone|stale|handed|handed_off}
    # ``meta``: a resume connection's sequence ({q, f, c}; '' for a plain one), ``unsent`` then
    # being its unacknowledged frames, ``seq`` q on
    "go_offline": r"""
local room, pid, gen, proc, after = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local code, reason, handoff, meta = tonumber(ARGV[7]), ARGV[8], ARGV[9] == '1', ARGV[10]
local unsent = {}
for i = 11, #ARGV do table.insert(unsent, ARGV[i]) end
local m = getm(room, pid)
if not m then return {stale = true} end
local key = proc .. '|' .. tostring(gen)
if m.g ~= gen then
  -- Replaced by a newer connection: what this one never wrote goes to the new one's queue.
  if m.ho and m.ho[key] then
    local head = unsent
    for _, f in ipairs(handed_missed(room, pid, after, m.ho[key])) do table.insert(head, f) end
    take_sequence(m, meta, prepend(room, pid, head))
    handover_done(room, pid, m, key)
    putm(room, pid, m)
    return {handed = true}
  end
  return {stale = true}
end
if m.st == 'L' then
  local head = unsent
  for _, f in ipairs(missed(room, pid, after, nil)) do table.insert(head, f) end
  unsent = head
end
if m.j == 1 and cnum(room, 'grace') > 0 then
  take_sequence(m, meta, prepend(room, pid, unsent))
end
local leave = to_offline(room, pid, m, code, reason)
if handoff then
  -- This process is leaving: another one runs the hooks (its own hub calls still work).
  if leave then
    redis.call('RPUSH', P .. 'events', cjson.encode({'left', room, pid, code, reason}))
  elseif m.st == 'O' then
    redis.call('RPUSH', P .. 'events', cjson.encode({'offline', room, pid}))
  end
  return {handed_off = true}
end
if leave then return {left = leave} end
if m.st == 'gone' then return {gone = true} end
return {offline = m.d}
""",
    # ARGV: room, pid, proc, oldgen, after, meta, unsent... : the replaced connection's handover
    # (``meta`` as in go_offline)
    "handover": r"""
local room, pid, proc, oldgen, after = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local meta = ARGV[7]
local m = getm(room, pid)
local key = proc .. '|' .. oldgen
if not m or not m.ho or not m.ho[key] then return {stale = true} end
local head = {}
for i = 8, #ARGV do table.insert(head, ARGV[i]) end
for _, f in ipairs(handed_missed(room, pid, after, m.ho[key])) do table.insert(head, f) end
take_sequence(m, meta, prepend(room, pid, head))
handover_done(room, pid, m, key)
putm(room, pid, m)
return {ok = true}
""",
    # ARGV: room, pid → {}: stop waiting for handovers (their processes are presumed gone)
    "drop_handovers": r"""
local room, pid = ARGV[2], ARGV[3]
local m = getm(room, pid)
if not m or not m.ho then return {ok = true} end
for key, _ in pairs(m.ho) do
  local owner = string.match(key, '^(.*)|')
  redis.call('SREM', P .. 'proc:' .. owner .. ':ho', memkey(room, pid))
end
m.ho = nil
sequence_lost(m)
putm(room, pid, m)
return {ok = true}
""",
    # ARGV: room, code, text, run_here ('1': the caller runs on_leave) → {leaves} | {err}
    "close_room": r"""
local room, code, text, here = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if cnum(room, 'joined') <= 0 then return {err = 'RoomNotFound'} end
local leaves = {}
local all = redis.call('HGETALL', rk(room, 'm'))
for i = 1, #all, 2 do
  local pid, m = all[i], cjson.decode(all[i + 1])
  if m.j == 1 then table.insert(leaves, pid) end
  redis.call('DEL', rk(room, 'q:' .. pid))
  redis.call('SREM', P .. 'proc:' .. m.p .. ':m', memkey(room, pid))
  if m.st == 'O' then redis.call('ZREM', P .. 'deadlines', dead_key(room, pid, m.g)) end
  if m.ho then
    for key, _ in pairs(m.ho) do
      local owner = string.match(key, '^(.*)|')
      redis.call('SREM', P .. 'proc:' .. owner .. ':ho', memkey(room, pid))
    end
  end
end
redis.call('DEL', rk(room, 'm'), rk(room, 'c'), rk(room, 'w'))
redis.call('SREM', P .. 'rooms', room)
xadd(room, 'k', 'c', 'code', code, 'why', text)
if here ~= '1' then
  for _, pid in ipairs(leaves) do
    redis.call('RPUSH', P .. 'events', cjson.encode({'closed', room, pid}))
  end
  return {leaves = {}}
end
return {leaves = leaves}
""",
    # ARGV: room → {members: {pid: presence}} | {err}
    "members": r"""
local room = ARGV[2]
if cnum(room, 'joined') <= 0 then return {err = 'RoomNotFound'} end
local out = {}
local all = redis.call('HGETALL', rk(room, 'm'))
for i = 1, #all, 2 do
  local m = cjson.decode(all[i + 1])
  if m.j == 1 then
    if m.st == 'O' then out[all[i]] = 'OFFLINE' else out[all[i]] = 'ONLINE' end
  end
end
return {members = out}
""",
    # ARGV: (none) → {rooms}
    "rooms": r"""
return {rooms = redis.call('SMEMBERS', P .. 'rooms')}
""",
    # ARGV: proc → {revived}: this process is alive; revived when it had been declared dead
    "heartbeat": r"""
local added = redis.call('ZADD', P .. 'procs', now_ms(), ARGV[2])
return {revived = added == 1}
""",
    # ARGV: limit → {leaves}: memberships whose grace is over, claimed by this caller only
    "expire": r"""
local due = redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', now_ms(), 'LIMIT', 0,
  tonumber(ARGV[2]))
local leaves = {}
for _, key in ipairs(due) do
  redis.call('ZREM', P .. 'deadlines', key)
  local k = cjson.decode(key)
  local room, pid, gen = k[1], k[2], k[3]
  local m = getm(room, pid)
  if m and m.g == gen and m.st == 'O' then
    m.st = 'gone'
    remove(room, pid, { p = m.p, st = 'X', g = m.g, j = m.j })
    table.insert(leaves, {room, pid, m.cc or 1006, m.cr or ''})
    -- Remembered a while (the last 1,024 of the room), so a late resume is told "expired".
    local x = rk(room, 'x')
    redis.call('ZADD', x, now_ms(), pid)
    redis.call('ZREMRANGEBYRANK', x, 0, -1025)
    redis.call('PEXPIRE', x, 3600000)
  end
end
local n = redis.call('ZCARD', P .. 'deadlines')
local nxt = nil
if n > 0 then nxt = tonumber(redis.call('ZRANGE', P .. 'deadlines', 0, 0, 'WITHSCORES')[2]) end
return {leaves = leaves, next = nxt, now = now_ms()}
""",
    # ARGV: dead_after_ms, self → {offline, left}: processes silent too long; their members
    # go OFFLINE (or end, without grace), claimed by this caller only
    "reap_dead": r"""
local now = now_ms()
local dead = redis.call('ZRANGEBYSCORE', P .. 'procs', '-inf', now - tonumber(ARGV[2]))
local offline, left = {}, {}
for _, proc in ipairs(dead) do
  if proc ~= ARGV[3] then
    redis.call('ZREM', P .. 'procs', proc)
    local idx = P .. 'proc:' .. proc .. ':m'
    for _, mk in ipairs(redis.call('SMEMBERS', idx)) do
      local room, pid = string.match(mk, '^(.*)%z(.*)$')
      local m = getm(room, pid)
      if m and m.p == proc and m.st ~= 'O' then
        local joined = m.j == 1
        sequence_lost(m)
        local leave = to_offline(room, pid, m, 1006, 'process gone')
        if leave then table.insert(left, leave)
        elseif joined then table.insert(offline, {room, pid}) end
      end
    end
    redis.call('DEL', idx)
    local hidx = P .. 'proc:' .. proc .. ':ho'
    for _, mk in ipairs(redis.call('SMEMBERS', hidx)) do
      local room, pid = string.match(mk, '^(.*)%z(.*)$')
      local m = getm(room, pid)
      if m and m.ho then
        for key, _ in pairs(m.ho) do
          if string.match(key, '^(.*)|') == proc then
            handover_done(room, pid, m, key)
            sequence_lost(m)
          end
        end
        putm(room, pid, m)
      end
    end
    redis.call('DEL', hidx)
  end
end
return {offline = offline, left = left}
""",
    # ARGV: proc → {}: this process leaves (its connections already went OFFLINE)
    "leave_proc": r"""
redis.call('ZREM', P .. 'procs', ARGV[2])
return {ok = true}
""",
    # ARGV: limit → {events}: hook calls handed to whichever hub takes them first: the leaves of
    # a room an emitter closed, and the news of a stopping process's members
    "take_events": r"""
local out = {}
for i = 1, tonumber(ARGV[2]) do
  local v = redis.call('LPOP', P .. 'events')
  if not v then break end
  table.insert(out, cjson.decode(v))
end
return {events = out}
""",
}

_WRAP = r"""
local cid = ARGV[1]
if cid ~= '' then
  local done = redis.call('GET', P .. 'done:' .. cid)
  if done then return done end
end
local function body()
%s
end
local res = cjson.encode(body())
if cid ~= '' then redis.call('SET', P .. 'done:' .. cid, res, 'PX', 30000) end
return res
"""

SCRIPTS: dict[str, str] = {name: _PRELUDE + _WRAP % body for name, body in _BODIES.items()}
"""Each script's full Lua text, by name."""
