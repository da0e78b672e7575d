"""Backends that run the tile IR: `cpu` (NumPy/BLAS, the default), `cuda` and `dataflow`
(later issues).  `fractal.compile` picks one for `f.compile(*args, backend=...)`."""
