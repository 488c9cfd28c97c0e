"""Blob transfer through the vault over loopback, against plain HTTP file servers.

    python benchmarks/vault_bench.py                 # 256 MB each way
    python benchmarks/vault_bench.py --size-mb 1024  # the 1 GB target

Each server runs in its own process on 127.0.0.1; the client is httpx in this
process. For each server and direction it prints MB/s and the server's peak
RSS during that transfer (``VmHWM`` after resetting it through
``/proc/PID/clear_refs``), so "memory flat" can be read off: the peak should
not grow with the size. The vault path is the real one: bearer token,
authorisation, events, streaming upload hashed and fsynced into the blob
folder and a SQLite catalogue, digest-checked download (``VaultClient``
hashes the file before pushing and checks the digest after pulling, inside
the timed region, except in the "digest known" rows, where the client passes
the digest; "re-push" uploads bytes the vault already stores, which it hashes
and checks but does not write again). The peers: a bare Starlette app on uvicorn (upload: body
streamed to a file; download: ``FileResponse``) and ``python -m http.server``
(download only).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TOKEN = "bench-token-" + "x" * 24
MB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- servers (run as child processes) -------------------------------------------


def serve_vault(root: Path, port: int) -> None:
    import uvicorn

    from donjon.core.bus import EventBus, MemorySink
    from donjon.core.decision import Decision, Effect
    from donjon.core.identity import Principal
    from donjon.errors import AuthenticationError
    from donjon.registry import Registry
    from donjon.server import ServerLimits, create_app
    from donjon.storage.blobs import FileBlobStore
    from donjon.storage.registry import SqlRegistryStore
    from donjon.storage.sql import open_database

    class OneToken:
        def authenticate(self, credential: str) -> Principal:
            if credential != TOKEN:
                raise AuthenticationError("bad token")
            return Principal("bench")

    class BenchGrants:
        """Grants the bench principal the bench dataset only; denies anything else."""

        def authorize(self, principal, action, resource, context=None):  # type: ignore[no-untyped-def]
            ok = principal.id == "bench" and resource.startswith("datasets/bench")
            effect = Effect.ALLOW if ok else Effect.DENY
            return Decision(effect, principal, action, resource)

    class Discard(MemorySink):
        def emit(self, event: object) -> None:  # keep memory flat: count, do not keep
            self.count = getattr(self, "count", 0) + 1

    db = open_database(f"sqlite+pysqlite:///{root / 'vault.db'}")
    bus = EventBus([Discard()])
    registry = Registry(SqlRegistryStore(db), FileBlobStore(root / "blobs"), BenchGrants(), bus)
    app = create_app(registry, OneToken(), bus, limits=ServerLimits(max_upload_bytes=64 << 30))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def serve_starlette(root: Path, port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    async def upload(request: Request) -> Response:
        with open(root / "upload.bin", "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        return JSONResponse({"ok": True})

    async def download(request: Request) -> Response:
        return FileResponse(root / "payload.bin")

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/upload", upload, methods=["POST"]),
            Route("/payload.bin", download),
            Route("/health", health),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def spawn(mode: str, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if mode == "http.server":
        cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
               "--directory", str(root)]  # fmt: skip
        health = "/payload.bin"
    else:
        cmd = [sys.executable, __file__, "--serve", mode, "--root", str(root), "--port", str(port)]
        health = "/health"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    if health == "/payload.bin":
        wait_up(url + "/", proc)
    else:
        wait_up(url + health, proc)
    return proc, url


# -- client ------------------------------------------------------------------------


def file_chunks(path: Path):  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        while chunk := f.read(MB):
            yield chunk


def plain_upload(url: str, path: Path) -> None:
    with httpx.Client(timeout=600) as http:
        r = http.post(url + "/upload", content=file_chunks(path),
                      headers={"Content-Length": str(path.stat().st_size)})  # fmt: skip
        r.raise_for_status()


def plain_download(url: str, dest: Path) -> None:
    with httpx.Client(timeout=600) as http, http.stream("GET", url + "/payload.bin") as r:
        r.raise_for_status()
        with open(dest, "wb") as out:
            for chunk in r.iter_bytes(MB):
                out.write(chunk)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(pid: int, fn, size: int) -> tuple[float, float, float, float]:  # type: ignore[no-untyped-def]
    """MB/s, the server's peak RSS, and the CPU seconds the server and the client spent.

    CPU time does not depend on what else the machine runs: compare changes by it
    when the wall clock is noisy (a shared machine).
    """
    reset_peak(pid)
    server0, client0 = cpu_seconds(pid), own_cpu_seconds()
    start = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - start
    server = cpu_seconds(pid) - server0
    client = own_cpu_seconds() - client0
    return size / MB / elapsed, peak_rss_mb(pid), server, client


def warm_page_cache(root: Path, size_mb: int) -> None:
    """Write and delete ``size_mb`` of scratch data before measuring.

    On a virtual machine the first write into memory the guest never touched
    costs a fault in the host per page: a freshly booted machine writes its
    first gigabytes into the page cache several times slower than later
    ones, whoever writes them. The servers measured first would pay for that
    and the later ones not; after this warm-up every transfer writes into
    memory the machine already backs. ``--cold`` skips it.
    """
    scratch = root / "scratch.bin"
    block = os.urandom(MB)
    with open(scratch, "wb") as out:
        for _ in range(size_mb):
            out.write(block)
    scratch.unlink()


def make_payload(path: Path, size_mb: int) -> str:
    block = os.urandom(MB)
    hasher = hashlib.sha256()
    with open(path, "wb") as out:
        for i in range(size_mb):
            chunk = i.to_bytes(8, "big") + block[8:]
            hasher.update(chunk)
            out.write(chunk)
    return hasher.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="skip the page-cache warm-up (a fresh VM then pays for first-touching memory)",
    )
    parser.add_argument("--serve", choices=["vault", "starlette"])
    parser.add_argument("--root", type=Path)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.serve == "vault":
        serve_vault(args.root, args.port)
        return 0
    if args.serve == "starlette":
        serve_starlette(args.root, args.port)
        return 0

    from donjon.client import VaultClient

    size = args.size_mb * MB
    rows: list[tuple[str, str, float, float, float, float]] = []
    floor_put = floor_get = float("nan")
    with tempfile.TemporaryDirectory(prefix="vault-bench-") as tmp:
        root = Path(tmp)
        payload = root / "payload.bin"
        known = "sha256:" + make_payload(payload, args.size_mb)
        other = root / "other.bin"  # fresh bytes for the digest-known upload
        other_known = "sha256:" + make_payload(other, args.size_mb)
        print(f"payloads: 2 x {args.size_mb} MB", file=sys.stderr)
        if not args.cold:
            warm_page_cache(root, 3 * args.size_mb)

        vault_dir = root / "vault"
        vault_dir.mkdir()
        proc, url = spawn("vault", vault_dir)
        try:
            with VaultClient(url, TOKEN, timeout=600) as client:
                up = timed(proc.pid, lambda: client.push("dataset", "bench/blob", payload), size)
                rows.append(("donjon vault", "upload", *up))
                fresh = timed(
                    proc.pid,
                    lambda: client.push("dataset", "bench/other", other, digest=other_known),
                    size,
                )
                rows.append(("vault, digest known", "upload", *fresh))
                again = timed(
                    proc.pid,
                    lambda: client.push("dataset", "bench/blob", payload, digest=known),
                    size,
                )
                rows.append(("vault, re-push (stored)", "upload", *again))
                dest = root / "pulled.bin"
                down = timed(proc.pid, lambda: client.pull("dataset", "bench/blob", dest), size)
                rows.append(("donjon vault", "download", *down))
                dest.unlink()
        finally:
            proc.terminate()
            proc.wait()

        proc, url = spawn("starlette", root)
        try:
            rows.append(("starlette+uvicorn", "upload",
                         *timed(proc.pid, lambda: plain_upload(url, payload), size)))  # fmt: skip
            dest = root / "plain.bin"
            rows.append(("starlette+uvicorn", "download",
                         *timed(proc.pid, lambda: plain_download(url, dest), size)))  # fmt: skip
            dest.unlink()
            (root / "upload.bin").unlink(missing_ok=True)
        finally:
            proc.terminate()
            proc.wait()

        # the floor under any HTTP server: hash + write (+ fsync) and read + hash, in process
        from donjon.storage.blobs import FileBlobStore

        store = FileBlobStore(root / "floor")
        start = time.perf_counter()
        with open(payload, "rb") as src:
            digest = store.put(src)
        floor_put = size / MB / (time.perf_counter() - start)
        start = time.perf_counter()
        with store.open(digest) as blob:
            while blob.read(MB):
                pass
        floor_get = size / MB / (time.perf_counter() - start)
        store.path(digest).unlink()

        proc, url = spawn("http.server", root)
        try:
            dest = root / "plain.bin"
            rows.append(("python -m http.server", "download",
                         *timed(proc.pid, lambda: plain_download(url, dest), size)))  # fmt: skip
            dest.unlink()
        finally:
            proc.terminate()
            proc.wait()

    peers = [r for r in rows if "vault" not in r[0]]
    best = {d: max(r[2] for r in peers if r[1] == d) for d in ("upload", "download")}
    print(f"\nblob transfer over loopback, {args.size_mb} MB each way")
    print(f"{'server':<24}{'direction':<10}{'MB/s':>9}{'peak RSS MB':>13}{'vault/peer':>12}"
          f"{'server CPU s':>14}{'client CPU s':>14}")  # fmt: skip
    vault = {r[1]: r[2] for r in rows if r[0] == "donjon vault"}
    for name, direction, rate, rss, server_cpu, client_cpu in rows:
        ratio = "" if "vault" in name else f"{vault[direction] / rate:>11.2f}x"
        print(f"{name:<24}{direction:<10}{rate:>9.0f}{rss:>13.0f}{ratio:>12}"
              f"{server_cpu:>14.2f}{client_cpu:>14.2f}")  # fmt: skip
    print(f"{'blob store, no HTTP':<24}{'put':<10}{floor_put:>9.0f}")
    print(f"{'blob store, no HTTP':<24}{'get':<10}{floor_get:>9.0f}")
    load = os.getloadavg()[0]
    print(f"load average during the run: {load:.1f} on {os.cpu_count()} CPUs"
          f"{'' if args.cold else '; page cache warmed first (--cold to skip)'}")  # fmt: skip
    client_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"client peak RSS: {client_rss:.0f} MB; target: >= 200 MB/s each way, memory flat")
    ok = all(vault[d] >= 200 for d in ("upload", "download"))
    print(f"vault vs best peer: upload {vault['upload'] / best['upload']:.2f}x, "
          f"download {vault['download'] / best['download']:.2f}x; target met: {ok}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
