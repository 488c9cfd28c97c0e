"""Python source shipped with a model (custom code, handlers): what it imports and calls.

The source is parsed with :mod:`ast`, never run. Shipping code is reported at
medium severity (the loader runs it); code that reaches deny-listed modules or
builtins (processes, network, eval) at high.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from donjon.scan import rules
from donjon.scan.context import Context, Source
from donjon.scan.npy import AST_ONLY
from donjon.scan.policy import Verdict

_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "open", "getattr", "breakpoint"})


def dangerous_names(tree: ast.AST, judge: Callable[[str], Verdict]) -> list[str]:
    """Deny-listed modules imported and dangerous builtins called in ``tree``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _BUILTINS
        ):
            found.add(f"builtins.{node.func.id}")
        for name in names:
            if judge(name) is Verdict.DENY:
                found.add(name)
    return sorted(found)


def check_python(ctx: Context, source: Source, text: str) -> None:
    try:
        tree = ast.parse(text, AST_ONLY)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        ctx.add(rules.CFG_CODE, f"ships Python source {source.name} (not parseable)", source)
        return
    bad = dangerous_names(tree, ctx.policy.verdict)
    if bad:
        ctx.add(
            rules.CFG_CODE_DANGEROUS,
            f"shipped Python source {source.name} reaches {', '.join(bad[:5])}",
            source,
            names=bad[:50],
        )
    else:
        ctx.add(rules.CFG_CODE, f"ships Python source {source.name}", source)
