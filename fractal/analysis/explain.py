"""`ft.explain(f, *args)`: the analysis of a function in words (text, and HTML in notebooks)."""

from __future__ import annotations

from .analysis import Analysis, analyze
from .report import explain_html, explain_text


class Explanation:
    """What `ft.explain` returns: prints as text, shows as HTML in notebooks."""

    def __init__(self, analysis: Analysis):
        self.analysis = analysis

    def __str__(self) -> str:
        return explain_text(self.analysis)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return explain_html(self.analysis)


def explain(f, *args, **kwargs) -> Explanation:
    """A report in words of what is parallel, what carries what, the wavefronts and the reuse
    in `@ft.function` `f` for these arguments (`ft.analyze(f, *args)` in words)."""
    return Explanation(analyze(f, *args, _caller="ft.explain", **kwargs))
