"""Jinja templates in model metadata, judged by what their expressions can reach.

Server-side template injection (CVE-2024-34359 and its kin) needs a path from a
template value to Python objects: an attribute that leads to internals
(``__class__``, ``mro``, ``__globals__``), reached directly, through a
subscript (Jinja's ``x['a']`` falls back to ``getattr``), through the
``attr()`` filter or an ``attribute=`` argument, with the name written out or
built from string pieces (``'__cla' ~ 'ss__'``, ``'_' * 2``, a ``set``
variable); or a template global that exposes Python (``self``, ``lipsum``,
``cycler``, ``joiner``, Flask's ``config`` / ``request``). Text outside the
``{{ }}`` / ``{% %}`` blocks and string literals that are only printed are
not code, so a template that merely mentions ``__class__`` passes.
"""

from __future__ import annotations

import re

from donjon.scan import rules
from donjon.scan.context import Context, Source

_BLOCK = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})", re.S)
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_INTERNAL = re.compile(
    r"^(__\w+__|mro|func_globals|func_code|f_globals|f_locals|f_back|f_builtins|gi_frame|"
    r"gi_code|cr_frame|ag_frame|tb_frame|tb_next|im_func|co_code|_TemplateReference__context)$"
)
_DOT_ATTR = re.compile(r"\.\s*([A-Za-z_]\w*)")
_SUBSCRIPT = re.compile(r"\[([^\[\]]*)\]")
_ATTR_ARG = re.compile(r"\battr\s*\(|\battribute\s*=")
_GLOBALS = re.compile(
    r"(?<![\w.])(lipsum|cycler|joiner|self|config|request|url_for|get_flashed_messages|"
    r"session)\s*[.\[(|]"
)
_SET = re.compile(r"\{%-?\s*set\s+([A-Za-z_]\w*)\s*=\s*(.*?)-?%\}", re.S)
_FOR = re.compile(r"\{%-?\s*for\s+([A-Za-z_]\w*)\s+in\s+(\[.*?\]|\(.*?\))", re.S)
_REPEAT = re.compile(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*\*\s*(\d{1,3})")
_BUILDERS = re.compile(r"~|\+|\*|\|\s*(join|format|replace|reverse|lower|upper|string|trim)\b")


def looks_like_template(text: str) -> bool:
    return ("{{" in text and "}}" in text) or ("{%" in text and "%}" in text)


def _built_name(expr: str) -> str:
    """The string an expression of literals builds (``'_'*2 ~ 'class'`` -> ``_class``)."""
    expanded = _REPEAT.sub(lambda m: repr(m[1][1:-1] * min(int(m[2]), 64)), expr)
    return "".join(s[1:-1] for s in _STRING.findall(expanded))


def _reaches_internal(expr: str, built: dict[str, str]) -> bool:
    """True when ``expr`` (an attribute name argument or subscript) names an internal."""
    name = expr.strip()
    if re.fullmatch(r"[A-Za-z_]\w*", name) and name in built:
        return bool(_INTERNAL.match(built[name]) or "__" in built[name])
    text = _built_name(name)
    if not text:
        return False
    return bool(_INTERNAL.match(text) or ("__" in text and _BUILDERS.search(name)))


def template_problems(template: str) -> list[str]:
    """What in ``template``'s Jinja expressions (not its literal text) reaches Python."""
    template = template[: 4 << 20]
    problems: set[str] = set()
    built = {m[1]: _built_name(m[2]) for m in _SET.finditer(template) if _STRING.search(m[2])}
    for loop in _FOR.finditer(template):  # a loop over literal names: any of them
        names = [text[1:-1] for text in _STRING.findall(loop[2])]
        internal = [n for n in names if _INTERNAL.match(n) or "__" in n]
        if internal:
            built[loop[1]] = internal[0]
    for block in _BLOCK.findall(template):
        code = _STRING.sub("''", block)  # literals are data unless used as names below
        for found in _DOT_ATTR.finditer(code):
            if _INTERNAL.match(found[1]):
                problems.add(f"attribute access to {found[1]}")
        if _ATTR_ARG.search(code):
            problems.add("attr() filter or attribute= argument (getattr by name)")
        for found in _SUBSCRIPT.finditer(block):
            if _reaches_internal(found[1], built):
                problems.add("subscript used as attribute access to Python internals")
        for found in re.finditer(r"\(([^()]*)\)", block):  # map(attribute=...), attr(...)
            for arg in found[1].split(","):
                value = arg.split("=", 1)[-1]
                if _STRING.search(value) and _reaches_internal(value, built):
                    problems.add("argument names a Python internal")
        found_global = _GLOBALS.search(code)
        if found_global:
            problems.add(f"template global {found_global[1]!r}")
    return sorted(problems)


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
    """*.jinja files and JSON configs named like tokenizer configs: every template inside."""
    from donjon.scan.config import scan_config_file

    scan_config_file(ctx, source)
