# glexec-py build and install (see docs/internals.md for the installed layout).
#   make                      build the shim (build/glexec, PREFIX=/usr/local paths) and the cffi module
#   make install PREFIX=/opt/glexec   (root) install into PREFIX
#   make install DESTDIR=/tmp/stage PREFIX=/usr   stage for a package (no setuid bit, no owners)
#   make check-hardening PREFIX=...   readelf checks on the shim built for PREFIX (and the installed one)
#   make deps / test-deps / pkg-deps  the Debian packages to run / test / build packages (apt)

PREFIX ?= /usr/local
# FHS: a PREFIX=/usr install keeps its configuration in /etc and its logs and state in /var.
ifeq ($(PREFIX),/usr)
SYSCONFDIR ?= /etc
LOCALSTATEDIR ?= /var
RUNSTATEDIR ?= /run
else
SYSCONFDIR ?= $(PREFIX)/etc
LOCALSTATEDIR ?= $(PREFIX)/var
RUNSTATEDIR ?= $(LOCALSTATEDIR)/run
endif
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
# Staging root for packages: every file goes below it, the paths compiled in and written into
# the files are those without it.
DESTDIR ?=
# Where `make install` puts the PAM service file `glexec` (empty = not at all; packages and
# a site install use PAMDIR=/etc/pam.d). glexec refuses to run (202) while it is missing.
PAMDIR ?=
# The periodic jobs (prune-users, glexec-sweep, glexec-leases expire) and log rotation: empty =
# not installed (packages: /lib/systemd/system, /etc/cron.d, /etc/logrotate.d).
SYSTEMDUNITDIR ?=
CRONDIR ?=
LOGROTATEDIR ?=
PYTHON := /usr/bin/python3.11
# Packagers (and the Makefile tests) may build the native module separately: NATIVE_BUILD=true
NATIVE_BUILD = $(PYTHON) glexec_py/_native_build.py
CC = gcc

CFLAGS_SHIM := -O2 -Wall -Wextra -Werror -fPIE -fstack-protector-strong -D_FORTIFY_SOURCE=2
LDFLAGS_SHIM := -pie -Wl,-z,relro,-z,now -Wl,-z,noexecstack
# The payload plan's executor (and the identity switch and guards it uses) is built into the
# shim for the engine service, which hands it a plan (csrc/shim_service.c); in-process, the
# native module runs it.
EXEC_SRC := csrc/plan_decode.c csrc/plan_run.c csrc/plan_linger.c csrc/identity.c csrc/guards.c
SHIM_SRC := csrc/shim.c csrc/shim_blob.c csrc/shim_userns.c csrc/shim_service.c $(EXEC_SRC)
SHIM_DEPS := $(SHIM_SRC) csrc/shim.h csrc/native.h Makefile

# The prefix and the config path are compiled into the shim, so each pair gets its own build directory.
PREFIX_TAG := $(subst /,_,$(PREFIX))$(if $(filter-out $(PREFIX)/etc,$(SYSCONFDIR)),__etc$(subst /,_,$(SYSCONFDIR)))$(if $(filter-out $(PREFIX)/var/run,$(RUNSTATEDIR)),__run$(subst /,_,$(RUNSTATEDIR)))
PSHIM := build/prefix$(PREFIX_TAG)/glexec
LIBDIR := $(PREFIX)/lib/glexec-py
CONFDIR := $(SYSCONFDIR)/glexec-py
CONFIG_FILE := $(CONFDIR)/glexec.yaml
LOGDIR := $(LOCALSTATEDIR)/log/glexec-py
STATEDIR := $(LOCALSTATEDIR)/lib/glexec-py
# The engine service's root-only socket (systemd socket activation for packages; a test
# prefix's service binds it itself): compiled into the shim and written into site_paths.
SERVICE_SOCKET := $(RUNSTATEDIR)/glexec-py/engine.sock
# D = the staging root; a real install (no DESTDIR) also sets owners and the setuid bit.
D := $(DESTDIR)
ifeq ($(DESTDIR),)
OWN := -o root -g root
else
OWN :=
endif
# gLExec-era helpers installed beside the glexec binary (packaging/sbin)
CLIENT_HELPERS := mkgltempdir glexec_wrapenv.pl glexec_unwrapenv.pl

DEPS_PKGS := gcc make libc6-dev libssl-dev libpam0g-dev python3.11 python3-dev python3-cffi \
	python3-cffi-backend python3-yaml python3-cryptography python3-psutil python3-zstandard \
	globus-proxy-utils voms-clients openssl libpq-dev libpq5

# Refuse paths that would not survive quoting (shell, C string, sed, Python) or the shim's
# trust walk. $(1) = value, $(2) = its name.
define check_path
	@case '$(1)' in /*) ;; *) echo "$(2) must be an absolute path" >&2; exit 1;; esac
	@case '$(1)' in *[!A-Za-z0-9._/-]*|*/../*|*/..|*/./*|*/.|*//*|?*/) \
		echo "$(2) '$(1)' must be a plain absolute path ([A-Za-z0-9._-], no trailing /)" >&2; exit 1;; esac
endef
check_prefix = $(call check_path,$(1),PREFIX)

# $(1) = prefix, $(2) = output, $(3) = sysconfdir, $(4) = runstatedir. Interpreter, engine,
# config and service socket paths are fixed here, never at run time; the config path is
# site_paths.CONFIG_FILE's, the socket site_paths.SERVICE_SOCKET's.
define build_shim
	$(call check_prefix,$(1))
	$(call check_path,$(3),SYSCONFDIR)
	$(call check_path,$(4),RUNSTATEDIR)
	mkdir -p $(dir $(2))
	$(CC) $(CFLAGS_SHIM) \
		-DGLEXEC_INTERP='"$(PYTHON)"' \
		-DGLEXEC_ENGINE='"$(patsubst //%,/%,$(1)/lib/glexec-py/glexec-engine.py)"' \
		-DGLEXEC_CONFIG='"$(patsubst //%,/%,$(3)/glexec-py/glexec.yaml)"' \
		-DGLEXEC_SOCKET='"$(patsubst //%,/%,$(4)/glexec-py/engine.sock)"' \
		$(LDFLAGS_SHIM) -o $(2) $(SHIM_SRC)
endef

.PHONY: all build native deps test-deps pkg-deps apt-ensure install install-preflight uninstall clean check-hardening test demo mutants deb rpm

all build: build/glexec native

build/glexec: $(SHIM_DEPS)
	$(call build_shim,/usr/local,$@,/usr/local/etc,/usr/local/var/run)

$(PSHIM): $(SHIM_DEPS)
	$(call build_shim,$(PREFIX),$@,$(SYSCONFDIR),$(RUNSTATEDIR))

native:
	$(NATIVE_BUILD)

# Site-wide leases, audit shipping and back-mapping (issue 13): the tests start private
# instances; glexec-backmap --site needs python3-psycopg2 at run time.  (Defined before
# TEST_PKGS: := expands at once, so a later definition would add nothing.)
SITE_PKGS := postgresql-15 python3-psycopg2 rsyslog rsyslog-relp rsyslog-pgsql
# The gridmapdir's NFS semantics (tests/nfs): a private NFS-Ganesha (VFS export; NFSv4 on
# 127.0.0.1, NFSv3 with its own rpcbind in a private network namespace set up with `ip`;
# started and stopped by the test) and libnfs, a userspace NFS client (the kernel's NFS is
# not used). On a systemd host installing them also starts rpcbind and the
# distribution's nfs-ganesha (all addresses); the tests need neither: `systemctl disable
# --now nfs-ganesha rpcbind.socket rpcbind` if they should not run there.
NFS_PKGS := nfs-ganesha nfs-ganesha-vfs libnfs13 rpcbind iproute2
# What the test suite and the demo need on top of the runtime dependencies.
TEST_PKGS := python3-pytest python3-hypothesis python3-jwt sudo util-linux strace scitokens-cpp \
	liblcmaps0 liblcmaps-dev lcmaps-plugins-basic-poolaccount lcmaps-plugins-basic-localaccount \
	lcmaps-plugins-basic-bandn lcmaps-plugins-basic-dummy lcmaps-plugins-voms lcmaps-plugins-verify-proxy \
	slurmctld slurmd slurm-client munge slurm-wlm-torque postgresql-client-15 busybox \
	$(SITE_PKGS) $(NFS_PKGS)

deps:
	@$(MAKE) --no-print-directory apt-ensure PKGS='$(DEPS_PKGS)'

test-deps: deps
	@$(MAKE) --no-print-directory apt-ensure PKGS='$(TEST_PKGS) $(PKG_PKGS)'

# Building the Debian package (dpkg-buildpackage -us -uc -b), checking it (lintian), the RPM
# (rpmbuild -bb, Debian's rpm) and the logrotate test (tests/packaging: part of test-deps).
PKG_PKGS := debhelper devscripts lintian fakeroot dpkg-dev rpm logrotate groff-base man-db

pkg-deps: deps
	@$(MAKE) --no-print-directory apt-ensure PKGS='$(PKG_PKGS)'

apt-ensure:
	@missing=""; for p in $(PKGS); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		echo 'rsyslog-pgsql rsyslog-pgsql/dbconfig-install boolean false' | debconf-set-selections; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The shim refuses to run unless every ancestor of the engine is root-owned and not
# group/other-writable: check that before building or installing anything.  This is about
# the final location; a DESTDIR stage is only copied from (the package manager makes the
# final directories).
install-preflight:
	@[ -n '$(DESTDIR)' ] || [ "$$(id -u)" = 0 ] || { echo "make install must run as root (or use DESTDIR=)" >&2; exit 1; }
	$(call check_prefix,$(PREFIX))
	$(call check_path,$(SYSCONFDIR),SYSCONFDIR)
	$(call check_path,$(LOCALSTATEDIR),LOCALSTATEDIR)
	$(call check_path,$(RUNSTATEDIR),RUNSTATEDIR)
	$(call check_path,$(SBINDIR),SBINDIR)
	@[ -z '$(DESTDIR)' ] || case '$(DESTDIR)' in /*) ;; *) echo "DESTDIR must be an absolute path" >&2; exit 1;; esac
	@for top in '$(PREFIX)' '$(SYSCONFDIR)' '$(LOCALSTATEDIR)'; do d=$$top; while :; do \
		if [ -L "$$d" ]; then echo "refusing: $$d is a symlink (the shim refuses symlinked ancestors)" >&2; exit 1; \
		elif [ -e "$$d" ]; then \
			[ -d "$$d" ] && [ "$$(stat -c %u "$$d")" = 0 ] || { echo "refusing: $$d is not a root-owned directory" >&2; exit 1; }; \
			case "$$(stat -c %A "$$d")" in ?????w????|????????w?) \
				echo "refusing: $$d is group/other-writable (e.g. /tmp); the shim would refuse to run" >&2; exit 1;; esac; \
		fi; \
		[ "$$d" = / ] && break; d=$$(dirname "$$d"); \
	done; done

# Paths the shipped units, cron jobs, logrotate file and man pages name (FHS) -> this
# installation's.  Through markers (@N@, which no checked path can hold), so that a
# replacement is never matched again by the next one.
FIX_PATHS = sed -e 's|/usr/sbin/|@1@|g' -e 's|/usr/lib/glexec-py/|@2@|g' -e 's|/var/log/glexec-py|@3@|g' \
	-e 's|/var/lib/glexec-py|@4@|g' -e 's|/etc/glexec-py/|@5@|g' -e 's|/run/glexec-py/|@6@|g' \
	-e 's|@1@|$(SBINDIR)/|g' -e 's|@2@|$(LIBDIR)/|g' -e 's|@3@|$(LOGDIR)|g' -e 's|@4@|$(STATEDIR)|g' \
	-e 's|@5@|$(CONFDIR)/|g' -e 's|@6@|$(RUNSTATEDIR)/glexec-py/|g'

# umask 022: missing ancestors are created by install -d as 0755.
install: install-preflight $(PSHIM) native
	umask 022 && install -d $(OWN) -m 0755 '$(D)$(PREFIX)' '$(D)$(SBINDIR)' '$(D)$(PREFIX)/lib' \
		'$(D)$(LIBDIR)' '$(D)$(SYSCONFDIR)' '$(D)$(CONFDIR)' '$(D)$(LOCALSTATEDIR)' \
		'$(D)$(LOCALSTATEDIR)/log' '$(D)$(LOCALSTATEDIR)/lib'
	install -d $(OWN) -m 0700 '$(D)$(LOGDIR)' '$(D)$(STATEDIR)'
	rm -rf '$(D)$(LIBDIR)/glexec_py'
	cd glexec_py && find . -name tests -prune -o -name __pycache__ -prune -o -type d -print | \
		while read -r d; do install -d $(OWN) -m 0755 "$(D)$(LIBDIR)/glexec_py/$$d"; done
	cd glexec_py && find . -name tests -prune -o -name __pycache__ -prune -o \
		-type f \( -name '*.py' -o -name '_native*.so' \) -print | \
		while read -r f; do install $(OWN) -m 0644 "$$f" "$(D)$(LIBDIR)/glexec_py/$$f"; done
	# Where this installation keeps its files (the shim has the same CONFIG_FILE compiled in).
	sed -e 's|^PREFIX = .*|PREFIX = "$(PREFIX)"|' -e 's|^SYSCONFDIR = .*|SYSCONFDIR = "$(SYSCONFDIR)"|' \
		-e 's|^LOCALSTATEDIR = .*|LOCALSTATEDIR = "$(LOCALSTATEDIR)"|' \
		-e 's|^RUNSTATEDIR = .*|RUNSTATEDIR = "$(RUNSTATEDIR)"|' \
		glexec_py/site_paths.py > '$(D)$(LIBDIR)/glexec_py/site_paths.py'
	@[ "$$($(PYTHON) -I -S -B -c 'ns = {}; exec(open("$(D)$(LIBDIR)/glexec_py/site_paths.py").read(), ns); print(ns["CONFIG_FILE"], ns["STATE_DIR"], ns["LOG_DIR"], ns["SERVICE_SOCKET"])')" \
		= '$(CONFIG_FILE) $(STATEDIR) $(LOGDIR) $(SERVICE_SOCKET)' ] || { echo "site_paths.py was not generated correctly" >&2; exit 1; }
	rm -rf '$(D)$(LIBDIR)/glexec_tools'
	@if [ -d tools/glexec_tools ]; then \
		for d in $$(cd tools && find glexec_tools -name __pycache__ -prune -o -type d -print); do \
			install -d $(OWN) -m 0755 "$(D)$(LIBDIR)/$$d"; done && \
		for f in $$(cd tools && find glexec_tools -name __pycache__ -prune -o -type f \( -name '*.py' -o -name '*.sql' \) -print); do \
			install $(OWN) -m 0644 "tools/$$f" "$(D)$(LIBDIR)/$$f"; done; \
	fi
	install $(OWN) -m 0644 packaging/glexec-engine.py '$(D)$(LIBDIR)/glexec-engine.py'
	install $(OWN) -m 0644 packaging/glexec-engine-service.py '$(D)$(LIBDIR)/glexec-engine-service.py'
	# Hash-based pycs that the engine never re-validates against the source: both are root-owned
	# in trusted dirs (checked at run time), and skipping the source hash saves ~0.2 ms a module.
	# -s/-p: the paths recorded in them are the final ones, not the stage's.
	$(PYTHON) -I -S -m compileall -q --invalidation-mode unchecked-hash \
		$(if $(DESTDIR),-s '$(DESTDIR)' -p /) '$(D)$(LIBDIR)'
	@if [ ! -e '$(D)$(CONFIG_FILE)' ]; then \
		sed -e 's|@CONFDIR@|$(CONFDIR)|g' -e 's|@LOGDIR@|$(LOGDIR)|g' -e 's|@STATEDIR@|$(STATEDIR)|g' \
			policy/glexec.yaml.in > '$(D)$(CONFIG_FILE).new' && \
		{ [ -n '$(DESTDIR)' ] || chown root:root '$(D)$(CONFIG_FILE).new'; } && \
		chmod 0644 '$(D)$(CONFIG_FILE).new' && \
		mv '$(D)$(CONFIG_FILE).new' '$(D)$(CONFIG_FILE)'; \
		echo "installed $(D)$(CONFIG_FILE)"; \
	fi
	@if [ ! -e '$(D)$(CONFDIR)/access.conf' ]; then \
		install $(OWN) -m 0644 policy/access.conf '$(D)$(CONFDIR)/access.conf'; fi
	# The PAM service (docs/pam.md): only where asked (packages: PAMDIR=/etc/pam.d), never replaced.
	@if [ -n '$(PAMDIR)' ] && [ ! -e '$(D)$(PAMDIR)/glexec' ]; then \
		install -d $(OWN) -m 0755 '$(D)$(PAMDIR)' && \
		sed 's|/etc/glexec-py/|$(CONFDIR)/|g' packaging/pam.d/glexec > '$(D)$(PAMDIR)/glexec' && \
		chmod 0644 '$(D)$(PAMDIR)/glexec' && echo "installed $(D)$(PAMDIR)/glexec"; fi
	# Site tools (admin tools, section 8): copies of the launcher, next to glexec.
	@if [ -d tools/bin ]; then \
		for f in tools/bin/*; do [ -f "$$f" ] && [ -x "$$f" ] || continue; \
			install $(OWN) -m 0755 "$$f" '$(D)$(SBINDIR)/'; done; \
	fi
	# Man pages: every docs/man/<name>.<section>, whoever added it, with this installation's paths.
	@for f in docs/man/*.[0-9]; do [ -f "$$f" ] || continue; sec=$${f##*.}; \
		install -d -m 0755 '$(D)$(MANDIR)'/man$$sec && \
		$(FIX_PATHS) "$$f" > '$(D)$(MANDIR)'/man$$sec/$${f##*/} && chmod 0644 '$(D)$(MANDIR)'/man$$sec/$${f##*/}; done
	@if [ -n '$(SYSTEMDUNITDIR)' ]; then install -d -m 0755 '$(D)$(SYSTEMDUNITDIR)' && \
		for f in packaging/systemd/*.service packaging/systemd/*.timer packaging/systemd/*.socket; do \
			$(FIX_PATHS) "$$f" > '$(D)$(SYSTEMDUNITDIR)'/$${f##*/} && chmod 0644 '$(D)$(SYSTEMDUNITDIR)'/$${f##*/}; done; fi
	@if [ -n '$(CRONDIR)' ]; then install -d -m 0755 '$(D)$(CRONDIR)' && \
		$(FIX_PATHS) packaging/cron.d/glexec-py > '$(D)$(CRONDIR)/glexec-py' && chmod 0644 '$(D)$(CRONDIR)/glexec-py'; fi
	@if [ -n '$(LOGROTATEDIR)' ]; then install -d -m 0755 '$(D)$(LOGROTATEDIR)' && \
		$(FIX_PATHS) packaging/logrotate.d/glexec-py > '$(D)$(LOGROTATEDIR)/glexec-py' && \
		chmod 0644 '$(D)$(LOGROTATEDIR)/glexec-py'; fi
ifeq ($(DESTDIR),)
	# setuid last: install the binary unprivileged first, then chown, then set the mode.
	install -m 0755 $(PSHIM) '$(SBINDIR)/glexec.new'
	chown root:root '$(SBINDIR)/glexec.new'
	chmod 4755 '$(SBINDIR)/glexec.new'
	mv -f '$(SBINDIR)/glexec.new' '$(SBINDIR)/glexec'
else
	# Staged: no setuid bit here; the package sets it (debian/rules, %attr in the RPM spec).
	install -m 0755 $(PSHIM) '$(D)$(SBINDIR)/glexec'
endif
	# gLExec-era client helpers beside the binary (PanDA looks there): docs/mkgltempdir.md
	for f in $(CLIENT_HELPERS); do \
		sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' "packaging/sbin/$$f" \
			> "$(D)$(SBINDIR)/.$$f.new" && chmod 0755 "$(D)$(SBINDIR)/.$$f.new" && \
		{ [ -n '$(DESTDIR)' ] || chown root:root "$(D)$(SBINDIR)/.$$f.new"; } && \
		mv -f "$(D)$(SBINDIR)/.$$f.new" "$(D)$(SBINDIR)/$$f" || exit 1; \
	done

# Leaves the config (etc) and the audit log/state (var) in place: they are the site's records.
uninstall:
	rm -f '$(D)$(SBINDIR)/glexec'
	for f in $(CLIENT_HELPERS); do rm -f "$(D)$(SBINDIR)/$$f"; done
	rm -rf '$(D)$(LIBDIR)'
	@if [ -d tools/bin ]; then for f in tools/bin/*; do \
		[ -f "$$f" ] && rm -f "$(D)$(SBINDIR)/$$(basename "$$f")"; done; true; fi
	@for f in docs/man/*.[0-9]; do [ -f "$$f" ] && rm -f '$(D)$(MANDIR)'/man$${f##*.}/$${f##*/}; done; true

# The Debian package: dpkg-buildpackage writes into the parent directory, so it builds in a
# copy of the tree under DEB_OUT (default build/deb) and the .deb lands there.  The RPM:
# packaging/rpm/README.
DEB_OUT ?= build/deb
deb:
	rm -rf '$(DEB_OUT)' && mkdir -p '$(DEB_OUT)/glexec-py'
	tar -c --exclude=./build --exclude=./.git --exclude=__pycache__ --exclude='*.so' --exclude='*.o' \
		--exclude=./debian/glexec-py --exclude=./debian/.debhelper . | tar -x -C '$(DEB_OUT)/glexec-py'
	cd '$(DEB_OUT)/glexec-py' && dpkg-buildpackage -us -uc -b
	@ls '$(DEB_OUT)'/glexec-py_*.deb

rpm:
	packaging/rpm/build.sh

# The README's two commands (fresh Debian 12, as root). -rs: every skip with its reason at
# the end (with CI=true a skip as root fails the run unless it is marked optional:
# tests/support/skips.py). Then the mutation check, without its baseline: the suite has
# just passed on this very tree.
test: test-deps build
	/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider tests
	# the end-to-end suite again with every test prefix's engine service running (issue 12)
	GLEXEC_TEST_MODE=service /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider tests/privileged
	/usr/bin/python3 tests/mutants/run.py --no-baseline --if-root --budget $(MUTANTS_BUDGET)

# Mutation check (root): every security check in tests/mutants/mutants.py must have a test
# that fails without it. MUTANTS="id ..." runs only those; MUTANTS_BUDGET in seconds.
MUTANTS ?=
MUTANTS_BUDGET ?= 1800
mutants: test-deps build
	/usr/bin/python3 tests/mutants/run.py --budget $(MUTANTS_BUDGET) $(MUTANTS)

demo: test-deps build
	/usr/bin/python3 scripts/demo.py

clean:
	rm -rf build
	rm -f glexec_py/_native*.so glexec_py/_native*.o
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

check-hardening: $(PSHIM)
	@for f in $(PSHIM) $$( [ -e '$(SBINDIR)/glexec' ] && echo '$(SBINDIR)/glexec'); do \
		echo "checking $$f"; \
		readelf -hW "$$f" | grep -Eq 'Type:[[:space:]]+DYN' || { echo "FAIL $$f: not PIE" >&2; exit 1; }; \
		readelf -lW "$$f" | grep -q GNU_RELRO || { echo "FAIL $$f: no RELRO" >&2; exit 1; }; \
		readelf -dW "$$f" | grep -Eq '\(BIND_NOW\)|\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' || { echo "FAIL $$f: no BIND_NOW" >&2; exit 1; }; \
		! readelf -dW "$$f" | grep -Eq '\((RPATH|RUNPATH)\)' || { echo "FAIL $$f: RPATH/RUNPATH" >&2; exit 1; }; \
		! grep -aq 'ORIGIN' "$$f" || { echo "FAIL $$f: \$$ORIGIN present" >&2; exit 1; }; \
		readelf -lW "$$f" | grep GNU_STACK | grep -Eq 'RW[[:space:]]+0x' || { echo "FAIL $$f: executable stack" >&2; exit 1; }; \
		needed=$$(readelf -dW "$$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' '); \
		[ "$$needed" = "libc.so.6 " ] || { echo "FAIL $$f: NEEDED is '$$needed', want only libc.so.6" >&2; exit 1; }; \
		! ldd "$$f" | grep -qi python || { echo "FAIL $$f: links libpython" >&2; exit 1; }; \
		echo "ok   $$f: PIE, RELRO, BIND_NOW, no RPATH/RUNPATH, NX stack, libc only"; \
	done
