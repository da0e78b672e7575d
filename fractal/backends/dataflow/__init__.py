"""The distributed-memory dataflow backend (a later issue)."""

from . import mesh_printer  # noqa: F401  (gives the mesh IR's nodes their text form: `str(program)`)
