"""The CUDA backend (a later issue)."""
