# CUDA backend: compiled whenever a CUDA toolkit is found — the system's (/usr/local/cuda)
# or the project-local prefix made from the CUDA 13 PyPI wheels by tools/setup.sh (.deps/cuda).
# Without one, CUDA_OBJ is empty and the program is CPU-only. (Owned by the CUDA backend.)
#
# Which toolkit: CUDA_HOME (environment or command line) when it holds bin/nvcc, else
# /usr/local/cuda, else .deps/cuda, else the nvcc on PATH. DW_SKIP_CUDA=1 builds without CUDA.
# Linking: cudart is linked statically (no run-time dependency, and no CUDA call happens before
# a CUDA backend is opened). cuBLAS is not linked: src/backend/cuda/cublas_dl.cu opens it with
# dlopen when a CUDA backend is opened, because linking it costs every start of the program
# ~0.2 s and ~210 MB of RSS (libcublasLt is 540 MB). Its directory here is baked in as the first
# place to look (DW_CUBLAS_DIR); DW_CUBLAS_LIB=/path/libcublas.so.13 overrides at run time.
CUDA_OBJ    :=
CUDA_CFLAGS :=
CUDA_LDLIBS :=
# This file is included before the Makefile's first target: nothing here may become the
# default goal (restored at the end).
dw_cuda_saved_goal := $(.DEFAULT_GOAL)

ifneq ($(DW_SKIP_CUDA),1)
dw_cuda_candidates := $(CUDA_HOME) /usr/local/cuda $(CURDIR)/.deps/cuda \
                      $(patsubst %/bin/nvcc,%,$(shell command -v nvcc 2>/dev/null))
CUDA_ROOT := $(firstword $(foreach d,$(dw_cuda_candidates),$(if $(wildcard $(d)/bin/nvcc),$(d))))
endif

ifneq ($(CUDA_ROOT),)
dw_cuda_libdirs := $(CUDA_ROOT)/lib64 $(CUDA_ROOT)/lib $(CUDA_ROOT)/targets/x86_64-linux/lib
CUDA_LIBDIR  := $(firstword $(foreach d,$(dw_cuda_libdirs),$(if $(wildcard $(d)/libcudart_static.a),$(d))))
CUBLAS_DIR   := $(firstword $(foreach d,$(dw_cuda_libdirs),$(if $(wildcard $(d)/libcublas.so.*),$(d))))
ifeq ($(CUDA_LIBDIR),)
$(warning mk/cuda.mk: $(CUDA_ROOT)/bin/nvcc found but no libcudart_static.a beside it: building without CUDA)
CUDA_ROOT :=
endif
endif

ifneq ($(CUDA_ROOT),)
NVCC        := $(CUDA_ROOT)/bin/nvcc
CUDA_ARCH   ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVCCFLAGS   := -std=c++17 -O3 -g $(CUDA_ARCH) -Xcompiler -fPIC,-Wall -Iinclude -Isrc -DDW_HAVE_CUDA \
               -DDW_CUBLAS_DIR='"$(CUBLAS_DIR)"' $(CUDA_EXTRA_FLAGS)
CUDA_SRC    := $(sort $(wildcard src/backend/cuda/*.cu))
CUDA_OBJ    := $(CUDA_SRC:%.cu=$(BUILD)/obj/%.o)
CUDA_CFLAGS := -DDW_HAVE_CUDA
CUDA_LDLIBS := $(CUDA_LIBDIR)/libcudart_static.a -ldl -lrt -lstdc++ -pthread

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

-include $(CUDA_OBJ:.o=.d)
endif

.PHONY: cuda-info cuda-ldlibs
cuda-ldlibs:
	@echo "$(CUDA_LDLIBS)"
cuda-info:
	@echo "CUDA toolkit: $(if $(CUDA_ROOT),$(CUDA_ROOT) (cudart $(CUDA_LIBDIR), cuBLAS $(if $(CUBLAS_DIR),$(CUBLAS_DIR),not found: set DW_CUBLAS_LIB)),none: CPU-only build)"

.DEFAULT_GOAL := $(dw_cuda_saved_goal)
