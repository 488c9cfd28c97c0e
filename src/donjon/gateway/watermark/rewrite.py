"""Changing one row of a model's answer to the watermark's label, in every shape.

The keyed label ``w`` of a row whose own answer is class ``y`` of ``C`` is
``(y + 1 + pick mod (C - 1)) mod C``: never the model's answer, chosen by the key.
Scores move with it: the scores of ``y`` and ``w`` are swapped (a probability
row stays a distribution with the same values, its top score now on ``w``); a
binary score is mirrored (``p -> 1 - p``, a logit ``s -> -s``); labels are
replaced. Every part of the answer (:mod:`donjon.gateway.outputs`) is changed,
and the parts' arrays too, so output hardening (applied after) sees the
watermarked scores. Nothing is changed unless every part can be: a row whose
classes cannot be told (labels only, without ``classes``) is not marked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from donjon.gateway.outputs import Layout, ModelOutput, OutputKind, Part

Label = int | str
Edit = Callable[[], None]


@dataclass(frozen=True)
class RowAnswer:
    truth: Label  # the model's answer
    keyed: Label  # the watermark's
    classes: int
    indices: tuple[int, int]  # the two as class indices


def keyed_class(truth: int, classes: int, pick: int) -> int:
    return (truth + 1 + pick % (classes - 1)) % classes


def rewrite_row(
    output: ModelOutput,
    index: int,
    pick: int,
    *,
    apply: bool,
    classes: int | None = None,
    names: Sequence[str] | None = None,
    keyed_index: int | None = None,
) -> RowAnswer | None:
    """The row's true and keyed answers; with ``apply`` the answer is changed to the keyed one.

    ``keyed_index``: this keyed class rather than the one ``pick`` chooses (a mark carried
    to a near-copy, :mod:`.families`). None when the row cannot be marked consistently
    (then nothing is changed).
    """
    scored = [p for p in output.parts if p.kind is not OutputKind.LABELS]
    labelled = [p for p in output.parts if p.kind is OutputKind.LABELS]
    row_names: list[str] | None = None
    if scored:
        primary = scored[0]
        values = _scores(primary, index)
        if values is None:
            return None
        if len(values) == 1:
            count, truth = 2, int(values[0] >= _cut(primary))
        else:
            count, truth = len(values), int(np.argmax(values))
            if primary.names:
                row_names = primary.names[index]
    else:
        count = classes or (len(names) if names else 0)
        if count < 2 or not labelled:
            return None
        raw = _label_cell(output.doc, labelled[0], index)
        found = _class_of(raw, count, names)
        if found is None:
            return None
        truth = found
    keyed = keyed_class(truth, count, pick) if keyed_index is None else keyed_index
    if not 0 <= keyed < count:
        return None
    apply = apply and keyed != truth  # a carried class may be the model's own answer
    edits: list[Edit] = []
    for part in scored:
        edit = _score_edit(output.doc, part, index, truth, keyed, count)
        if edit is None:
            return None
        edits.append(edit)
    for part in labelled:
        label_edit = _label_edit(output.doc, part, index, keyed, count, names or row_names)
        if label_edit is None:
            return None
        edits.append(label_edit)
    if apply:
        for edit in edits:
            edit()
    named = row_names or (list(names) if names and len(names) == count else None)
    if named is not None:
        return RowAnswer(named[truth], named[keyed], count, (truth, keyed))
    return RowAnswer(truth, keyed, count, (truth, keyed))


def _cut(part: Part) -> float:
    return 0.5 if part.kind is OutputKind.PROBABILITIES else 0.0


def _scores(part: Part, index: int) -> list[float] | None:
    if part.ragged is not None:
        return part.ragged[index] if index < len(part.ragged) else None
    if part.scores is None or index >= len(part.scores):
        return None
    row: list[float] = part.scores[index].tolist()
    return row


def _as_precise_as(value: float, like: float) -> float:
    """``value`` with no more significant digits than ``like`` shows (1 - 0.9 is 0.1, not
    0.09999999999999998: a float artefact would tell a marked answer)."""
    mantissa = repr(like).lower().split("e")[0].lstrip("-").replace(".", "").lstrip("0")
    return float(f"{value:.{max(1, len(mantissa))}g}")


def _class_of(raw: Any, count: int, names: Sequence[str] | None) -> int | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float) and float(raw).is_integer() and 0 <= raw < count:
        return int(raw)
    if isinstance(raw, str) and names is not None and raw in names:
        return list(names).index(raw)
    return None


def _value(doc: Any, part: Part) -> Any:
    for step in part.path:
        doc = doc[step]
    return doc


def _cells(doc: Any, part: Part) -> Any:
    """The list holding the part's rows (a tensor's data)."""
    value = _value(doc, part)
    return value["data"] if part.layout is Layout.TENSOR else value


def _label_cell(doc: Any, part: Part, index: int) -> Any:
    cells = _cells(doc, part)
    cell = cells[index]
    return cell[0] if isinstance(cell, list) else cell


def _score_edit(
    doc: Any, part: Part, index: int, truth: int, keyed: int, count: int
) -> Edit | None:
    if part.layout in (Layout.RECORDS, Layout.MAPPING):
        return _record_edit(doc, part, index, truth, keyed, count)
    if part.scores is None or index >= len(part.scores):
        return None
    width = part.scores.shape[1]
    cells = _cells(doc, part)
    scores = part.scores
    if width == 1:
        if count != 2:
            return None
        probability = part.kind is OutputKind.PROBABILITIES

        def mirror() -> None:
            old = float(scores[index, 0])
            new = _as_precise_as(1.0 - old, old) if probability else -old
            scores[index, 0] = new
            if isinstance(cells[index], list):
                cells[index][0] = new
            else:
                cells[index] = new

        return mirror
    if width != count:
        return None
    nested = isinstance(cells[0], list)

    def swap() -> None:
        row = scores[index]
        row[truth], row[keyed] = row[keyed], row[truth]
        if nested:
            cell = cells[index]
            cell[truth], cell[keyed] = cell[keyed], cell[truth]
        else:
            a, b = index * width + truth, index * width + keyed
            cells[a], cells[b] = cells[b], cells[a]

    return swap


def _record_edit(
    doc: Any, part: Part, index: int, truth: int, keyed: int, count: int
) -> Edit | None:
    if index >= len(part.names) or len(part.names[index]) != count:
        return None
    value = _value(doc, part)
    record = value if part.layout is Layout.MAPPING else value[index]
    first, second = part.names[index][truth], part.names[index][keyed]
    row: Any = part.ragged[index] if part.ragged is not None else part.scores
    if row is None:
        return None

    def swap() -> None:
        record[first], record[second] = record[second], record[first]
        if part.ragged is not None:
            row[truth], row[keyed] = row[keyed], row[truth]
        else:
            line = row[index]
            line[truth], line[keyed] = line[keyed], line[truth]

    return swap


def _label_edit(
    doc: Any, part: Part, index: int, keyed: int, count: int, names: Sequence[str] | None
) -> Edit | None:
    cells = _cells(doc, part)
    if index >= len(cells):
        return None
    old = cells[index]
    inner = old[0] if isinstance(old, list) else old
    new: Any
    if isinstance(inner, str):
        if names is None or len(names) != count:
            return None
        new = names[keyed]
    elif isinstance(inner, int | float) and not isinstance(inner, bool):
        new = float(keyed) if isinstance(inner, float) else keyed
    else:
        return None

    def put() -> None:
        if isinstance(old, list):
            old[0] = new
        else:
            cells[index] = new

    return put
