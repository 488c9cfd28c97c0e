"""Watermark records in Redis, shared by gateway replicas on several hosts.

One hash per model, ``<prefix><model>``: record address -> the record's JSON.
A record is added with ``HSETNX`` inside a Lua script that first checks the
hash's size, so it is written once (the first replica to answer an input
records it; a re-sent input is not recorded again) and the hash holds at most
``max_records`` records. Records never expire: they are evidence, and Redis
must persist them (AOF or RDB, see ``docs/deployment.md``). The gateway answers
a watermarked input only after its record is stored: when Redis fails, the
request is refused (:class:`~donjon.gateway.redis_link.StateUnavailable`), and
the ledger event of a record is published only once the record is kept.

``donjon gateway verify-suspect`` reads the records with a plain (blocking)
client: it runs outside any event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from donjon.errors import InputError
from donjon.gateway.redis_link import RedisLink, StateUnavailable
from donjon.gateway.watermark.records import MarkRecord

log = logging.getLogger("donjon.gateway")
# KEYS[1]: the model's hash; ARGV: address, record, max records. 1 added, 0 there, -1 full
_ADD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisMarks:
    """Records of every replica, in the Redis of ``link``."""

    def __init__(
        self, link: RedisLink, *, prefix: str = "donjon:gw:marks:", max_records: int = 200_000
    ) -> None:
        self.link = link
        self.prefix = prefix
        self.max_records = max_records
        self._full_said: set[str] = set()

    async def add(self, record: MarkRecord) -> bool:
        data = json.dumps(record.to_dict(), sort_keys=True)
        added = int(
            await self.link.run(
                _ADD, [self.prefix + record.model], [record.address, data, self.max_records]
            )
        )
        if added < 0 and record.model not in self._full_said:
            self._full_said.add(record.model)
            log.warning(
                "model %s: the watermark record is full (%d); new marks are answered "
                "but not recorded",
                record.model,
                self.max_records,
            )
        return added == 1

    def records(self, model: str, principals: Iterable[str] | None = None) -> list[MarkRecord]:
        import redis

        wanted = set(principals) if principals is not None else None
        client = redis.Redis.from_url(self.link.url, socket_timeout=self.link.timeout * 10)
        try:
            raw = dict(client.hscan_iter(self.prefix + model))
        except redis.RedisError as e:
            raise StateUnavailable(f"cannot read the watermark records in Redis: {e}") from e
        finally:
            client.close()
        found = []
        for address, data in sorted(raw.items()):
            name = address.decode(errors="replace")
            try:
                record = MarkRecord.from_dict(json.loads(data))
            except ValueError as e:
                raise InputError(f"cannot read watermark record {name}: {e}") from e
            if record.address != name:
                raise InputError(f"watermark record {name} does not match its address")
            if record.model == model and (wanted is None or record.principal in wanted):
                found.append(record)
        return found
