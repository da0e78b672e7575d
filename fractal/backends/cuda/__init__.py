"""The CUDA backends (issue 18): the GPU targets (`presets`: h100, a100, l4, rtx4090 and
`ft.targets.cuda(arch)`, with the cost policy of `policy`), the CUDA C++ compiler front
(`nvrtc.compile_cuda`: NVRTC, or nvcc, to a cubin, no GPU needed; `diagnose`: its errors
pointed at the tile IR), the emitter (`module`, `kernel`, `device_loop`, and the block-level
rules `block`, `block_ops`, `block_gemm` with the tensor-core helpers of `mma`: a tile program
as one CUDA C++ module), the host runtime (`runtime`) and
its devices: `cupy_device` (a GPU through CuPy, the "cuda" backend) and `emulated` (the same
kernels on the CPU, "cuda-emulated"); `backend` registers both."""
