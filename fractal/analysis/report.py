"""The analysis in words, for people: text and notebook HTML.

`Analysis.__str__` and `ft.explain` print with these.  They read an `Analysis` by its fields
only, so this module does not import `analysis` (which imports it to print itself).
"""

from __future__ import annotations

import html

_KIND = {"map": "parallel by construction", "scan": "sequential (carries its state)",
         "fold": "sequential (carries its state)", "reduce": "re-associable (associative state)"}


def _dim(d, k) -> str:
    extra = ", ragged: per-sample extents, the maximum is shown" if d.ragged else ""
    rev = ", runs right to left" if d.reverse else ""
    return f"dim {k} `{d.name}`: {d.kind} over {d.source or '?'} ({_KIND[d.kind]}), extent {d.extent}{rev}{extra}"


def block_lines(b, index: int) -> list[str]:
    """The lines about `b`, a `BlockAnalysis`, the `index`-th block."""
    names = [d.name for d in b.dims]
    loc = b.block.loc
    lines = [f"Block {index}: {' x '.join(f'{d.kind} {d.name}' for d in b.dims)}  ({loc.file}:{loc.line})"]
    lines += ["  " + _dim(d, k) for k, d in enumerate(b.dims)]
    if b.dependences:
        for k, vs in b.carried.items():
            shown = ", ".join(map(str, vs[:6])) + (" ..." if len(vs) > 6 else "")
            lines.append(f"  `{names[k]}` carries dependences {shown}")
        if b.dependences_truncated:
            lines.append("  (non-uniform dependences: the list was cut)")
    else:
        lines.append("  no dependence between iterations: every dim is parallel")
    par = [names[k] for k in b.parallel]
    lines.append(f"  parallel as written: {', '.join(par) if par else 'none'}")
    if b.reassociable:
        lines.append(f"  re-associable (reduce): {', '.join(names[k] for k in b.reassociable)}")
    if b.wavefront is not None:
        w = b.wavefront
        lines.append(f"  wavefront: hyperplane {w.describe(names)}, {w.steps} sequential steps, "
                     f"up to {w.max_parallelism} independent points per step; new = {list(map(list, w.matrix))} @ old")
        lines += ["    " + line for line in w.loops.splitlines()]
    elif len(b.carried) >= 2:
        lines.append("  " + _no_wavefront(b, par))
    for buf, along in sorted(b.reuse.items()):
        lines.append(f"  reuse: {buf} is re-read along {', '.join(names[k] for k in along)}")
    return lines


def _no_wavefront(b, par) -> str:
    """Why a block whose dependences are carried by several dims gets no wavefront, in the
    terms that matter to its user (the search for a hyperplane is the last reason, not the first)."""
    if b.external:
        return ("no wavefront: some dependences are on results of other blocks, "
                "which a skew of this block alone cannot honour")
    if b.dependences_truncated:
        return "no wavefront: the dependences are non-uniform (too many distances to skew by)"
    if par:
        return (f"no wavefront: {', '.join(par)} already parallel as written; the dims that carry "
                f"dependences stay in order")
    return "no wavefront: the dependences admit no hyperplane with small coefficients"


def _label(etdg, name: str) -> str:
    return next((b.label for b in etdg.buffers if b.name == name and b.label), name)


def explain_text(a) -> str:
    """The report on `a`, an `Analysis`, as text."""
    head = f"Analysis of @{a.program.name}: {len(a.blocks)} block(s)"
    out = [head]
    for i, b in enumerate(a.blocks):
        out.append("")
        out += block_lines(b, i)
    dd = sorted({_label(a.etdg, x.buffer) for x in a.etdg.accesses if x.data_dependent})
    if dd:
        out.append("")
        out.append(f"Data-dependent accesses (indices known only at run time): {', '.join(dd)}")
    return "\n".join(out)


def explain_html(a) -> str:
    """The report as notebook HTML."""
    return f"<pre>{html.escape(explain_text(a))}</pre>"
