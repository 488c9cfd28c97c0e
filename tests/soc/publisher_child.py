"""A publisher process for the SIGKILL test: publish, then record the acknowledged uid.

Usage: python -m tests.soc.publisher_child ACKS_FILE [LIMIT]

Settings come from the environment (DONJON_HOME, DONJON_SOC__OUTBOX_URL). The
outbox is delivered to the event file in the background while publishing.
Without LIMIT it publishes until killed; with LIMIT it stops, drains, exits 0.
"""

from __future__ import annotations

import sys
from pathlib import Path

from donjon.app import build
from donjon.config import load_settings
from donjon.core import EventKind, SecurityEvent, Severity


def main() -> int:
    acks = Path(sys.argv[1])
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else None
    app = build(load_settings())
    assert app.dispatcher is not None
    app.dispatcher.start()
    n = 0
    with acks.open("a", encoding="utf-8") as record:
        while limit is None or n < limit:
            event = SecurityEvent(
                EventKind.ACCESS, "gateway", "model.infer", f"request {n}", Severity.INFO,
                attributes={"latency_ms": 3 + n % 7},
            )  # fmt: skip
            app.bus.publish(event)  # returns once the event is committed
            record.write(event.uid + "\n")
            record.flush()
            n += 1
    app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
