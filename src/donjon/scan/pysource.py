"""Python source shipped with a model (custom code, handlers): what it imports and calls.

The source is parsed with :mod:`ast` into a syntax tree, never compiled to
code. Shipping code is reported at low severity (the loader runs it, so it
needs a review); code that runs processes, opens the network, loads native
code or evaluates strings is high. Modeling code that imports ``os`` for
paths, opens its vocabulary or uses ``getattr`` is normal and passes.
"""

from __future__ import annotations

import ast

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.npy import AST_ONLY

_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "breakpoint"})
# Modules whose mere import is out of place in model code.
_MODULES = frozenset(
    {"subprocess", "pty", "socket", "ctypes", "cffi", "marshal", "webbrowser", "telnetlib",
     "ftplib", "smtplib", "paramiko", "urllib.request", "http.client", "requests", "httpx",
     "aiohttp", "urllib3", "runpy", "code", "commands", "popen2", "pexpect"}
)  # fmt: skip
# Calls that run processes, reach the network, load code or native libraries.
_CALLS = frozenset(
    {"os.system", "os.popen", "os.fork", "os.forkpty", "os.kill", "os.startfile",
     "os.posix_spawn", "os.posix_spawnp", "importlib.import_module", "pickle.loads",
     "pickle.load", "shutil.rmtree", "torch.hub.load", "builtins.eval", "builtins.exec"}
)  # fmt: skip
_CALL_PREFIXES = ("os.exec", "os.spawn")


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _top(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts) + 1)}


def dangerous_names(tree: ast.AST) -> list[str]:
    """Out-of-place modules imported, and process / network / eval calls made, in ``tree``."""
    found: set[str] = set()
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[(alias.asname or alias.name).split(".")[0]] = (
                    alias.name if alias.asname else alias.name.split(".")[0]
                )
                found.update(_top(alias.name) & _MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.update(_top(node.module) & _MODULES)
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in _BUILTINS:
            found.add(f"builtins.{node.func.id}")
            continue
        name = _dotted(node.func, aliases)
        if name and (name in _CALLS or name.startswith(_CALL_PREFIXES) or _top(name) & _MODULES):
            found.add(name)
    return sorted(found)


def check_python(ctx: Context, source: Source, text: str) -> None:
    try:
        tree = ast.parse(text, AST_ONLY)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        ctx.add(rules.CFG_CODE, f"ships Python source {source.name} (not parseable)", source)
        return
    bad = dangerous_names(tree)
    if bad:
        ctx.add(
            rules.CFG_CODE_DANGEROUS,
            f"shipped Python source {source.name} reaches {', '.join(bad[:5])}",
            source,
            names=bad[:50],
        )
    else:
        ctx.add(rules.CFG_CODE, f"ships Python source {source.name}", source)
