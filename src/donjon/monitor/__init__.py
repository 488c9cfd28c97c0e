"""Watching the ML tasks Donjon guards: metrics, baselines and alerts."""
