#!/usr/bin/python3
"""The main job, end to end, on real parts (run as root: `make demo`).

A pilot account holds a user's grid proxy (made by grid-proxy-init from a user certificate of
a test CA); it calls the really installed setuid glexec, which verifies the proxy, maps its
DN through the gridmapfile to a local account and runs the payload as that account in the
pilot's own session. Shown: the pilot's and the payload's `id`, and the audit records.
Everything made here (accounts gxt*, a prefix in /var/lib/glexec-py-tests) is removed at the end.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402
from tests.support.runas import read_audit, run_as  # noqa: E402

USER_DN = "/DC=test/DC=glexec-py/CN=Demo Payload User"


def step(text):
    print(f"\n== {text}", flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("demo: run as root (it installs a setuid binary and creates accounts)")
    with acc.session_lock():
        inst.cleanup_leftover_prefixes()
        accounts = acc.TestAccounts.create_standard()
        prefix = pki_dir = None
        try:
            step("install the setuid shim and the engine into a throw-away prefix")
            prefix = inst.install_prefix()
            glexec = inst.glexec_path(prefix)
            st = glexec.stat()
            print(f"{glexec}  owner uid {st.st_uid}  mode {st.st_mode & 0o7777:04o}")

            step("a test CA, a user certificate, and a proxy made by grid-proxy-init")
            pki_dir = inst.make_run_dir("pki")
            pki = TestPKI(pki_dir)
            user = pki.user(USER_DN)
            work = inst.make_run_dir("run")
            os.chown(work, accounts.pilot.uid, accounts.pilot.gid)
            os.chmod(work, 0o755)
            proxy = pki.proxy(user, work / "x509up_payload")
            os.chown(proxy, accounts.pilot.uid, accounts.pilot.gid)
            os.chmod(proxy, 0o600)
            print(subprocess.run(["openssl", "x509", "-in", str(proxy), "-noout", "-subject", "-issuer"],
                                 capture_output=True, text=True).stdout.rstrip())

            step("site policy: pilot gxtpilot may call glexec; the user's DN maps to gxttarget1")
            inst.install_trust_dir(prefix, pki)
            inst.write_gridmap(prefix, [(USER_DN, "gxttarget1")])
            inst.write_config(prefix)
            print(inst.gridmap_path(prefix).read_text().rstrip())

            step("the pilot (gxtpilot) runs:  glexec /usr/bin/id")
            env = {"GLEXEC_CLIENT_CERT": str(proxy), "GLEXEC_TARGET_PROXY": "/dev/null"}
            pilot_id = run_as("gxtpilot", ["/usr/bin/id"], cwd=str(work))
            print(f"pilot:   {pilot_id.stdout.decode().rstrip()}")
            res = run_as("gxtpilot", [str(glexec), "/usr/bin/id"], env=env, cwd=str(work))
            print(f"payload: {res.stdout.decode().rstrip()}")
            print(f"glexec exit status {res.returncode}; stderr {res.stderr!r} (silent on success)")
            if res.returncode != 0:
                sys.exit(f"demo: glexec failed: {res.stderr.decode(errors='replace')}")

            step("the audit records of that call (JSON lines, fsync'ed before the payload started)")
            records = read_audit(prefix)
            for rec in records:
                print(json.dumps(rec, indent=1))

            grant = next(r for r in records if r["event"] == "grant")
            step(f"incident response: who was uid {grant['uid']} at {grant['time']}?")
            backmap = [str(prefix / "sbin" / "glexec-backmap"), "--config", str(inst.config_path(prefix)),
                       "--uid", str(grant["uid"]), "--at", grant["time"]]
            print("$ " + " ".join(backmap[:1] + ["--uid", str(grant["uid"]), "--at", grant["time"]]))
            answer = subprocess.run(backmap, capture_output=True, text=True)
            print(answer.stdout.rstrip() or answer.stderr.rstrip())
            if answer.returncode != 0:
                sys.exit(f"demo: glexec-backmap did not know the answer ({answer.returncode})")

            step("an outsider may not use glexec")
            res = run_as("gxtoutsider", [str(glexec), "/usr/bin/id"], env=env, cwd="/")
            print(f"exit status {res.returncode}; stderr {res.stderr.decode().rstrip()!r}")
        finally:
            step("clean up")
            if prefix:
                inst.remove_prefix(prefix)
            for d in (pki_dir,):
                if d:
                    shutil.rmtree(d, ignore_errors=True)
            inst.cleanup_leftover_prefixes()
            accounts.remove()
            print("removed the test accounts and the prefix")


if __name__ == "__main__":
    main()
