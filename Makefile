# SPDX-License-Identifier: MIT
#
# unikit's one Makefile. It is not recursive: each component describes itself
# in <comp>/module.mk (a handful of variables), and the rules below turn those
# descriptions into libraries, programs, unit tests, test programs and fuzz
# targets. `make help` lists the targets.
#
# Three configurations, each with its own output directory so that none
# clobbers another:
#
#   make               build/       gcc, -O2, hardened (_FORTIFY_SOURCE)
#   make SANITIZE=1    build-san/   gcc, AddressSanitizer + UBSan
#   make fuzz          build-fuzz/  clang, libFuzzer + ASan + UBSan (FUZZ=1)
#
# Layout of an output directory:
#
#   lib/lib<comp>.a        <comp>/*.c
#   bin/<program>          <program>_MAIN_SRCS, e.g. qcow/tool/*.c -> bin/qcow-tool
#   tests/test_<x>         <comp>/tests/test_<x>.c, one unit test program each
#   tests/bin/<name>       <comp>/tests/tools/<name>.c, helpers for tests
#   fuzz/<comp>/fuzz_<x>   <comp>/fuzz/fuzz_<x>.c (with the replay main, or
#                          with libFuzzer under FUZZ=1)
#   obj/...                objects and their .d dependency files
#
# Adding a component: write <comp>/module.mk (copy qcow/module.mk) and add
# <comp> to COMPONENTS. Adding a unit test, test program or fuzz target:
# create the file where the layout above says; nothing else to edit.

.DEFAULT_GOAL := all
.SUFFIXES:
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules

# Components in dependency order: a component may link only against those
# before it. Each includes <comp>/module.mk.
COMPONENTS := base qcow vpnkit hyperkit

SANITIZE ?= 0
FUZZ ?= 0
WERROR ?= 1
V ?= 0
FUZZ_SECONDS ?= 60
TESTS ?=

ifeq ($(FUZZ),1)
BUILD_DIR := build-fuzz
else ifeq ($(SANITIZE),1)
BUILD_DIR := build-san
else
BUILD_DIR := build
endif
FUZZ_BUILD_DIR := build-fuzz

ifeq ($(FUZZ),1)
CC := clang
else ifeq ($(origin CC),default)
CC := gcc
endif
ifeq ($(origin AR),default)
AR := ar
endif

# ---------------------------------------------------------------- flags

WARNINGS := -Wall -Wextra $(if $(filter 1,$(WERROR)),-Werror) -Wshadow \
	    -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wvla

SAN_FLAGS := -fno-omit-frame-pointer -fno-sanitize-recover=all
ifeq ($(FUZZ),1)
MODE_CFLAGS := -fsanitize=fuzzer-no-link,address,undefined $(SAN_FLAGS)
MODE_LDFLAGS := -fsanitize=address,undefined
FUZZ_MAIN :=
FUZZ_LDFLAGS := -fsanitize=fuzzer
else ifeq ($(SANITIZE),1)
MODE_CFLAGS := -fsanitize=address,undefined $(SAN_FLAGS)
MODE_LDFLAGS := -fsanitize=address,undefined
FUZZ_MAIN := $(BUILD_DIR)/obj/base/fuzz_replay.o
FUZZ_LDFLAGS :=
else
MODE_CPPFLAGS := -D_FORTIFY_SOURCE=2
FUZZ_MAIN := $(BUILD_DIR)/obj/base/fuzz_replay.o
FUZZ_LDFLAGS :=
endif

# Components add their -I<comp>/include here in their module.mk.
INCLUDES :=

# CPPFLAGS, CFLAGS, LDFLAGS and LDLIBS from the command line are added last.
ALL_CPPFLAGS = -D_GNU_SOURCE $(MODE_CPPFLAGS) $(INCLUDES) $(CPPFLAGS)
ALL_CFLAGS = -std=c11 -O2 -g $(WARNINGS) -fstack-protector-strong -pthread \
	     $(MODE_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = -pthread $(MODE_LDFLAGS) $(LDFLAGS)

ifeq ($(V),1)
Q :=
say :=
else
Q := @
say = @printf '  %-8s %s\n' '$(1)' '$(2)'
endif

# ---------------------------------------------------------------- components

# A module.mk sets, for its component <c>:
#   <c>_SRCS      sources of lib<c>.a (usually $(wildcard <c>/*.c))
#   <c>_LIBS      other components' libraries it uses, in link order
#   <c>_LDLIBS    system libraries it needs (-lz ...)
#   <c>_PROGRAMS  programs it builds; for each, <program>_MAIN_SRCS (not
#                 _SRCS: a program may share its component's name)
# and appends -I<c>/include to INCLUDES.
include $(addsuffix /module.mk,$(COMPONENTS))

objs = $(patsubst %.c,$(BUILD_DIR)/obj/%.o,$(1))
# The archives a component's programs link against, and the link flags.
lib_files = $(foreach l,$(1) $($(1)_LIBS),$(BUILD_DIR)/lib/lib$(l).a)
link_libs = $(foreach l,$(1) $($(1)_LIBS),-l$(l)) \
	    $(foreach l,$(1) $($(1)_LIBS),$($(l)_LDLIBS))

LIBRARIES := $(foreach c,$(COMPONENTS),$(BUILD_DIR)/lib/lib$(c).a)
$(foreach c,$(COMPONENTS),\
	$(eval $(BUILD_DIR)/lib/lib$(c).a: $(call objs,$($(c)_SRCS))))

# Programs whose sources exist (a tool not written yet is simply absent).
PROGRAMS :=
$(foreach c,$(COMPONENTS),$(foreach p,$($(c)_PROGRAMS),$(if $($(p)_MAIN_SRCS),\
	$(eval PROGRAMS += $(BUILD_DIR)/bin/$(p))\
	$(eval $(BUILD_DIR)/bin/$(p): $(call objs,$($(p)_MAIN_SRCS)) \
		$(call lib_files,$(c)))\
	$(eval $(BUILD_DIR)/bin/$(p): LINK_LIBS := $(call link_libs,$(c))))))

# One program per source file: $(call one_per_file,COMP,SRCS,OUTDIR).
define one_per_file
$(foreach s,$(2),\
	$(eval $(3)/$(basename $(notdir $(s))): $(call objs,$(s)) \
		$(call lib_files,$(1)))\
	$(eval $(3)/$(basename $(notdir $(s))): LINK_LIBS := \
		$(call link_libs,$(1))))
endef

TESTS_BIN :=
TOOLS_BIN :=
FUZZERS :=
FUZZ_OBJS :=
$(foreach c,$(COMPONENTS),\
	$(eval $(c)_TEST_SRCS := $(wildcard $(c)/tests/test_*.c))\
	$(eval $(c)_TOOL_SRCS := $(wildcard $(c)/tests/tools/*.c))\
	$(eval $(c)_FUZZ_SRCS := $(wildcard $(c)/fuzz/fuzz_*.c))\
	$(eval TESTS_BIN += $(patsubst $(c)/tests/%.c,$(BUILD_DIR)/tests/%,\
		$($(c)_TEST_SRCS)))\
	$(eval TOOLS_BIN += $(patsubst $(c)/tests/tools/%.c,\
		$(BUILD_DIR)/tests/bin/%,$($(c)_TOOL_SRCS)))\
	$(eval FUZZERS += $(patsubst $(c)/fuzz/%.c,$(BUILD_DIR)/fuzz/$(c)/%,\
		$($(c)_FUZZ_SRCS)))\
	$(eval FUZZ_OBJS += $(call objs,$($(c)_FUZZ_SRCS)))\
	$(call one_per_file,$(c),$($(c)_TEST_SRCS),$(BUILD_DIR)/tests)\
	$(call one_per_file,$(c),$($(c)_TOOL_SRCS),$(BUILD_DIR)/tests/bin)\
	$(call one_per_file,$(c),$($(c)_FUZZ_SRCS),$(BUILD_DIR)/fuzz/$(c)))

# Unit tests and test programs share flat directories: names must be unique.
ifneq ($(words $(TESTS_BIN) $(TOOLS_BIN)),$(words $(sort $(TESTS_BIN) $(TOOLS_BIN))))
$(error two components have a unit test or test program of the same name)
endif

# Fuzz targets get the libFuzzer prototypes whether or not they include
# base/fuzz.h, and link with the replay main() (or libFuzzer under FUZZ=1).
$(FUZZ_OBJS): EXTRA_CFLAGS := -include base/fuzz.h
$(FUZZERS): $(FUZZ_MAIN)
$(FUZZERS): EXTRA_LDFLAGS := $(FUZZ_LDFLAGS)

ALL_OBJS := $(sort $(foreach c,$(COMPONENTS),$(call objs,$($(c)_SRCS) \
		$($(c)_TEST_SRCS) $($(c)_TOOL_SRCS) $($(c)_FUZZ_SRCS))) \
	    $(foreach p,$(PROGRAMS),$(call objs,$($(notdir $(p))_MAIN_SRCS))) \
	    $(FUZZ_MAIN))

# ---------------------------------------------------------------- rules

ifeq ($(FUZZ),1)
all: $(FUZZERS)
else
all: $(LIBRARIES) $(PROGRAMS) $(TESTS_BIN) $(TOOLS_BIN) $(FUZZERS)
endif
	@:

$(BUILD_DIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(ALL_CPPFLAGS) $(ALL_CFLAGS) $(EXTRA_CFLAGS) -MMD -MP \
		-c -o $@ $<

$(LIBRARIES):
	@mkdir -p $(@D)
	$(call say,AR,$@)
	$(Q)rm -f $@ && $(AR) rcs $@ $(filter %.o,$^)

$(PROGRAMS) $(TESTS_BIN) $(TOOLS_BIN) $(FUZZERS):
	@mkdir -p $(@D)
	$(call say,LD,$@)
	$(Q)$(CC) $(ALL_LDFLAGS) $(EXTRA_LDFLAGS) -o $@ $(filter %.o,$^) \
		-L$(BUILD_DIR)/lib $(LINK_LIBS) $(LDLIBS)

-include $(ALL_OBJS:.o=.d)

# ---------------------------------------------------------------- tests

# The sanitizer build runs about three times slower: scale case timeouts.
TEST_ENV := $(if $(filter 1,$(SANITIZE)),TEST_TIMEOUT_SCALE=3)

.PHONY: all deps check fuzz demo clean tidy cppcheck format-check format help

deps:
	@bash scripts/deps.sh

check:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@$(TEST_ENV) UNIT_TESTS='$(TESTS_BIN)' FUZZ_TARGETS='$(FUZZERS)' \
		bash scripts/run-tests.sh $(BUILD_DIR) '$(TESTS)'

fuzz:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory FUZZ=1 all
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_TARGETS='$(patsubst \
		$(BUILD_DIR)/%,$(FUZZ_BUILD_DIR)/%,$(FUZZERS))' \
		bash scripts/run-tests.sh --fuzz $(FUZZ_BUILD_DIR) '$(TESTS)'

demo:
	@bash scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@UNIKIT_BUILD=$(abspath $(BUILD_DIR)) \
		PATH="$(abspath $(BUILD_DIR))/bin:$$PATH" bash scripts/demo.sh

clean:
	rm -rf build build-san build-fuzz

# ---------------------------------------------------------------- analysis

NPROC = $(shell nproc 2>/dev/null || echo 2)

# Every C file and header of every component (evaluated only when used).
C_SOURCES = $(shell find $(COMPONENTS) -name '*.c' | sort)
C_FILES = $(shell find $(COMPONENTS) -name '*.[ch]' | sort)
LINT_CPPFLAGS = -D_GNU_SOURCE $(INCLUDES)

# clang-tidy: bug finders and the analyzer; each exclusion says why.
TIDY_CHECKS := -*,clang-analyzer-*,bugprone-*,cert-*,performance-*,misc-*
# Two ints side by side are normal in C APIs (offset, length).
TIDY_CHECKS := $(TIDY_CHECKS),-bugprone-easily-swappable-parameters
# Kernel style allows assignment in if; -Wall's -Wparentheses guards it.
TIDY_CHECKS := $(TIDY_CHECKS),-bugprone-assignment-in-if-condition
# memcpy/memset with computed sizes are how C moves bytes; Annex K is absent.
TIDY_CHECKS := $(TIDY_CHECKS),-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling
# Our internal names (test__fail, comp__verb) use a double underscore by design.
TIDY_CHECKS := $(TIDY_CHECKS),-bugprone-reserved-identifier,-cert-dcl37-c,-cert-dcl51-cpp
# Callbacks and ops tables must take parameters they do not use.
TIDY_CHECKS := $(TIDY_CHECKS),-misc-unused-parameters
# The test asserts are macros by necessity (they need __FILE__ and #expr).
TIDY_CHECKS := $(TIDY_CHECKS),-bugprone-macro-parentheses
# -Werror already makes unchecked returns that matter an error; cert-err33-c
# would flag every fprintf and snprintf.
TIDY_CHECKS := $(TIDY_CHECKS),-cert-err33-c
# "a & ~(size_t)15" is the idiom for alignment; this check misfires on it.
TIDY_CHECKS := $(TIDY_CHECKS),-bugprone-implicit-widening-of-multiplication-result
# clang 14 reports every va_start()ed list passed to vfprintf as uninitialised.
TIDY_CHECKS := $(TIDY_CHECKS),-clang-analyzer-valist.Uninitialized

# Files are checked in parallel, a few per clang-tidy process.
tidy:
	@printf '%s\n' $(C_SOURCES) | TIDY_CHECKS='$(TIDY_CHECKS)' \
		xargs -P$(NPROC) -n4 sh -c 'clang-tidy --quiet \
		--warnings-as-errors="*" --checks="$$TIDY_CHECKS" "$$@" \
		-- -std=c11 $(LINT_CPPFLAGS)' clang-tidy

# cppcheck: every inline suppression must say why. Global ones: system
# headers are not analysed; public functions are used by other files;
# variableScope asks for locals in inner blocks, while kernel style declares
# them at the top of the function.
cppcheck:
	cppcheck -q -j2 --std=c11 --enable=warning,style,performance,portability \
		--error-exitcode=1 --inline-suppr \
		--suppress=missingIncludeSystem --suppress=unusedFunction \
		--suppress=variableScope $(LINT_CPPFLAGS) $(C_SOURCES)

# Reports files that .clang-format would change; FORMAT_STRICT=1 fails on them.
format-check:
	@n=0; for f in $(C_FILES); do \
		if ! clang-format --dry-run -Werror "$$f" >/dev/null 2>&1; then \
			echo "needs formatting: $$f"; n=$$((n + 1)); \
		fi; \
	done; \
	echo "format-check: $$n file(s) differ from .clang-format"; \
	[ "$(FORMAT_STRICT)" != 1 ] || [ $$n -eq 0 ]

# Rewrites files in place: run it on your own files only.
format:
	clang-format -i $(if $(FILES),$(FILES),$(C_FILES))

help:
	@echo 'make                build everything into build/'
	@echo 'make check          install missing packages, build, run every test'
	@echo 'make check SANITIZE=1   the same with ASan + UBSan, into build-san/'
	@echo 'make check TESTS=re     only programs/scripts whose name matches re'
	@echo '   (TEST_TIMEOUT=s per program, 900; TEST_CASE_TIMEOUT=s per case, 60)'
	@echo 'make fuzz           libFuzzer runs of FUZZ_SECONDS (60) per target'
	@echo 'make demo           build and run scripts/demo.sh'
	@echo 'make tidy | cppcheck | format-check    static checks'
	@echo 'make format [FILES=...]   apply .clang-format'
	@echo 'make clean          remove build/ build-san/ build-fuzz/'
	@echo 'V=1 shows commands; WERROR=0 turns errors back into warnings'
