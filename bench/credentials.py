#!/usr/bin/python3.11
"""verify + authorize per credential kind, in-process and in service mode: glexec-py vs the
real LCMAPS, same run (issue 12: in service mode <= 1.0x LCMAPS for an RFC proxy, <= 0.5x for
VOMS).

    sudo /usr/bin/python3.11 bench/credentials.py [--runs 30] [--keep]

Set-up (root-owned, under ``--base-dir``/cred-bench-*, default /var/lib/glexec-py-tests: bench/benchsite.py): a fresh TestPKI, Alice's
RFC proxy (grid-proxy-init), her VOMS proxy with 2 FQANs (voms-proxy-fake), a WLCG token
(RS256, PyJWT, ``wlcg.groups``) with the issuer's JWKS in a root-owned key file, one
gridmapfile (Alice's DN, ``"/testvo/*"`` and the token's ``iss,sub`` -> nobody) and a vomsdir.

glexec-py: ``/usr/bin/python3.11 -I -S -B -c CHILD`` per run, as the shim starts the
engine, on a copy of ``glexec_py`` byte-compiled as ``make install`` does (unchecked-hash
pycs): the child imports ``glexec_py.engine`` (what every call loads), appends Debian's
dist-packages (as the engine does after its trust checks), then imports only the modules the
engine imports for that credential kind and does what the engine does:

* rfc:   native.verify_chain + proxychain.interpret, gridmapfile parse + ``local`` lookup of
         the DN (core.identity.oneline_bytes), getpwnam of the account;
* rfc-ns: the same + engine.check_namespaces (the CA's IGTF-style ``.namespaces`` read and
         matched), to show what the namespace check costs next to plain ``rfc``;
* voms:  the same + vomsdir.check_voms (lcmaps mode), ``voms_local`` lookup of the FQANs;
* token: TokenPolicy + effects.tokenkeys.KeyStore (root-owned key file read and parsed) +
         core.tokens.verify_token with the native (libcrypto) verifier, ``local`` lookup of
         ``iss,sub``, getpwnam (tokens are not wired as docs/tokens.md describes).

No kind may import ``cryptography`` or PyJWT (the child asserts it).

service mode (rows ``service <kind>``): the engine service's shape, one ``WARM`` parent
started once with every module above imported and libcrypto set up (``native.crypto_warm``,
as the service's parent does); per request it
forks a child that does the same ``work`` and exits, and answers once the child is reaped.
The wall is the bench's request..answer round trip over a pipe.

LCMAPS: tests/voms/lcmaps_pem_harness.c (compiled from its path), one fork+exec per run:
policy ``rfc: verifyproxy -> localaccount`` for the RFC proxy, policy
``voms: verifyproxy -> vomslocalaccount`` for the VOMS proxy (LCMAPS has no token support).

All variants are run round-robin (one of each per round, so background load hits all of
them alike), ``--runs`` rounds; medians of the wall clock from fork to exit are compared.
Also printed: the interpreter start-up alone (``python3.11 -I -S -B -c pass``) and the time
measured inside the processes (perf_counter in the child; init+run+term in the harness).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
if "/usr/lib/python3/dist-packages" not in sys.path:
    sys.path.append("/usr/lib/python3/dist-packages")

from bench import benchsite               # noqa: E402
from tests.support.pki import TestPKI     # noqa: E402

PY = "/usr/bin/python3.11"
CA_DN = "/DC=test/DC=glexec-py/CN=glexec-py Test CA"
ALICE = "/DC=test/DC=glexec-py/CN=Alice"
VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
ISS = "https://wlcg.example.org/"
SUB = "b4c1-0c5e-4d2f"
AUD = "https://ce.example.org"
HARNESS_SRC = os.path.join(REPO, "tests", "voms", "lcmaps_pem_harness.c")

# What the engine does per credential kind once its modules are imported (both modes).
WORK = r"""
def work(kind, cred, ca, vd, gm, keyfile):
    if kind == "token":
        pol = tokens.TokenPolicy({"issuers": [{"issuer": %(iss)r, "audiences": [%(aud)r],
                                               "keys": [keyfile], "profile": "wlcg"}]})
        with open(cred, "rb") as f:
            raw = f.read()
        ident = tokens.verify_token(raw, pol, tokenkeys.KeyStore(pol), time.time(), verify=native.verify_jws)
        keys, wildcards = [ident.mapping_name.encode()], False
    else:
        with open(cred, "rb") as f:
            pem = f.read()
        now = int(time.time())
        r = native.verify_chain(pem, ca, now)
        ident = proxychain.interpret(r)
        if kind == "rfc-ns":
            from types import SimpleNamespace as NS
            creds = NS(namespace_policy="require", ca_dir=ca)
            engine.check_namespaces(NS(chain=r.chain), NS(credentials=creds), ident)
        if kind == "voms":
            res = vomsdir.check_voms([c.der for c in r.chain], ident.depth, ca, vd, now, mode="lcmaps")
            assert res.fqans and not res.errors, res.errors
            keys, wildcards = [q.encode() for q in res.fqans], True
        else:
            keys, wildcards = [oneline_bytes(ident.subject)], False
    with open(gm, "rb") as f:
        lines = gridmap.parse_gridmap(f.read(), gm)
    account = next(a for a in (gridmap.local_account(lines, k, wildcards=wildcards) for k in keys) if a)
    return pwd.getpwnam(account.decode()).pw_name
""" % {"iss": ISS, "aud": AUD}

PRELUDE = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
from glexec_py import engine
sys.path.append("/usr/lib/python3/dist-packages")
import pwd
from glexec_py.core import gridmap
from glexec_py.core.identity import oneline_bytes
"""
IMPORTS = {"token": "from glexec_py.core import tokens\nfrom glexec_py.effects import native, tokenkeys\n",
           "x509": "from glexec_py.core import proxychain\nfrom glexec_py.effects import native\n",
           "voms": "from glexec_py.effects import vomsdir\n"}
NO_CRYPTOGRAPHY = r"""
assert not [m for m in sys.modules if m.split(".")[0] in ("cryptography", "jwt")], "cryptography/PyJWT on the hot path"
"""


def child_code(kind):
    """In-process: a fresh interpreter per run, as the shim starts the engine, importing only
    the modules the engine imports for that kind.  argv: lib kind credential ca_dir vomsdir
    gridmapfile keyfile."""
    imports = {"token": IMPORTS["token"], "voms": IMPORTS["x509"] + IMPORTS["voms"]}.get(kind, IMPORTS["x509"])
    return PRELUDE + imports + WORK + r"""
name = work(*sys.argv[2:8])
t1 = time.perf_counter()
""" + NO_CRYPTOGRAPHY + r"""
sys.stdout.write("%.6f %s\n" % (t1 - t0, name))
"""


# service mode: the engine service's shape -- one warm parent with every module imported and
# libcrypto loaded, a child forked per request that does the work and exits.  Requests on
# stdin ("kind credential"), one answer line per request once the child has been reaped.
# argv: lib ca_dir vomsdir gridmapfile keyfile
WARM = PRELUDE + "".join(IMPORTS.values()) + WORK + NO_CRYPTOGRAPHY + r"""
import os
native.crypto_warm()          # as the service's parent does before it forks
ca, vd, gm, keyfile = sys.argv[2:6]
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    kind, cred = line.decode().split()
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, work(kind, cred, ca, vd, gm, keyfile).encode())
        os._exit(0)
    os.close(w)
    name = os.read(r, 256).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    t1 = time.perf_counter()
    assert status == 0, status
    out.write(b"%.6f %s\n" % (t1 - t0, name.encode()))
    out.flush()
"""


def med_ms(xs):
    return statistics.median(xs) * 1000


def spawn(argv, env=None):
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, env=env)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{argv[:4]}... failed ({p.returncode}):\n{p.stdout.decode()}{p.stderr.decode()[-2000:]}")
    return dt, p.stdout.decode()


def setup(top):
    pki = TestPKI(top / "pki", ca_dn=CA_DN)
    pki.set_namespace(permit=("/DC=test/DC=glexec-py/.*",), globs=("/DC=test/DC=glexec-py/*",))
    alice = pki.user(ALICE)
    host = pki.user(VOMS_DN)
    vomsdir = top / "vomsdir"
    (vomsdir / "testvo").mkdir(parents=True, mode=0o755)
    os.chmod(vomsdir, 0o755)
    (vomsdir / "testvo" / "voms.example.org.lsc").write_text(f"{VOMS_DN}\n{CA_DN}\n")
    rfc = pki.proxy(alice, top / "proxy_rfc.pem")
    voms = top / "proxy_voms.pem"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(top), "RANDFILE": str(top / ".rnd")}
    subprocess.run(["voms-proxy-fake", "-q", "-cert", str(alice.cert), "-key", str(alice.key),
                    "-certdir", str(pki.ca_dir), "-hostcert", str(host.cert), "-hostkey", str(host.key),
                    "-voms", "testvo", "-uri", "voms.example.org:15000",
                    "-fqan", "/testvo/Role=NULL/Capability=NULL",
                    "-fqan", "/testvo/prod/Role=pilot/Capability=NULL", "-rfc", "-out", str(voms)],
                   check=True, capture_output=True, env=env)
    # WLCG token, RS256, JWKS key file (root-owned, 0644, in a root-owned directory chain)
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    key = rsa.generate_private_key(65537, 2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="rsa1", use="sig")
    keydir = top / "tokenkeys"
    keydir.mkdir(mode=0o755)
    keyfile = keydir / "wlcg.jwks"
    keyfile.write_text(json.dumps({"keys": [jwk]}))
    os.chmod(keyfile, 0o644)
    now = int(time.time())
    token = top / "token.jwt"
    token.write_bytes(jwt.encode({"iss": ISS, "sub": SUB, "aud": AUD, "exp": now + 3 * 3600, "iat": now,
                                  "nbf": now, "jti": "bench-1", "wlcg.ver": "1.0", "scope": "compute.create",
                                  "wlcg.groups": ["/testvo/prod", "/testvo"]},
                                 key, algorithm="RS256", headers={"kid": "rsa1", "typ": "at+jwt"}).encode())
    gridmapfile = top / "grid-mapfile"
    gridmapfile.write_text(f'"{ALICE}" nobody\n"/testvo/*" nobody\n"{ISS},{SUB}" nobody\n')
    os.chmod(gridmapfile, 0o644)
    # the real LCMAPS
    lc = top / "lcmaps"
    lc.mkdir(mode=0o755)
    harness = lc / "harness"
    subprocess.run(["gcc", "-O2", "-o", str(harness), HARNESS_SRC, "-llcmaps"], check=True)
    (lc / "lcmaps.db").write_text(
        "path = /usr/lib/lcmaps\n"
        f'verifyproxy = "lcmaps_verify_proxy.mod" "-certdir {pki.ca_dir}"\n'
        f'localaccount = "lcmaps_localaccount.mod -gridmapfile {gridmapfile}"\n'
        f'vomslocalaccount = "lcmaps_voms_localaccount.mod -gridmapfile {gridmapfile}"\n'
        "rfc:\nverifyproxy -> localaccount\n"
        "voms:\nverifyproxy -> vomslocalaccount\n")
    lenv = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": str(lc), "LCMAPS_DB_FILE": "lcmaps.db",
            "LCMAPS_LOG_FILE": str(lc / "lcmaps.log"), "LCMAPS_DEBUG_LEVEL": "0",
            "X509_CERT_DIR": str(pki.ca_dir), "X509_VOMS_DIR": str(vomsdir)}
    # the engine as `make install` lays it out: a copy of the package with unchecked-hash
    # pycs (the checkout's __pycache__ may be stale, and -B never writes new ones)
    lib = top / "lib"
    shutil.copytree(os.path.join(REPO, "glexec_py"), lib / "glexec_py",
                    ignore=shutil.ignore_patterns("__pycache__", "tests"))
    subprocess.run([PY, "-I", "-S", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                    str(lib)], check=True)
    common = [str(pki.ca_dir), str(vomsdir), str(gridmapfile), str(keyfile)]
    py_env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    creds = {"rfc": rfc, "rfc-ns": rfc, "voms": voms, "token": token}
    warm = Warm([PY, "-I", "-S", "-B", "-c", WARM, str(lib), *common], py_env)
    variants = {"interpreter (-c pass)": (Spawn([PY, "-I", "-S", "-B", "-c", "pass"], py_env), None)}
    for kind, cred in creds.items():
        variants[f"glexec-py {kind}"] = (Spawn([PY, "-I", "-S", "-B", "-c", child_code(kind), str(lib), kind,
                                                str(cred), *common], py_env), "py")
    for kind, cred in creds.items():
        variants[f"service {kind}"] = (warm.request(kind, cred), "py")
    variants["LCMAPS rfc"] = (Spawn([str(harness), "pem", str(rfc), "-p", "rfc"], lenv), "lcmaps")
    variants["LCMAPS voms"] = (Spawn([str(harness), "pem", str(voms), "-p", "voms"], lenv), "lcmaps")
    return variants, warm


class Spawn:
    """One fresh process per run: wall from fork to exit, and what it printed."""

    def __init__(self, argv, env):
        self.argv, self.env = argv, env

    def __call__(self):
        return spawn(self.argv, self.env)


class Warm:
    """The WARM parent, started once; each request's wall runs from writing the request to
    reading the answer, which comes after the forked child has been reaped."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def request(self, kind, cred):
        line = f"{kind} {cred}\n".encode()

        def run():
            t = time.perf_counter()
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
            out = self.proc.stdout.readline()
            dt = time.perf_counter() - t
            if not out:
                raise SystemExit(f"the warm parent died ({self.proc.wait()})")
            return dt, out.decode()
        return run

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def inner_seconds(kind, out):
    if kind == "py":
        secs, account = out.split()
        assert account == "nobody", out
        return float(secs)
    if kind == "lcmaps":
        assert out.startswith("OK uid=65534"), out
        return int(out.rsplit("us=", 1)[1]) / 1e6
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--keep", action="store_true")
    benchsite.add_base_dir(ap)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (root-owned vomsdir and key files, LCMAPS)")
    top = Path(benchsite.scratch_dir(a, "cred-bench"))
    warm = None
    try:
        variants, warm = setup(top)
        walls = {n: [] for n in variants}
        inner = {n: [] for n in variants}
        for name, (run, kind) in variants.items():     # warm-up (page cache), not timed
            inner_seconds(kind, run()[1])
        for _ in range(a.runs):
            for name, (run, kind) in variants.items():
                dt, out = run()
                walls[name].append(dt)
                s = inner_seconds(kind, out)
                if s is not None:
                    inner[name].append(s)
        report(walls, inner, a.runs)
    finally:
        if warm is not None:
            warm.close()
        if a.keep:
            print(f"kept {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)


def report(walls, inner, runs):
    w = {n: med_ms(v) for n, v in walls.items()}
    i = {n: med_ms(v) for n, v in inner.items() if v}
    base = w["interpreter (-c pass)"]
    print(f"{runs} rounds round-robin, medians in ms.  in-process: a fresh interpreter per run "
          f"(wall = fork..exit from the parent); service: a request to the warm parent, which forks "
          f"a child for it (wall = request..answer after the child is reaped); inside = perf_counter "
          f"in the child / the forking parent, init+run+term in the LCMAPS harness")
    print(f"  {'python3.11 -I -S -B -c pass':28s} wall {base:7.2f}")
    for n in walls:
        if n.startswith(("glexec-py", "service", "LCMAPS")):
            extra = f"   (+{w[n] - base:6.2f} over interpreter start-up)" if n.startswith("glexec") else ""
            print(f"  {n:28s} wall {w[n]:7.2f}   inside {i[n]:7.2f}{extra}")
    print("ratios / LCMAPS (wall; targets in service mode: rfc <= 1.0, voms <= 0.5):")
    for kind, target in (("rfc", 1.0), ("voms", 0.5)):
        for mode in ("service", "glexec-py"):
            r = w[f"{mode} {kind}"] / w[f"LCMAPS {kind}"]
            ri = i[f"{mode} {kind}"] / i[f"LCMAPS {kind}"]
            verdict = f"({'meets' if r <= target else 'MISSES'} target {target})" if mode == "service" else ""
            label = "service" if mode == "service" else "in-process"
            print(f"  {kind:5s} {label:10s} wall {r:6.3f} {verdict:22s} inside-only {ri:6.3f}")
    print(f"  namespaces check (rfc-ns - rfc): in-process wall {w['glexec-py rfc-ns'] - w['glexec-py rfc']:+.2f} ms, "
          f"service wall {w['service rfc-ns'] - w['service rfc']:+.2f} ms")
    print(f"  token: no LCMAPS counterpart; in-process {w['glexec-py token']:.2f} ms wall, "
          f"service {w['service token']:.2f} ms")


if __name__ == "__main__":
    main()
