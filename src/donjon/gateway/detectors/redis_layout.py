"""What the detector state's Redis keys hold (:mod:`.redis_states`), and the Lua scripts
that read and write them, one round trip each.

``OPEN`` checks the principal's sticky refusals, takes the quota buckets of every
request it opens for, takes the lock (or, when another process holds it, the next
turn: ``...:next``, so that a process that always has another request ready cannot
keep the others out) and reads the state; ``CLOSE`` saves what changed, records the
refusals and unlocks; ``RELEASE`` unlocks without saving; ``REFUSALS`` reads the
refusals in force.
"""

from __future__ import annotations

import struct
from operator import attrgetter

import numpy as np
import numpy.typing as npt

from donjon.gateway.detectors.state import PrincipalState
from donjon.gateway.quotas import BUCKET_LUA
from donjon.gateway.redis_link import StateUnavailable

TAG = 16  # hex characters of a save's random tag, at the head of the state
_VERSION = 3  # the layout of the values below
# the counters of a PrincipalState, packed: version, these, then the spans' length (-1: none)
_FIELDS: tuple[str, ...] = ("walk", "size", "cursor", "queries", "ood", "tested", "synthetic")
_FIELDS += ("cusum", "scatter", "grid_seen", "grid_off")
_COUNTERS = struct.Struct("<B7qdd2qq")
_counters = attrgetter(*_FIELDS)
RESERVED_MS = 100  # a waiting process's hold on the next turn, renewed by each try
# refusals of KEYS[1] whose end (Redis time) has not passed; sets ``now``
_REFUSALS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function active(key)
  local out = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local value = all[i + 1]
    local bar = string.find(value, '|', 1, true)
    local left = bar and (tonumber(string.sub(value, 1, bar - 1)) or 0) - now or 0
    if left > 0 then
      out[#out + 1] = all[i]
      out[#out + 1] = tostring(left)
      out[#out + 1] = string.sub(value, bar + 1)
    end
  end
  return out
end
"""
# KEYS: refused, lock, state, labels, rows, next, then one quota bucket per charge
# ARGV: tag, lock ms, cached tag, charges, then burst, rate, cost per charge
# KEYS: refused, lock, state, labels, rows, next, then one quota bucket per charge
# ARGV: tag, lock ms, cached tag, charges, requests, then burst, rate, cost and request
#       per charge; a request one of whose buckets refuses is denied, the others go on
OPEN = (
    BUCKET_LUA
    + _REFUSALS_LUA
    + f"""
local refused = active(KEYS[1])
if #refused > 0 then
  return {{'refused', refused[1], refused[3]}}
end
local denied, out = {{}}, {{}}
for i = 1, tonumber(ARGV[4]) do
  local request = ARGV[5 + 4 * i]
  if not out[request] then
    local burst, rate = tonumber(ARGV[2 + 4 * i]), tonumber(ARGV[3 + 4 * i])
    local cost = tonumber(ARGV[4 + 4 * i])
    local allowed, tokens = take(KEYS[6 + i], burst, rate, cost, now)
    if not allowed then
      out[request] = true
      denied[#denied + 1] = request
      denied[#denied + 1] = tostring(i)
      denied[#denied + 1] = tostring((cost - tokens) / rate)
    end
  end
end
if #denied == 3 * tonumber(ARGV[5]) then
  return {{'quota', denied}}
end
local next = redis.call('GET', KEYS[6])
if (next and next ~= ARGV[1]) or not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if not next or next == ARGV[1] then  -- the first to wait has the next turn
    redis.call('SET', KEYS[6], ARGV[1], 'PX', {RESERVED_MS})
  end
  return {{'locked', denied}}
end
if next then
  redis.call('DEL', KEYS[6])
end
local labels = redis.call('GET', KEYS[4]) or ''
local tag = redis.call('GETRANGE', KEYS[3], 0, {TAG - 1})
if tag ~= '' and tag == ARGV[3] then
  return {{'same', labels, denied}}
end
local state, rows = redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[5]) or ''
return {{'open', labels, denied, state, rows}}
"""
)
# KEYS: lock, state, labels, refused, rows
# ARGV: tag, ttl, state, row bytes, pushed count, (slot, row)...,
#       refusal count, (rule, seconds, action)...
CLOSE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
local width = tonumber(ARGV[4])
redis.call('SET', KEYS[2], ARGV[1] .. ARGV[3], 'EX', ttl)
local pushed = tonumber(ARGV[5])
local unknown = string.rep('\\0', 4)
for i = 1, pushed do
  local slot = tonumber(ARGV[4 + 2 * i])
  redis.call('SETRANGE', KEYS[3], slot * 4, unknown)
  redis.call('SETRANGE', KEYS[5], slot * width, ARGV[5 + 2 * i])
end
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[5], ttl)
local base = 6 + 2 * pushed
local count = tonumber(ARGV[base])
if count > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local longest = redis.call('TTL', KEYS[4])
  for j = 0, count - 1 do
    local seconds = tonumber(ARGV[base + 2 + 3 * j])
    local value = string.format('%.6f', now + seconds) .. '|' .. ARGV[base + 3 + 3 * j]
    redis.call('HSET', KEYS[4], ARGV[base + 1 + 3 * j], value)
    longest = math.max(longest, math.ceil(seconds) + 1)
  end
  redis.call('EXPIRE', KEYS[4], longest)
end
redis.call('DEL', KEYS[1])
return 1
"""
# KEYS: lock, next; release the lock, or the next turn, only if this request holds it
RELEASE = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
REFUSALS = _REFUSALS_LUA + "return active(KEYS[1])"


def encode(state: PrincipalState) -> bytes:
    """Everything but the window's rows and labels: counters, bisection flags, spans."""
    spans = state.spans
    head = _COUNTERS.pack(_VERSION, *_counters(state), -1 if spans is None else len(spans))
    body = state.bisecting.tobytes()
    if spans is not None:
        body += spans.astype("<f4", copy=False).tobytes()
    return head + body


def decode(blob: bytes, rows: bytes, window: int, features: int) -> PrincipalState:
    """A state from its packed head (after the tag) and its window's rows."""
    state = PrincipalState(window, features)
    if len(blob) < TAG + _COUNTERS.size or blob[TAG] != _VERSION:
        return state  # none yet, or another release's layout: start afresh
    try:
        values = _COUNTERS.unpack_from(blob, TAG)
        body = memoryview(blob)[TAG + _COUNTERS.size :]
        state.bisecting = np.frombuffer(body[:window], dtype=np.bool_).copy()
        if len(state.bisecting) != window:
            raise ValueError("truncated bisection flags")
        spans = values[-1]
        if spans >= 0:
            span = body[window : window + 4 * spans]
            state.spans = np.frombuffer(span, dtype="<f4").astype(np.float32)
    except (ValueError, struct.error) as e:
        raise StateUnavailable(f"malformed detector state in Redis: {e}") from e
    for name, value in zip(_FIELDS, values[1:-1], strict=True):
        setattr(state, name, value)
    cells = window * features * 4
    stored = rows[:cells]  # SETRANGE wrote up to the highest slot used
    flat = np.frombuffer(stored + bytes(cells - len(stored)), dtype="<f4")
    state.rows = flat.reshape(window, features).astype(np.float32)
    return state


def read_labels(raw: bytes, window: int) -> npt.NDArray[np.int32]:
    """Labels + 1 as big-endian int32 (0: unknown), up to the highest slot written."""
    cells = 4 * window
    stored = raw[:cells]
    flat = np.frombuffer(stored + bytes(cells - len(stored)), dtype=">i4")
    return (flat - 1).astype(np.int32)
