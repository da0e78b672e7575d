"""The cost report of a mesh run: as JSON, as a text table, and as heat maps in a notebook.

    r = compiled.report          # a cost.CostSummary
    print(r)                     # the table below
    r.to_json()                  # a dict of plain numbers and lists (json.dumps-able)
    r                            # in Jupyter: the table and SVG heat maps of SRAM and link load

    mesh tiny-4x4 (4x4 mesh), bsp engine, 17 supersteps
      makespan             12,722 cycles = 12.7 us at 1 GHz
      compute / comm / idle   31% / 22% / 47% of PE time (mean over PEs)
      traffic              48,128 bytes in 1,204 messages, 61,440 byte-hops
      busiest link         (1, 2) -> (1, 3): 4,096 bytes
      SRAM high water      6,048 of 65,536 bytes (9%) on PE (0, 0), at matmul6#2 fetch (w_matmul6_...)
      channels per router  at most 2
      placeholders ([U])   none
"""

from __future__ import annotations

import html

import numpy as np


def to_json(s) -> dict:
    spec = s.spec
    peak_pe = np.unravel_index(int(np.argmax(s.sram_peak)), s.sram_peak.shape)
    links = sorted(s.link_bytes.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "machine": {"name": spec.name, "rows": spec.rows, "cols": spec.cols, "kind": spec.kind,
                    "sources": dict(spec.sources)},
        "engine": s.engine,
        "makespan_cycles": float(s.makespan_cycles),
        "makespan_seconds": float(s.seconds),
        "supersteps": int(s.supersteps),
        "per_pe": {"compute_cycles": s.compute_cycles.tolist(), "comm_cycles": s.comm_cycles.tolist(),
                   "idle_cycles": s.idle_cycles.tolist(), "sram_peak_bytes": s.sram_peak.tolist(),
                   "bytes_sent": s.pe_sent.tolist(), "bytes_received": s.pe_received.tolist(),
                   "router_channels": s.router_channels.tolist()},
        "bytes_sent": int(s.bytes_sent), "bytes_received": int(s.bytes_received),
        "bytes_hops": int(s.bytes_hops), "messages": int(s.messages),
        "links": [{"from": list(a), "to": list(b), "bytes": float(v)} for (a, b), v in links],
        "sram": {"capacity": int(spec.usable_bytes), "peak": int(s.sram_peak.max()), "pe": [int(x) for x in peak_pe],
                 "at": list(s.sram_peak_at.get(tuple(int(x) for x in peak_pe), ("", "")))},
        "placeholders": list(s.placeholders),
    }


def _share(part: np.ndarray, total: float) -> str:
    return f"{100 * float(part.mean()) / total:.0f}%" if total else "-"


def table(s) -> str:
    spec, makespan = s.spec, s.makespan_cycles
    peak_pe = tuple(int(x) for x in np.unravel_index(int(np.argmax(s.sram_peak)), s.sram_peak.shape))
    where, buffer = s.sram_peak_at.get(peak_pe, ("", ""))
    busiest = max(s.link_bytes.items(), key=lambda kv: (kv[1], kv[0]), default=None)
    cap = spec.usable_bytes
    lines = [f"mesh {spec.name} ({spec.rows}x{spec.cols} {spec.kind}), {s.engine} engine, {s.supersteps} supersteps",
             f"  makespan             {makespan:,.0f} cycles = {s.seconds * 1e6:,.3g} us at {spec.clock_hz / 1e9:g} GHz",
             f"  compute / comm / idle   {_share(s.compute_cycles, makespan)} / {_share(s.comm_cycles, makespan)} / "
             f"{_share(s.idle_cycles, makespan)} of PE time (mean over PEs)",
             f"  traffic              {s.bytes_sent:,} bytes in {s.messages:,} messages, {s.bytes_hops:,} byte-hops",
             "  busiest link         " + (f"{busiest[0][0]} -> {busiest[0][1]}: {busiest[1]:,.0f} bytes" if busiest else
                                         "none (no message crossed a link)"),
             f"  SRAM high water      {int(s.sram_peak.max()):,} of {cap:,} bytes "
             f"({100 * int(s.sram_peak.max()) / cap:.0f}%) on PE {peak_pe}" + (f", at {where} ({buffer})" if where else ""),
             f"  channels per router  at most {int(s.router_channels.max())}",
             f"  placeholders ([U])   {', '.join(s.placeholders) or 'none'}"]
    return "\n".join(lines)


def _color(x: float) -> str:
    """White to dark red."""
    t = min(max(x, 0.0), 1.0)
    return f"rgb({255},{int(255 - 200 * t)},{int(255 - 220 * t)})"


def heat_map(values: np.ndarray, title: str, cell: int = 14) -> str:
    """An SVG heat map of a per-PE array (rows x cols), largest value darkest, with a tooltip per PE."""
    rows, cols = values.shape
    top = float(values.max()) or 1.0
    size = max(4, min(cell, 480 // max(rows, cols, 1)))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * size}" height="{rows * size + 16}">',
             f'<text x="0" y="12" font-size="11" font-family="sans-serif">{html.escape(title)} '
             f'(max {top:,.0f})</text>']
    for r in range(rows):
        for c in range(cols):
            v = float(values[r, c])
            parts.append(f'<rect x="{c * size}" y="{16 + r * size}" width="{size}" height="{size}" '
                         f'fill="{_color(v / top)}" stroke="#ccc" stroke-width="0.5"><title>PE ({r}, {c}): '
                         f'{v:,.0f}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def link_load_per_pe(s) -> np.ndarray:
    """Bytes on each PE's outgoing links (a crossbar: the bytes it sent)."""
    out = np.zeros((s.spec.rows, s.spec.cols))
    for (a, _), v in s.link_bytes.items():
        out[a] += v
    return out if s.link_bytes else s.pe_sent.astype(float)


def html_report(s) -> str:
    return (f"<pre>{html.escape(table(s))}</pre><div style='display:flex;gap:24px'>"
            f"{heat_map(s.sram_peak, 'SRAM high water (bytes)')}"
            f"{heat_map(link_load_per_pe(s), 'bytes on outgoing links')}</div>")
