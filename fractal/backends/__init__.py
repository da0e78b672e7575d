"""Backends that run the tile IR: cpu, cuda, dataflow (later issues)."""
