#!/usr/bin/python3.11
"""VOMS proxy verification: glexec-py vs the real LCMAPS, same proxy, same CA dir and vomsdir,
same run (issue 3, items 3 and 8).

    sudo /usr/bin/python3.11 bench/voms.py [--runs 50] [--keep]

A fresh TestPKI, a VOMS host certificate, a VOMS proxy with 2 FQANs (voms-proxy-fake) and a
plain RFC proxy; a root-owned vomsdir under ``--base-dir`` (default /var/lib/glexec-py-tests, bench/benchsite.py)/voms-bench-*.
glexec-py: ``--runs`` fresh ``/usr/bin/python3.11 -I -S`` processes, each timing in-process
(perf_counter) the import of the native module and of the VOMS modules, verify_chain +
interpret, and check_voms (the marginal VOMS cost the engine pays after verify_chain).
LCMAPS: tests/voms/lcmaps_pem_harness.c, pem mode, policy ``verifyproxy -> localaccount``
(verify-proxy plus the LCMAPS core's VOMS parsing), init+run+term timed inside a fresh
harness process, ``--runs`` times for the VOMS proxy and for the plain proxy (their
difference = LCMAPS's VOMS cost); also ``--runs`` iterations inside one process (later
iterations are slower). Both sides also timed as whole processes from here (fork+exec+exit). Medians are printed
with the ratios glexec-py / LCMAPS.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import benchsite               # noqa: E402
from tests.support.pki import TestPKI     # noqa: E402

VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
CA_DN = "/DC=test/DC=glexec-py/CN=glexec-py Test CA"

CHILD = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, %(repo)r)
sys.path.append("/usr/lib/python3/dist-packages")   # as the engine does after its trust check
from glexec_py.effects import native
from glexec_py.core import proxychain
t1 = time.perf_counter()
from glexec_py.effects import vomsdir
t2 = time.perf_counter()
pem = open(%(proxy)r, "rb").read()
now = int(time.time())
r = native.verify_chain(pem, %(ca)r, now)
ident = proxychain.interpret(r)
t3 = time.perf_counter()
res = vomsdir.check_voms([c.der for c in r.chain], ident.depth, %(ca)r, %(vomsdir)r, now)
t4 = time.perf_counter()
assert res.fqans and not res.errors, res
assert "cryptography" not in sys.modules, "cryptography imported on the hot path"
print(t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)
"""


def med(xs):
    return statistics.median(xs) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--keep", action="store_true")
    benchsite.add_base_dir(ap)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (root-owned vomsdir)")
    top = benchsite.scratch_dir(a, "voms-bench")
    try:
        run(Path(top), a.runs)
    finally:
        if not a.keep:
            shutil.rmtree(top, ignore_errors=True)
        else:
            print(f"kept {top}")


def run(top, runs):
    pki = TestPKI(top / "pki")
    alice = pki.user("/DC=test/DC=glexec-py/CN=Alice")
    host = pki.user(VOMS_DN)
    vomsdir = top / "vomsdir"
    (vomsdir / "testvo").mkdir(parents=True, mode=0o755)
    os.chmod(vomsdir, 0o755)
    (vomsdir / "testvo" / "voms.example.org.lsc").write_text(f"{VOMS_DN}\n{CA_DN}\n")
    proxy = top / "proxy_voms.pem"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(top), "RANDFILE": str(top / ".rnd")}
    subprocess.run(["voms-proxy-fake", "-q", "-cert", str(alice.cert), "-key", str(alice.key),
                    "-certdir", str(pki.ca_dir), "-hostcert", str(host.cert), "-hostkey", str(host.key),
                    "-voms", "testvo", "-uri", "voms.example.org:15000",
                    "-fqan", "/testvo/Role=NULL/Capability=NULL",
                    "-fqan", "/testvo/prod/Role=pilot/Capability=NULL", "-rfc", "-out", str(proxy)],
                   check=True, capture_output=True, env=env)
    plain = pki.proxy(alice, top / "proxy_rfc.pem")

    # --- glexec-py ---
    code = CHILD % {"repo": REPO, "proxy": str(proxy), "ca": str(pki.ca_dir), "vomsdir": str(vomsdir)}
    cols = [[] for _ in range(5)]
    walls = []
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-c", code],
                           capture_output=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
        walls.append(time.perf_counter() - t)
        if p.returncode != 0:
            sys.exit("glexec-py child failed:\n" + p.stderr.decode(errors="replace"))
        for c, v in zip(cols, p.stdout.split()):
            c.append(float(v))
    imp_native, imp_voms, chain, vcheck, total = (med(c) for c in cols)

    # --- LCMAPS ---
    lc = top / "lcmaps"
    lc.mkdir()
    harness = lc / "harness"
    subprocess.run(["gcc", "-O2", "-o", str(harness), os.path.join(REPO, "tests/voms/lcmaps_pem_harness.c"),
                    "-llcmaps"], check=True)
    (lc / "grid-mapfile").write_text('"/DC=test/DC=glexec-py/CN=Alice" nobody\n')
    (lc / "lcmaps.db").write_text(
        "path = /usr/lib/lcmaps\n"
        f'verifyproxy = "lcmaps_verify_proxy.mod" "-certdir {pki.ca_dir}"\n'
        f'localaccount = "lcmaps_localaccount.mod -gridmapfile {lc}/grid-mapfile"\n'
        "voms:\nverifyproxy -> localaccount\n")
    lenv = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": str(lc), "LCMAPS_DB_FILE": "lcmaps.db",
            "LCMAPS_LOG_FILE": str(lc / "lcmaps.log"), "LCMAPS_DEBUG_LEVEL": "0",
            "X509_CERT_DIR": str(pki.ca_dir), "X509_VOMS_DIR": str(vomsdir)}

    def lcmaps_us(p):
        out = subprocess.run([str(harness), "pem", str(p), "-n", str(runs)], env=lenv,
                             capture_output=True, check=True).stdout.decode()
        return [int(line.rsplit("us=", 1)[1]) / 1e6 for line in out.splitlines() if line.startswith("OK ")]

    def fresh(p):
        """(in-process us of init+run+term, wall of fork+exec+exit) per fresh harness process."""
        us, walls = [], []
        for _ in range(runs):
            t = time.perf_counter()
            out = subprocess.run([str(harness), "pem", str(p)], env=lenv, capture_output=True,
                                 check=True).stdout.decode()
            walls.append(time.perf_counter() - t)
            us.append(int(out.rsplit("us=", 1)[1]) / 1e6)
        return us, walls

    lc_voms, lc_walls = fresh(proxy)
    lc_plain, _ = fresh(plain)
    lc_loop = lcmaps_us(proxy)
    if len(lc_loop) != runs:
        sys.exit("LCMAPS harness failed")
    lv, lp, lw, gw, ll = med(lc_voms), med(lc_plain), med(lc_walls), med(walls), med(lc_loop)

    print(f"runs: {runs} (medians, ms)")
    print("glexec-py, in a fresh /usr/bin/python3.11 -I -S process:")
    print(f"  import native+proxychain      {imp_native:8.2f}")
    print(f"  import VOMS modules           {imp_voms:8.2f}")
    print(f"  verify_chain + interpret      {chain:8.2f}")
    print(f"  check_voms (parse + verify)   {vcheck:8.2f}")
    print(f"  total in-process              {total:8.2f}")
    print(f"  whole process (fork+exec)     {gw:8.2f}")
    print("LCMAPS (harness, pem mode, init+run+term in a fresh process):")
    print(f"  VOMS proxy                    {lv:8.2f}")
    print(f"  (VOMS proxy, {runs} runs in one process {ll:8.2f})")
    print(f"  plain RFC proxy               {lp:8.2f}")
    print(f"  VOMS cost (difference)        {lv - lp:8.2f}")
    print(f"  whole process (fork+exec)     {lw:8.2f}")
    print("ratios glexec-py / LCMAPS (target <= 0.5):")
    print(f"  in-process, chain + VOMS      {total / lv:8.3f}")
    print(f"  VOMS step only (import+check vs LCMAPS VOMS cost) "
          f"{(imp_voms + vcheck) / max(lv - lp, 1e-9):8.3f}")
    print(f"  whole fresh process           {gw / lw:8.3f}")


if __name__ == "__main__":
    main()
