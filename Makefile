# Makefile for convnet-dist.
#
#   make            build ./convnet-dist (probes dependencies first)
#   make run        install missing Debian packages if root, build, train jobs/mnist.job
#   make test       build and run the CUnit suite (tests/), the CLI/MPI tests, the multi-host
#                   tests (tests/multihost) and the Slurm tests (tests/slurm; root, else skipped),
#                   the documentation's links (tests/check_links.py) and the fuzz smoke run
#   make check      the CUnit suites without the slow ones (CHECK_EXCLUDE): the edit-compile-test loop
#   make check-links  every link and repository path in README.md and docs/*.md resolves
#   make bench      throughput and memory beside PyTorch (bench/)
#   make bench-overlap   overlapped vs plain gradient allreduce, 2 namespace hosts at 1 Gbit/s (root)
#   make accuracy-seeds  Fashion-MNIST test accuracy over seeds, ours beside PyTorch (SEEDS="1 2 3")
#   make trajectory      our training steps beside PyTorch's from the same weights and batch order
#   make fuzz       every libFuzzer target in tests/fuzz/ for FUZZ_SECONDS each (ASan + UBSan)
#   make deps       install the Debian packages this project needs (root) or print the command
#   make clean
#
# Toggles: MPI=0 (no MPI at all), OPENMP=0, DEBUG=1 (-O0 -g), SANITIZE=1 (ASan + UBSan, in
# build-asan/ and ./convnet-dist-asan),
# HDF5=0 (no Keras .h5 weights import: [keras_h5] then says how to get it), ONEDNN=0 (no oneDNN:
# convolutions run im2col + OpenBLAS only), ONNX=0 (no `export --format onnx`: no libonnx-dev /
# protobuf-c needed).

MPI ?= 1
HDF5 ?= 1
ONEDNN ?= 1
ONNX ?= 1
OPENMP ?= 1
DEBUG ?= 0
SANITIZE ?= 0

BUILD := build
BIN := convnet-dist
# The sanitizer build has its own objects and binary, so that it never mixes with the normal
# build's (make compares times, not flags): build-asan/, ./convnet-dist-asan.
ifeq ($(SANITIZE),1)
BUILD := build-asan
BIN := convnet-dist-asan
endif
TESTBIN := $(BUILD)/test-convnet

# Debian package that provides each dependency, for the messages and `make deps`.
PKG_BLAS := libopenblas-openmp-dev
PKG_JPEG := libturbojpeg0-dev
PKG_ZLIB := zlib1g-dev
# seccomp-bpf: the sandbox of the child process that runs libhdf5 (docs/sandbox.md).
PKG_SECCOMP := libseccomp-dev
PKG_CUNIT := libcunit1-dev
PKG_MPI := libopenmpi-dev openmpi-bin
PKG_HDF5 := libhdf5-dev
PKG_ONEDNN := libdnnl-dev
PKG_DATA := dataset-fashion-mnist
# ONNX export: Debian's onnx.proto, compiled to C by protoc-c at build time.
PKG_ONNX := libonnx-dev protobuf-c-compiler libprotobuf-c-dev
# The independent runtimes the export tests check our files with (skipped when absent).
PKG_PYTEST := python3-onnx python3-opencv python3-h5py python3-numpy
# clang and its libFuzzer runtime: `make fuzz` and the fuzz smoke run of `make test`.
PKG_FUZZ := clang libclang-rt-dev
# bc, procps (pgrep) and iproute2 (network namespaces) are used by the tests; Slurm and munge
# by tests/slurm (a throw-away cluster; Debian's Slurm and Open MPI share PMIx: srun --mpi=pmix).
PKG_SLURM := slurm-wlm slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge
DEPS_PKGS := $(PKG_BLAS) $(PKG_JPEG) $(PKG_ZLIB) $(PKG_SECCOMP) $(PKG_CUNIT) $(PKG_DATA) bc procps iproute2 $(PKG_PYTEST) \
             $(PKG_FUZZ)
ifeq ($(MPI),1)
DEPS_PKGS += $(PKG_MPI) $(PKG_SLURM)
endif
ifeq ($(HDF5),1)
DEPS_PKGS += $(PKG_HDF5)
endif
ifeq ($(ONEDNN),1)
DEPS_PKGS += $(PKG_ONEDNN)
endif
ifeq ($(ONNX),1)
DEPS_PKGS += $(PKG_ONNX)
endif

ifeq ($(MPI),1)
CC := mpicc
else
CC ?= cc
endif

# The OpenMP build of OpenBLAS, so that BLAS and our own loops share one thread pool.
BLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
BLAS_LIBDIR := /usr/lib/x86_64-linux-gnu/openblas-openmp

# HDF5 (Keras .h5 weights): pkg-config's flags, else Debian's serial build (libhdf5-dev).
HDF5_CFLAGS := $(shell pkg-config --cflags hdf5 2>/dev/null)
HDF5_LIBS := $(shell pkg-config --libs hdf5 2>/dev/null)
ifeq ($(strip $(HDF5_LIBS)),)
HDF5_CFLAGS := -I/usr/include/hdf5/serial
HDF5_LIBS := -lhdf5_serial
endif

CPPFLAGS += -Iinclude -Isrc -I$(BLAS_INC) -DCONVNET_MPI=$(MPI) -DCONVNET_HDF5=$(HDF5) -DCONVNET_ONEDNN=$(ONEDNN) -DCONVNET_ONNX=$(ONNX) -MMD -MP
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter
LDLIBS += -L$(BLAS_LIBDIR) -Wl,-rpath,$(BLAS_LIBDIR) -lopenblas -lturbojpeg -lz -lseccomp -lm -lpthread
ifeq ($(HDF5),1)
CPPFLAGS += $(HDF5_CFLAGS)
LDLIBS += $(HDF5_LIBS)
endif
ifeq ($(ONEDNN),1)
LDLIBS += -ldnnl
endif

# ONNX: the C code protoc-c generates from libonnx-dev's schema, in build/onnx/.
ONNX_PROTO := /usr/include/onnx/onnx.proto
ONNX_GEN := $(BUILD)/onnx
ifeq ($(ONNX),1)
CPPFLAGS += -I$(ONNX_GEN)
LDLIBS += -lprotobuf-c
endif

ifeq ($(DEBUG),1)
CFLAGS += -O0 -g3
else
# -O2 plus vectorisation; never -Ofast: it changes results (no NaN/Inf semantics, reassociation).
CFLAGS += -O3 -march=native -g
endif
ifeq ($(SANITIZE),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
endif
ifeq ($(OPENMP),1)
CFLAGS += -fopenmp
LDFLAGS += -fopenmp
else
CFLAGS += -Wno-unknown-pragmas
endif

# src/ is one folder per floor (docs/architecture.md): app, train, config, model, layers,
# kernels, data, formats, dist, base. Objects mirror it under build/.
# Build variants are files: MPI=1 compiles dist_mpi.c and watchdog.c, MPI=0 dist_local.c, both
# behind include/dist.h.
DIST_MPI_SRC := src/dist/dist_mpi.c src/dist/watchdog.c
DIST_LOCAL_SRC := src/dist/dist_local.c
# So are oneDNN (conv_dnnl.c, or conv_dnnl_none.c: im2col only) and ONNX export (export_onnx.c,
# or export_onnx_none.c, which refuses).
ALL_SRC := $(wildcard src/*/*.c)
VARIANT_OUT := $(if $(filter 1,$(MPI)),$(DIST_LOCAL_SRC),$(DIST_MPI_SRC)) \
               $(if $(filter 1,$(ONEDNN)),src/kernels/conv_dnnl_none.c,src/kernels/conv_dnnl.c) \
               $(if $(filter 1,$(ONNX)),src/formats/export_onnx_none.c,src/formats/export_onnx.c)
SRC := $(filter-out $(VARIANT_OUT),$(ALL_SRC))
LIB_SRC := $(filter-out src/app/main.c,$(SRC))
OBJ := $(SRC:src/%.c=$(BUILD)/%.o)
LIB_OBJ := $(LIB_SRC:src/%.c=$(BUILD)/%.o)
ifeq ($(ONNX),1)
OBJ += $(BUILD)/onnx.pb-c.o
LIB_OBJ += $(BUILD)/onnx.pb-c.o
endif
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%.o)

.PHONY: fuzz fuzz-build fuzz-smoke
.PHONY: all run test check check-links test-multihost bench bench-data bench-overlap accuracy-seeds trajectory graph-reference deps check-deps clean scaling-report

all: check-deps $(BIN)

# Probe each dependency with the compiler itself; say what is missing and how to get it.
check-deps:
	@missing=""; \
	probe() { printf '#include <%s>\nint main(void){return 0;}\n' "$$1" | \
	  $(CC) -x c - -I$(BLAS_INC) -o /dev/null -L$(BLAS_LIBDIR) $$2 >/dev/null 2>&1 || missing="$$missing $$3"; }; \
	command -v $(CC) >/dev/null 2>&1 || { echo "missing: $(CC) (apt-get install $(if $(filter 1,$(MPI)),$(PKG_MPI),gcc)); or build with MPI=0"; exit 1; }; \
	probe cblas.h -lopenblas "$(PKG_BLAS)"; \
	probe turbojpeg.h -lturbojpeg "$(PKG_JPEG)"; \
	probe zlib.h -lz "$(PKG_ZLIB)"; \
	probe seccomp.h -lseccomp "$(PKG_SECCOMP)"; \
	$(if $(filter 1,$(HDF5)),probe hdf5.h "$(HDF5_CFLAGS) $(HDF5_LIBS)" "$(PKG_HDF5)";) \
	$(if $(filter 1,$(ONEDNN)),probe dnnl.h -ldnnl "$(PKG_ONEDNN)";) \
	$(if $(filter 1,$(ONNX)),[ -f $(ONNX_PROTO) ] || missing="$$missing libonnx-dev"; \
	  command -v protoc-c >/dev/null 2>&1 || missing="$$missing protobuf-c-compiler"; \
	  probe protobuf-c/protobuf-c.h -lprotobuf-c libprotobuf-c-dev;) \
	if [ -n "$$missing" ]; then \
	  echo "convnet-dist: missing build dependencies:$$missing"; \
	  echo "  install them with: sudo apt-get install -y$$missing   (or: make deps)"; \
	  case "$$missing" in *$(PKG_HDF5)*) echo "  or build without Keras .h5 import: make HDF5=0";; esac; \
	  case "$$missing" in *$(PKG_ONEDNN)*) echo "  or build without oneDNN (im2col convolutions only): make ONEDNN=0";; esac; \
	  case "$$missing" in *onnx*|*protobuf-c*) echo "  or build without ONNX export: make ONNX=0";; esac; \
	  exit 1; fi

deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=$$(for p in $(DEPS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "installing:" $$missing; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi; \
	else echo "run as root, or: sudo apt-get install -y $(DEPS_PKGS)"; fi

$(BIN): $(OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: src/%.c | $(BUILD)/tests
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# Generated from the schema at build time; its own warnings are protoc-c's, not ours.
$(ONNX_GEN)/onnx.pb-c.c: $(ONNX_PROTO)
	mkdir -p $(ONNX_GEN)
	protoc-c --c_out=$(ONNX_GEN) -I$(dir $(ONNX_PROTO)) $(ONNX_PROTO)
$(ONNX_GEN)/onnx.pb-c.h: $(ONNX_GEN)/onnx.pb-c.c ;

$(BUILD)/onnx.pb-c.o: $(ONNX_GEN)/onnx.pb-c.c | $(BUILD)/tests
	$(CC) $(CPPFLAGS) $(CFLAGS) -w -c -o $@ $<

ifeq ($(ONNX),1)
$(BUILD)/formats/export_onnx.o: $(ONNX_GEN)/onnx.pb-c.h
endif

$(BUILD)/tests/%.o: tests/%.c | $(BUILD)/tests
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -c -o $@ $<

$(TESTBIN): $(LIB_OBJ) $(TEST_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ -lcunit $(LDLIBS)

$(BUILD)/tests:
	mkdir -p $@

run: deps all
	./$(BIN) train jobs/mnist.job

# CUnit present? (else say which package instead of a link error)
CUNIT_PROBE = @printf '\#include <CUnit/Basic.h>\nint main(void){return 0;}\n' | $(CC) -x c - -o /dev/null -lcunit 2>/dev/null || \
	  { echo "missing: $(PKG_CUNIT) (apt-get install -y $(PKG_CUNIT))"; exit 1; }

# A failed suite is printed at the end with the command that reruns it alone; one suite or several:
# CONVNET_BIN=./convnet-dist CONVNET_MPI=1 build/test-convnet SUITE... (--list names them).
test: check-deps $(BIN) $(TESTBIN)
	$(CUNIT_PROBE)
	@$(MAKE) --no-print-directory check-links
	CONVNET_BIN=./$(BIN) CONVNET_MPI=$(MPI) ./$(TESTBIN)
ifeq ($(MPI),1)
	@tests/multihost/run.sh --quick; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ] || exit $$rc
	@tests/slurm/run.sh; rc=$$?; [ $$rc = 0 ] || [ $$rc = 77 ] || exit $$rc
endif
	@$(MAKE) --no-print-directory fuzz-smoke

# `make check`: the CUnit suites without the slow ones, for the edit-compile-test loop; `make test`
# (CI's command) runs every suite. On the 2-core machine, under /work/bench.lock (2026-12-07):
# `make check` 47 s wall (24 suites, 195 tests; load average 2). Left out, each timed alone:
#   onnx       every job exported, checked by python3-onnx and run in OpenCV (999 s at load 16)
#   real_data  trains on ../shared/data (60 s at load 2)
#   mpi        real mpirun on 1-4 ranks, killed and mismatched ranks (30 s at load 0.4)
#   transfer   the feature cache on 1 and 2 ranks (22 s at load 1.4)
#   resume     mpirun runs, SIGKILL and resume (21 s at load 1.1)
CHECK_EXCLUDE := mpi onnx real_data resume transfer
check: check-deps $(BIN) $(TESTBIN)
	$(CUNIT_PROBE)
	@$(MAKE) --no-print-directory check-links
	CONVNET_BIN=./$(BIN) CONVNET_MPI=$(MPI) ./$(TESTBIN) --exclude $(CHECK_EXCLUDE)

# Every relative link, #anchor and repository path in README.md and docs/*.md resolves; a broken
# one is named with its file and line.
check-links:
	@python3 tests/check_links.py --self-test

# ---------------------------------------------------------------- fuzzing
# One libFuzzer target per parser (tests/fuzz/fuzz_*.c), built with clang, ASan and UBSan (no
# MPI, no OpenMP) over the library sources compiled for coverage. A crash, a leak, a UB
# report, an input running over 1 s or an allocation over FUZZ_MALLOC_MB fails the run.
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 300
# fuzzing processes per target, side by side on one corpus (the h5 target's parent and its
# sandboxed child take turns: one process keeps about one core busy)
FUZZ_JOBS ?= 1
FUZZ_SMOKE_SECONDS ?= 8
FUZZ_MALLOC_MB ?= 512
FUZZ_RSS_MB ?= 2048
FUZZ_TARGETS := ini idx jpeg weights checkpoint darknet h5 cli
ifneq ($(HDF5),1)
FUZZ_TARGETS := $(filter-out h5,$(FUZZ_TARGETS))
endif
FUZZ_BUILD := $(BUILD)/fuzz
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined \
               -Iinclude -Isrc -Itests/fuzz -I$(BLAS_INC) -DCONVNET_MPI=0 -DCONVNET_HDF5=$(HDF5) \
               $(if $(filter 1,$(HDF5)),$(HDF5_CFLAGS)) -Wall -Wno-unknown-pragmas -Wno-unused-function
FUZZ_LDLIBS := -L$(BLAS_LIBDIR) -Wl,-rpath,$(BLAS_LIBDIR) -lopenblas -lturbojpeg -lz -lseccomp -lm -lpthread \
               $(if $(filter 1,$(HDF5)),$(HDF5_LIBS))
# the fuzzers are built without MPI, oneDNN and ONNX: dist_local.c and the _none files
FUZZ_LIB_SRC := $(filter-out src/app/main.c $(DIST_MPI_SRC) src/kernels/conv_dnnl.c src/formats/export_onnx.c,$(ALL_SRC))
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:src/%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_BUILD)/obj/fuzz_util.o \
                $(FUZZ_BUILD)/obj/fuzz_cov.o
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_OPTS := -timeout=1 -malloc_limit_mb=$(FUZZ_MALLOC_MB) -rss_limit_mb=$(FUZZ_RSS_MB) \
             -max_len=65536 -close_fd_mask=3 -print_final_stats=1 $(FUZZ_ARGS)
# clang with libFuzzer present? (a probe, so that `make test` can skip the smoke run without it)
FUZZ_PROBE = printf 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }\n' | \
             $(FUZZ_CC) -x c - -fsanitize=fuzzer,address,undefined -o /dev/null >/dev/null 2>&1

# -MMD: a changed header rebuilds what includes it (a stale object would disagree with the
# others on struct layouts)
$(FUZZ_BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c -o $@ $<

-include $(wildcard $(FUZZ_BUILD)/obj/*/*.d)

$(FUZZ_BUILD)/obj/fuzz_util.o: tests/fuzz/fuzz_util.c tests/fuzz/fuzz_util.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c -o $@ $<

# where the coverage counters are: not instrumented, see the file
$(FUZZ_BUILD)/obj/fuzz_cov.o: tests/fuzz/fuzz_cov.c tests/fuzz/fuzz_util.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BINS): $(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ) src/app/main.c
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB_OBJ) $(FUZZ_LDLIBS)

# The binary seeds, written by the project's own writers (the text seeds are committed).
$(FUZZ_BUILD)/gen_seeds: tests/fuzz/gen_seeds.c tests/fuzz/fuzz_util.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/fuzz $(CFLAGS) $(LDFLAGS) -o $@ tests/fuzz/gen_seeds.c \
	  tests/fuzz/fuzz_util.c $(LIB_OBJ) $(LDLIBS)

$(FUZZ_BUILD)/seeds.stamp: $(FUZZ_BUILD)/gen_seeds
	rm -rf $(FUZZ_BUILD)/seeds && $(FUZZ_BUILD)/gen_seeds $(FUZZ_BUILD)/seeds && touch $@

fuzz-build: $(FUZZ_BINS) $(FUZZ_BUILD)/seeds.stamp

# Each target in turn for FUZZ_SECONDS: its executions and coverage, or the finding.
fuzz: fuzz-build
	@FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) "$(FUZZ_OPTS)" $(FUZZ_TARGETS)

# Part of `make test`: every target for FUZZ_SMOKE_SECONDS; skipped (and counted) without
# clang's libFuzzer, except under CI, where `make deps` installs it.
fuzz-smoke:
	@if $(FUZZ_PROBE); then \
	  $(MAKE) --no-print-directory fuzz-build >$(BUILD)/fuzz-build.log 2>&1 || \
	    { cat $(BUILD)/fuzz-build.log; exit 1; }; \
	  FUZZ_H5_KEEP=3 tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SMOKE_SECONDS) "$(FUZZ_OPTS)" $(FUZZ_TARGETS); \
	else \
	  echo "SKIP fuzz smoke run: $(words $(FUZZ_TARGETS)) targets skipped: $(FUZZ_CC) with libFuzzer is absent (apt-get install -y $(PKG_FUZZ), or make deps)"; \
	  if [ "$$CI" = true ]; then echo "fuzz smoke run skipped under CI: failing"; exit 1; fi; \
	fi

# The full multi-host run (link-down observations, bandwidth at 1 Gbit/s): a few minutes, root.
test-multihost: all
	tests/multihost/run.sh

# The peer is Debian's PyTorch (python3-torch); bench/run.py says how to get it when missing.
bench: all
	/usr/bin/python3 bench/run.py $(BENCH_ARGS)

# The data paths at 2,000, 25,000 and 100,000 training images (symbolic links under /tmp), -np 1
# and 2: streaming from the folder, from a pack, and in memory; start-up, peak RSS per rank and
# node, img/s against issue 31's targets. Also the pack's record layout (raw vs JPEG) per core.
# BENCH_DATA_ARGS: e.g. --sizes 2000 (docs/pack.md). Several minutes on 2 cores.
$(BUILD)/pack_layout: bench/pack_layout.c $(LIB_OBJ)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LIB_OBJ) $(LDLIBS)

bench-data: all $(BUILD)/pack_layout
	/usr/bin/python3 bench/bench_data.py $(BENCH_DATA_ARGS)

# The gradient allreduce overlapped with the backward pass or not: dogs-vs-cats on 2 namespace
# hosts linked at 1 Gbit/s, step split and images/s (root; several minutes on 2 cores).
bench-overlap: all
	bench/overlap_1gbit.sh $(BENCH_ARGS)

# jobs/mnist.job's test accuracy over several seeds, beside PyTorch running the same recipe
# (about 2 minutes per seed and side on 2 cores).
SEEDS ?= 1 2 3
# e.g. ACCURACY_ARGS="--only ours --precision both" (float32 beside mixed_bfloat16, paired)
ACCURACY_ARGS ?=
accuracy-seeds: all
	/usr/bin/python3 bench/accuracy_seeds.py --seeds $(SEEDS) $(ACCURACY_ARGS)

# A residual + BatchNormalization + separable model: 10 RMSprop steps of convnet-dist against a
# float64 PyTorch reference from the same weights and batch, on 1 and 3 ranks (SyncBN), and with
# RMSprop's epsilon outside the root (tf.keras 2, as jobs/mini-xception.job runs).
graph-reference: all
	/usr/bin/python3 bench/graph_reference.py
	/usr/bin/python3 bench/graph_reference.py --np 3
	/usr/bin/python3 bench/graph_reference.py --epsilon-placement outside_sqrt

# convnet-dist's training steps beside PyTorch's from the same initial weights and batch order
# (per-step losses, with PyTorch float32-vs-float64 as the rounding yardstick; about 2 minutes).
EPOCHS ?= 1
trajectory: all
	/usr/bin/python3 bench/trajectory.py --epochs $(EPOCHS)

# Projected scaling on 1-64 nodes, checked against namespace-host measurements (root for those).
scaling-report: all
	/usr/bin/python3 bench/scaling_report.py

clean:
	rm -rf $(BUILD) $(BIN)

-include $(OBJ:.o=.d) $(TEST_OBJ:.o=.d)
