"""The Audit page's Sigma board over ledger rows: a list of maps matches either map, a rule
the evaluator refuses is listed with its construct, and rules that do not load leave the
board with an error instead of a crash."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from sigma.collection import SigmaCollection

from donjon.server.ui.sigma import SigmaBoard
from tests.soc.samples import every_kind

RULES = """\
title: Denied or failed
status: test
logsource: {product: donjon}
detection:
  selection:
    - actor.authorizations.decision: denied
    - class_uid: 3002
      status_id: 2
  condition: selection
level: low
---
title: Keywords
status: test
logsource: {product: donjon}
detection:
  keywords: [fraud-clf]
  condition: keywords
level: low
"""


def _rows(first: int) -> Iterable[tuple[int, str, str, str]]:
    events = every_kind()
    for seq, event in enumerate(events, 1):
        if seq >= first:
            yield seq, "prev", "hash", json.dumps({"event": event.to_dict()})


def test_the_board_follows_the_specification_and_names_what_it_refuses(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    board = SigmaBoard(_rows, lambda: 1, lambda: SigmaCollection.load_ruleset([tmp_path]))
    board.refresh()
    view = board.view()
    states = {s.title: s for s in view["rules"]}
    assert view["error"] == ""
    assert view["evaluated"] == len(every_kind())
    # the denied decision and the refused log-on: either map of the list
    assert states["Denied or failed"].hits == 2
    assert states["Keywords"].hits == 0
    assert "keyword search" in states["Keywords"].error
    assert view["fired"] == 1


def test_rules_that_are_not_even_yaml_leave_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text("title: [unclosed\n")
    board = SigmaBoard(_rows, lambda: 1, lambda: SigmaCollection.load_ruleset([tmp_path]))
    board.refresh()
    view = board.view()
    assert view["error"].startswith("the Sigma rules did not load")
    assert view["rules"] == []
