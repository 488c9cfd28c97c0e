"""TorchScript ``code/`` members: the serialised program a TorchScript archive runs.

``torch.jit.save`` writes each scripted or traced module's methods as
restricted Python source under ``<archive>/code/``; ``torch.jit.load``
compiles it and the model runs it. The source is tokenized (never parsed or
compiled) and every dotted name that is called or has attributes is checked:

- operators that touch files: ``torch.save`` (``aten::save``) writes any path,
  ``torch.from_file`` (``aten::from_file``) reads any path;
- Python escapes TorchScript never serialises: imports, and the modules and
  builtins that reach the process (``os``, ``subprocess``, ``eval``,
  ``__import__`` ...) as call targets or attribute roots (``getattr`` is
  TorchScript's own: ``getattr(self, "0")`` in a ``Sequential``);
- ``ops.<namespace>.<op>`` outside PyTorch's own namespaces and its domain
  libraries: a custom-op library that runs native code (``scan.allow`` takes
  ``torch.ops.<namespace>``).
"""

from __future__ import annotations

import io
import tokenize

from donjon.core.rules import Rule
from donjon.scan import rules
from donjon.scan.context import Context, Source

_MAX_CODE_BYTES = 16 << 20
# aten operators that read or write a path the archive names
_FILE_OPS = frozenset({"save", "from_file"})
# namespaces PyTorch (2.x) and its domain libraries register for computation
_NAMESPACES = frozenset({
    "aten", "prim", "prims", "quantized", "_quantized", "quantization", "profiler", "mkldnn",
    "mkldnn_prepacked", "onednn", "mkl", "sparse", "rngprims", "torchvision", "torchaudio",
    "torchtext",
})  # fmt: skip
_ESCAPES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "builtins", "__builtins__", "__import__",
    "importlib", "eval", "exec", "compile", "open", "globals", "locals", "vars",
    "socket", "shutil", "pickle", "marshal", "ctypes", "runpy", "pty",
})  # fmt: skip


def scan_torchscript_code(ctx: Context, source: Source) -> None:
    """Check one ``code/**.py`` member of a TorchScript archive."""
    with source.open() as fh:
        data = fh.read(_MAX_CODE_BYTES + 1)
    if len(data) > _MAX_CODE_BYTES:
        ctx.add(
            rules.TSC_MALFORMED, f"code member over {_MAX_CODE_BYTES} bytes not analysed", source
        )
        return
    try:
        names = _names(data)
    except (tokenize.TokenError, SyntaxError, ValueError) as e:
        # UnicodeDecodeError is a ValueError; IndentationError a SyntaxError
        ctx.add(rules.TSC_MALFORMED, f"code is not valid source: {type(e).__name__}", source)
        return
    reported: set[str] = set()
    for dotted, line in names:
        problem = _problem(ctx, dotted)
        if problem is not None and dotted not in reported:
            reported.add(dotted)
            rule, message = problem
            ctx.add(rule, f"{message} (line {line})", source, name=dotted, line=line)


def _names(data: bytes) -> list[tuple[str, int]]:
    """Every ``import``/``from`` statement and every dotted name that is called or has an
    attribute (``a.b.c``, ``f(``), with its line; strings and comments are not names.

    Tokens, not :func:`ast.parse`: parsing compiles, and a scan never compiles."""
    data.decode("utf-8")  # TorchScript code is UTF-8; anything else is malformed
    tokens = [
        t
        for t in tokenize.tokenize(io.BytesIO(data).readline)
        if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENCODING)
    ]
    found: list[tuple[str, int]] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        after_dot = i > 0 and tokens[i - 1].string == "."
        if token.type != tokenize.NAME or after_dot:
            i += 1
            continue
        if token.string in ("import", "from"):
            found.append(
                (f"import {tokens[i + 1].string if i + 1 < len(tokens) else ''}", token.start[0])
            )
            i += 1
            continue
        parts = [token.string]
        j = i + 1
        while (
            j + 1 < len(tokens) and tokens[j].string == "." and tokens[j + 1].type == tokenize.NAME
        ):
            parts.append(tokens[j + 1].string)
            j += 2
        called = j < len(tokens) and tokens[j].string == "("
        if len(parts) > 1 or called:
            found.append((".".join(parts), token.start[0]))
        i = j
    return found


def _problem(ctx: Context, dotted: str) -> tuple[Rule, str] | None:
    if dotted.startswith("import "):
        return rules.TSC_FILE_OPS, f"TorchScript code imports {dotted[7:]!r}"
    parts = dotted.split(".")
    if parts[0] in _ESCAPES:
        return rules.TSC_FILE_OPS, f"TorchScript code reaches Python through {dotted!r}"
    if parts[0] == "torch":
        parts = parts[1:]
    if len(parts) == 1 and dotted.startswith("torch.") and parts[0] in _FILE_OPS:
        return rules.TSC_FILE_OPS, f"TorchScript code calls {dotted} (a file operation)"
    if len(parts) >= 3 and parts[0] == "ops":
        namespace, op = parts[1], parts[2]
        if namespace == "aten" and op in _FILE_OPS:
            return rules.TSC_FILE_OPS, f"TorchScript code calls {dotted} (a file operation)"
        allowed = ctx.policy.allow
        trusted = {f"torch.ops.{namespace}", f"torch.ops.{namespace}.{op}"} & allowed
        if namespace not in _NAMESPACES and not trusted:
            return rules.TSC_OPS, f"TorchScript code calls custom operator {dotted}"
    return None
