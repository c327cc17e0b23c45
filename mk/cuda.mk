# CUDA backend: compiled whenever a CUDA toolkit is found — the system's (/usr/local/cuda)
# or the project-local prefix made from the CUDA 13 PyPI wheels by tools/setup.sh (.deps/cuda).
# Without one, CUDA_OBJ is empty and the program is CPU-only. (Owned by the CUDA backend.)
CUDA_OBJ    :=
CUDA_CFLAGS :=
CUDA_LDLIBS :=
