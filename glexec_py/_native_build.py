"""cffi builder for glexec_py._native (API mode, out-of-line).

Run from the repo root:  /usr/bin/python3.11 glexec_py/_native_build.py
Compiles the SOURCES of csrc/ (identity, X.509 chains, VOMS and JWS signatures, the payload
plan's executor, glexec-sweep's directory scan, the PAM account/session) against libcrypto and libpam
under build/native/ and copies the extension module next to this file; nothing else is
written into the tree.
"""
import os
import shutil
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")
SOURCES = ["identity.c", "x509chain.c", "x509info.c", "plan_decode.c", "plan_run.c", "plan_linger.c",
           "sigverify.c", "jws.c", "sweepwalk.c", "guards.c", "pam.c"]
CFLAGS = ["-O2", "-Wall", "-Werror", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"]
LDFLAGS = ["-Wl,-z,relro,-z,now", "-Wl,-z,noexecstack"]


def _cdef_text() -> str:
    """The declarations between the CDEF markers of csrc/native.h."""
    with open(os.path.join(CSRC, "native.h")) as f:
        text = f.read()
    return text.split("/* BEGIN CDEF */", 1)[1].split("/* END CDEF */", 1)[0]


ffibuilder = FFI()
ffibuilder.cdef(_cdef_text())
ffibuilder.set_source(
    "glexec_py._native",
    '#include "native.h"\n',
    sources=[os.path.join(CSRC, s) for s in SOURCES],
    include_dirs=[CSRC],
    libraries=["crypto", "pam"],
    extra_compile_args=CFLAGS + os.environ.get("GLEXEC_NATIVE_EXTRA_CFLAGS", "").split(),
    extra_link_args=LDFLAGS + os.environ.get("GLEXEC_NATIVE_EXTRA_LDFLAGS", "").split(),
)


def build() -> str:
    tmp = os.path.join(ROOT, "build", "native")
    os.makedirs(tmp, exist_ok=True)
    built = ffibuilder.compile(tmpdir=tmp, verbose=False)
    dest = os.path.join(HERE, os.path.basename(built))
    if os.path.abspath(built) != dest:
        shutil.copyfile(built, dest + ".tmp")
        os.chmod(dest + ".tmp", 0o644)
        os.replace(dest + ".tmp", dest)
    return dest


if __name__ == "__main__":
    os.chdir(ROOT)
    print(build(), file=sys.stderr)
