"""SOC integration: event sinks and exporters."""

from donjon.soc.jsonl import JsonLinesSink, read_events

__all__ = ["JsonLinesSink", "read_events"]
