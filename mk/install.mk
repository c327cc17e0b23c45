# Installing Driftwood like a C library: `make install PREFIX=DIR` (default /usr/local; DESTDIR
# is prepended to every path written, for packagers) puts in place
#   bin/driftwood                        the program (finds Wasmtime through $ORIGIN/../lib)
#   lib/libdriftwood.a                   the library, static
#   lib/libdriftwood.so.VERSION          the library, shared (soname libdriftwood.so.MAJOR; the
#   lib/libdriftwood.so.MAJOR, .so         links beside it; finds Wasmtime through $ORIGIN)
#   lib/libwasmtime.so                   the Wasmtime both link against
#   lib/pkgconfig/driftwood.pc           Cflags and Libs (Libs.private from the Makefile's LDLIBS)
#   include/driftwood/*.h                the public headers, guest.h (the guest SDK) among them
#   share/driftwood/guest.mk             the guest build rules, pointed at the installed headers
# `make uninstall PREFIX=DIR` removes them. The version comes from the VERSION file.

DW_VERSION   := $(shell cat VERSION)
DW_SO_MAJOR  := $(firstword $(subst ., ,$(DW_VERSION)))
LIBDW_SONAME := libdriftwood.so.$(DW_SO_MAJOR)
LIBDW_SO     := $(BUILD)/lib/libdriftwood.so.$(DW_VERSION)

PREFIX       ?= /usr/local
DESTDIR      ?=
BINDIR       := $(PREFIX)/bin
LIBDIR       := $(PREFIX)/lib
INCLUDEDIR   := $(PREFIX)/include
DATADIR      := $(PREFIX)/share/driftwood
PKGCONFIGDIR := $(LIBDIR)/pkgconfig

# The version is compiled into the library (src/actor/version.c).
$(BUILD)/obj/src/actor/version.o: VERSION
$(BUILD)/obj/src/actor/version.o: CFLAGS += -DDW_VERSION_STRING='"$(DW_VERSION)"'

# The shared library: the same objects as libdriftwood.a. --no-undefined makes the link fail
# if LDLIBS misses a library, so driftwood.pc (derived from LDLIBS) cannot miss one either.
$(LIBDW_SO): $(LIB_OBJ) $(CUDA_OBJ) $(BUILD)/lib/libwasmtime.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -shared -Wl,-soname,$(LIBDW_SONAME) -Wl,--no-undefined -o $@ $(LIB_OBJ) $(CUDA_OBJ) \
	    -Wl,-rpath,'$$ORIGIN' $(LDLIBS) $(CUDA_LDLIBS)
	ln -sf $(notdir $@) $(BUILD)/lib/$(LIBDW_SONAME)
	ln -sf $(LIBDW_SONAME) $(BUILD)/lib/libdriftwood.so

# What a program linking libdriftwood statically needs besides it: LDLIBS and CUDA_LDLIBS,
# less the build tree's Wasmtime folder and run paths (Wasmtime is installed beside the library).
# A CUDA build names the toolkit's libcudart_static.a where the build found it (not installed).
comma := ,
DW_PC_LIBS_PRIVATE = $(filter-out -L$(WASMTIME_DIR)/lib -Wl$(comma)-rpath$(comma)%,$(LDLIBS) $(CUDA_LDLIBS))

.PHONY: shared install uninstall
shared: $(LIBDW_SO)

install: $(DRIFTWOOD) $(LIBDW) $(LIBDW_SO) $(BUILD)/lib/libwasmtime.so
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(INCLUDEDIR)/driftwood $(DESTDIR)$(DATADIR)
	install -m 755 $(DRIFTWOOD) $(DESTDIR)$(BINDIR)/driftwood
	install -m 644 $(LIBDW) $(DESTDIR)$(LIBDIR)/libdriftwood.a
	install -m 755 $(LIBDW_SO) $(DESTDIR)$(LIBDIR)/libdriftwood.so.$(DW_VERSION)
	ln -sf libdriftwood.so.$(DW_VERSION) $(DESTDIR)$(LIBDIR)/$(LIBDW_SONAME)
	ln -sf $(LIBDW_SONAME) $(DESTDIR)$(LIBDIR)/libdriftwood.so
	install -m 755 $(BUILD)/lib/libwasmtime.so $(DESTDIR)$(LIBDIR)/libwasmtime.so
	install -m 644 include/driftwood/*.h $(DESTDIR)$(INCLUDEDIR)/driftwood/
	sed 's|^DW_SDK_INCLUDE *?=.*|DW_SDK_INCLUDE   ?= $(INCLUDEDIR)|' sdk/guest.mk > $(DESTDIR)$(DATADIR)/guest.mk
	@grep -q '^DW_SDK_INCLUDE   ?= $(INCLUDEDIR)$$' $(DESTDIR)$(DATADIR)/guest.mk || \
	    { echo "install: sdk/guest.mk no longer sets DW_SDK_INCLUDE with ?=; update mk/install.mk" >&2; exit 1; }
	printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$${prefix}/lib' 'includedir=$${prefix}/include' \
	    'guestmk=$${prefix}/share/driftwood/guest.mk' '' \
	    'Name: driftwood' \
	    'Description: Stateful WebAssembly actors that run LLM inference on CPU or CUDA' \
	    'Version: $(DW_VERSION)' \
	    'Cflags: -I$${includedir}' \
	    'Libs: -L$${libdir} -ldriftwood' \
	    'Libs.private: $(DW_PC_LIBS_PRIVATE)' > $(DESTDIR)$(PKGCONFIGDIR)/driftwood.pc

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/driftwood $(DESTDIR)$(LIBDIR)/libdriftwood.a \
	    $(DESTDIR)$(LIBDIR)/libdriftwood.so.$(DW_VERSION) $(DESTDIR)$(LIBDIR)/$(LIBDW_SONAME) \
	    $(DESTDIR)$(LIBDIR)/libdriftwood.so $(DESTDIR)$(LIBDIR)/libwasmtime.so \
	    $(DESTDIR)$(PKGCONFIGDIR)/driftwood.pc $(DESTDIR)$(DATADIR)/guest.mk \
	    $(patsubst include/%,$(DESTDIR)$(INCLUDEDIR)/%,$(wildcard include/driftwood/*.h))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/driftwood $(DESTDIR)$(DATADIR) 2>/dev/null
