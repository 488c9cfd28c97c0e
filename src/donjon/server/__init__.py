"""The vault's HTTP API (FastAPI); ``donjon server`` serves it with uvicorn."""

from donjon.server.app import ServerLimits, create_app

__all__ = ["ServerLimits", "create_app"]
