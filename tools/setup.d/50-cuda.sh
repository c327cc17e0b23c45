# CUDA toolkit for the CUDA backend (mk/cuda.mk). A system toolkit (/usr/local/cuda) is used
# as it is; otherwise the CUDA 13.0 compiler and libraries come from PyPI wheels, installed into
# .deps/cuda-wheels and exposed as the toolkit-shaped tree .deps/cuda (bin/ include/ lib/ nvvm/).
# The versions match CUDA 13.0, the toolkit and driver (580) of the project's H100 machine: a
# newer runtime would refuse that driver. DW_SKIP_CUDA=1 skips this step (a CPU-only build).
dw_cuda_wheels="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14"
dw_cuda_stamp=".deps/cuda-wheels/.installed-$(echo "$dw_cuda_wheels" | sha256sum | cut -c1-16)"
if [ "${DW_SKIP_CUDA:-0}" != 1 ] && [ ! -x /usr/local/cuda/bin/nvcc ] \
    && { [ ! -f "$dw_cuda_stamp" ] || [ ! -x .deps/cuda/bin/nvcc ]; }; then
    echo "setup: installing the CUDA 13.0 toolkit wheels (nvcc, cudart, cuBLAS; about 450 MB to download) into .deps/cuda"
    rm -rf .deps/cuda-wheels .deps/cuda-wheels.tmp .deps/cuda
    mkdir -p .deps
    # --no-deps: the list above is complete (nvcc needs nvvm, crt and the runtime headers).
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps --target .deps/cuda-wheels.tmp $dw_cuda_wheels
    mv .deps/cuda-wheels.tmp .deps/cuda-wheels
    # The wheels unpack into one toolkit-shaped tree; nvcc finds cicc, ptxas and its headers
    # relative to itself (bin/nvcc.profile), so a link to that tree is a working CUDA_HOME.
    ln -s cuda-wheels/nvidia/cu13 .deps/cuda
    # The wheels ship only versioned libraries; the linker wants the plain names.
    for dw_lib in cudart cublas cublasLt; do
        ln -sf "lib$dw_lib.so.13" ".deps/cuda/lib/lib$dw_lib.so"
    done
    .deps/cuda/bin/nvcc --version >/dev/null || { echo "setup: .deps/cuda/bin/nvcc does not run"; exit 1; }
    touch "$dw_cuda_stamp"
fi
