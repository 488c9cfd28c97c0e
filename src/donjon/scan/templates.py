"""Jinja chat templates (GGUF metadata, tokenizer_config.json) that reach Python internals."""

from __future__ import annotations

import re

from donjon.scan import rules
from donjon.scan.context import Context, Source

# Server-side template injection needs a path from template values to Python objects:
# dunder attributes, the attr() filter, or the globals Jinja exposes without a sandbox.
_DUNDER = re.compile(r"__[A-Za-z]\w*__")
_ATTR_FILTER = re.compile(r"\|\s*attr\b|\battr\s*\(")
_GLOBALS = re.compile(
    r"\b(lipsum|cycler|joiner|self|config|request|url_for|get_flashed_messages)\s*[.\[(|]"
)
_SUSPECT_WORDS = re.compile(r"\b(popen|subprocess|os\.system|import_module|__import__|eval|exec)\b")
_BLOCK = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.S)


def template_problems(template: str) -> list[str]:
    """What in ``template``'s Jinja expressions (not its literal text) reaches Python."""
    problems: list[str] = []
    for block in _BLOCK.findall(template[: 4 << 20]):
        code = re.sub(r"'[^']*'|\"[^\"]*\"", "''", block)  # ignore string literals...
        if _DUNDER.search(block):  # ...except for dunders, which attr() takes as strings
            problems.append(f"dunder attribute access: {_DUNDER.search(block)[0]}")  # type: ignore[index]
        if _ATTR_FILTER.search(code):
            problems.append("attr() filter")
        found = _GLOBALS.search(code)
        if found:
            problems.append(f"template global {found[1]!r}")
        word = _SUSPECT_WORDS.search(code)
        if word:
            problems.append(f"reference to {word[1]!r}")
    return sorted(set(problems))


def check_template(ctx: Context, source: Source, template: str, key: str) -> None:
    problems = template_problems(template)
    if problems:
        ctx.add(
            rules.GGF_TEMPLATE,
            f"{key} reaches Python internals: {', '.join(problems[:5])}",
            source,
            key=key,
            problems=problems[:20],
        )


def scan_template_file(ctx: Context, source: Source) -> None:
    """tokenizer_config.json / chat_template.json / *.jinja files."""
    import json

    ctx.formats.append("chat-template")
    with source.open() as fh:
        raw = fh.read(16 << 20)
    text = raw.decode("utf-8", "replace")
    if source.suffix in (".jinja", ".jinja2"):
        check_template(ctx, source, text, source.name)
        return
    try:
        data = json.loads(text)
    except ValueError:
        return
    templates = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(templates, str):
        check_template(ctx, source, templates, "chat_template")
    elif isinstance(templates, list):
        for item in templates:
            if isinstance(item, dict) and isinstance(item.get("template"), str):
                check_template(ctx, source, item["template"], f"chat_template.{item.get('name')}")
