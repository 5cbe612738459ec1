# haul build.  `make` builds build/haul and build/libhaul.a; `make asan` the same
# with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/;
# `make check` builds and runs the unit tests.

BUILD    ?= build
CC       ?= cc
PKGS     := libcurl libxml-2.0 libssl libcrypto sqlite3 librabbitmq
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE $(shell pkg-config --cflags $(PKGS))
OPT      ?= -O2 -g
SAN      ?=
# snprintf truncation is deliberate (bounded fields), so that warning is off.
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-format-truncation
CFLAGS   += -std=c17 $(WARN) $(OPT) $(SAN) -pthread
LDFLAGS  += $(SAN)
LDLIBS   += $(shell pkg-config --libs $(PKGS)) -pthread -lm

# Every module but the command front end goes into libhaul.a.
LIB_SRC  := $(sort $(filter-out src/cmd/%,$(wildcard src/*/*.c)))
CMD_SRC  := $(sort $(wildcard src/cmd/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
EX_SRC   := $(sort $(wildcard examples/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ  := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
EX_BIN   := $(EX_SRC:examples/%.c=$(BUILD)/examples/%)
# Test drivers that are not unit tests (run by tests/integration and bench/).
DRV_SRC  := $(sort $(wildcard tests/dist/*.c))
DRV_BIN  := $(DRV_SRC:tests/dist/%.c=$(BUILD)/tests/%)

.PHONY: all asan check unit clean format lint
all: $(BUILD)/haul $(BUILD)/libhaul.a $(EX_BIN) $(DRV_BIN)

$(BUILD)/libhaul.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/haul: $(CMD_OBJ) $(BUILD)/libhaul.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(CMD_OBJ) $(BUILD)/libhaul.a $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libhaul.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libhaul.a $(LDLIBS) -lcmocka

$(BUILD)/tests/%: tests/dist/%.c $(BUILD)/libhaul.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libhaul.a $(LDLIBS)

$(BUILD)/examples/%: examples/%.c $(BUILD)/libhaul.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libhaul.a $(LDLIBS)

unit: $(UNIT_BIN)

# Each cmocka binary prints its own summary; the loop stops at the first failure.
check: all unit
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit

format:
	clang-format -i $(LIB_SRC) $(CMD_SRC) $(UNIT_SRC) $(EX_SRC) $(DRV_SRC) $(wildcard src/*/*.h include/haul/*.h)

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr -Iinclude -Isrc src

clean:
	rm -rf build build-asan

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d)
