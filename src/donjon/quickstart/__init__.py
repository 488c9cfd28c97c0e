"""``donjon quickstart``: a guarded ML lifecycle, end to end, on embedded defaults.

A composition-level package (beside ``donjon.app``): it wires every capability
through its public API and runs them for real on a fresh folder::

    from donjon.quickstart import run_quickstart
    result = run_quickstart(Path("demo"))
    assert result.ok, [e.what for e in result.missed] + result.problems
"""

from donjon.quickstart.runner import QuickstartResult, run_quickstart

__all__ = ["QuickstartResult", "run_quickstart"]
