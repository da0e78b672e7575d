"""The distributed-memory dataflow backend (a later issue)."""
