"""Donjon inside the tools ML teams already run (MLflow's model registry).

An integration composes capabilities (the scanner, provenance) around a peer
tool's own extension points; ``app`` wires it, the CLI serves it.
"""
