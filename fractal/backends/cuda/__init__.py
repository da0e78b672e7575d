"""The CUDA backend, in progress (issue 18).  Built so far: the GPU targets (`presets`: h100,
a100, l4, rtx4090 and `ft.targets.cuda(arch)`, with the cost policy of `policy`) and the CUDA
C++ compiler front (`nvrtc.compile_cuda`: NVRTC, or nvcc, to a cubin, no GPU needed).  Not yet:
the emitter (tile IR -> CUDA C++) and the runtime, so no backend named "cuda" is registered and
compiling a program for a CUDA target says so (`fractal.backends.registry`)."""
