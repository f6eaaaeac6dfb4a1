"""cffi builder for glexec_py._native (API mode, out-of-line).

Run from the repo root:  /usr/bin/python3.11 glexec_py/_native_build.py
Compiles the SOURCES of csrc/ (identity, X.509 chains, VOMS and JWS signatures, the payload
plan's executor, glexec-sweep's directory scan, the PAM account/session) against libcrypto and libpam
under build/native/ and copies the extension module next to this file; nothing else is
written into the tree.

A second module, glexec_py._native_pq, is libpq's non-blocking client API for the
PostgreSQL lease store (effects/pgclient.py).  It is separate so that only a call that
uses that store pays for loading libpq (docs/site-scale.md: ~10 ms vs ~65 ms for psycopg2).
"""
import os
import shutil
import sys

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")
SOURCES = ["identity.c", "x509chain.c", "x509info.c", "cryptowarm.c", "plan_decode.c", "plan_run.c",
           "plan_linger.c", "sigverify.c", "jws.c", "sweepwalk.c", "guards.c", "pam.c"]
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


# libpq (libpq-fe.h, PostgreSQL 15): only the calls of the non-blocking client path.
PQ_CDEF = """
typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
typedef unsigned int Oid;
typedef enum { CONNECTION_OK, CONNECTION_BAD, ... } ConnStatusType;
typedef enum { PGRES_POLLING_FAILED, PGRES_POLLING_READING, PGRES_POLLING_WRITING,
               PGRES_POLLING_OK, ... } PostgresPollingStatusType;
typedef enum { PGRES_EMPTY_QUERY, PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_FATAL_ERROR,
               ... } ExecStatusType;
#define PG_DIAG_SQLSTATE ...
PGconn *PQconnectStart(const char *conninfo);
PostgresPollingStatusType PQconnectPoll(PGconn *conn);
ConnStatusType PQstatus(const PGconn *conn);
int PQsocket(const PGconn *conn);
void PQfinish(PGconn *conn);
char *PQerrorMessage(const PGconn *conn);
int PQsetnonblocking(PGconn *conn, int arg);
int PQsendQueryParams(PGconn *conn, const char *command, int nParams, const Oid *paramTypes,
                      const char *const *paramValues, const int *paramLengths,
                      const int *paramFormats, int resultFormat);
int PQflush(PGconn *conn);
int PQconsumeInput(PGconn *conn);
int PQisBusy(PGconn *conn);
PGresult *PQgetResult(PGconn *conn);
ExecStatusType PQresultStatus(const PGresult *res);
char *PQresultErrorMessage(const PGresult *res);
char *PQresultErrorField(const PGresult *res, int fieldcode);
int PQntuples(const PGresult *res);
int PQnfields(const PGresult *res);
char *PQgetvalue(const PGresult *res, int tup_num, int field_num);
int PQgetlength(const PGresult *res, int tup_num, int field_num);
int PQgetisnull(const PGresult *res, int tup_num, int field_num);
void PQclear(PGresult *res);
void gx_pq_quiet(PGconn *conn);
"""

pqbuilder = FFI()
pqbuilder.cdef(PQ_CDEF)
pqbuilder.set_source(
    "glexec_py._native_pq",
    # libpq's default notice processor writes server notices to stderr: the caller's
    # terminal must see one line from glexec, never "WARNING: ..." from the database.
    "#include <libpq-fe.h>\n"
    "static void gx_pq_drop_notice(void *arg, const char *message) { (void)arg; (void)message; }\n"
    "static void gx_pq_quiet(PGconn *conn) { PQsetNoticeProcessor(conn, gx_pq_drop_notice, NULL); }\n",
    include_dirs=["/usr/include/postgresql"],
    libraries=["pq"],
    extra_compile_args=CFLAGS,
    extra_link_args=LDFLAGS,
)


def build() -> str:
    tmp = os.path.join(ROOT, "build", "native")
    os.makedirs(tmp, exist_ok=True)
    if os.path.exists("/usr/include/postgresql/libpq-fe.h"):
        _install(pqbuilder.compile(tmpdir=os.path.join(tmp, "pq"), verbose=False))
    return _install(ffibuilder.compile(tmpdir=tmp, verbose=False))


def _install(built) -> str:
    dest = os.path.join(HERE, os.path.basename(built))
    if os.path.abspath(built) != dest:
        shutil.copyfile(built, dest + ".tmp")
        os.chmod(dest + ".tmp", 0o644)
        os.replace(dest + ".tmp", dest)
    return dest


if __name__ == "__main__":
    os.chdir(ROOT)
    print(build(), file=sys.stderr)
