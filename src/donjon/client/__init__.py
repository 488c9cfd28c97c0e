"""A Python client of the vault's HTTP API (httpx), streaming both ways."""

from donjon.client.vault import VaultClient

__all__ = ["VaultClient"]
