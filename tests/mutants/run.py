"""Mutation check of the security checks listed in tests/mutants/mutants.py (``make mutants``).

For every entry: copy the tree (never the working tree: ``git ls-files`` into
/var/lib/glexec-py-tests/mutants-*/), apply the entry's edits, rebuild when C changed, run
only the entry's ``kill`` tests there, and report killed / survived with times. First the
same tests run on an unmutated copy (the baseline): a test that fails without a mutation
kills nothing.

    /usr/bin/python3 tests/mutants/run.py [--budget S] [--jobs N] [--keep] [ID ...]

Exit 1 if any mutant survived, any edit's source text is not found exactly once (the list
must not rot silently), the baseline fails, a run errs instead of failing a test, or the
time budget ran out before every mutant ran. Root only: the privileged kill tests install
the mutant's copy into a test prefix and take the machine-wide test session lock, so they
run one after another (one worker); in-process tests run on the other workers.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK_BASE = Path("/var/lib/glexec-py-tests")
PYTHON = "/usr/bin/python3"
# Kill tests under these take the session lock (or a private Slurm): one at a time.
SERIAL = ("tests/privileged/", "tests/batch/", "tests/lifecycle/", "tests/shim/", "tests/prune/",
          "tests/sweep/", "tests/backmap/")


def load(root=ROOT):
    sys.path.insert(0, str(root))
    try:
        from tests.mutants.mutants import MUTANTS
    finally:
        sys.path.pop(0)
    return MUTANTS


def problems(mutants, root=ROOT):
    """Everything wrong with the list itself (each a line); [] when usable."""
    out, seen = [], set()
    for m in mutants:
        mid = m.get("id")
        if not mid or mid in seen:
            out.append(f"{mid!r}: missing or duplicate id")
        seen.add(mid)
        if not m.get("kill") or not m.get("edits") or not m.get("check"):
            out.append(f"{mid}: needs check, edits and kill")
        texts = {}
        for file, find, replace in m.get("edits", ()):
            path = root / file
            if file not in texts:
                try:
                    texts[file] = path.read_text(encoding="utf-8")
                except OSError as e:
                    out.append(f"{mid}: {file}: {e.strerror}")
                    continue
            n = texts[file].count(find)
            if n != 1:
                out.append(f"{mid}: {file}: source text found {n} times (want exactly 1): {find!r}")
            elif find == replace:
                out.append(f"{mid}: {file}: the replacement changes nothing")
            else:
                texts[file] = texts[file].replace(find, replace, 1)
        for k in m.get("kill", ()):
            if not (root / k.split("::")[0]).exists():
                out.append(f"{mid}: kill test file not found: {k}")
    return out


def tree_files(root):
    """The files of the checkout as git sees them (tracked + untracked, not ignored)."""
    try:
        raw = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
                             check=True, capture_output=True).stdout
        return [f for f in raw.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "build", "__pycache__", ".hypothesis", ".pytest_cache"}
        out = []
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x not in skip]
            out += [os.path.relpath(os.path.join(d, f), root) for f in files
                    if not f.endswith((".so", ".o", ".pyc"))]
        return out


def copy_tree(src, dest, files=None):
    dest.mkdir(mode=0o755)
    if files is None:
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
        return
    for f in files:
        s, d = src / f, dest / f
        if not os.path.lexists(s):
            continue                      # deleted in the working tree, not yet in git
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            os.symlink(os.readlink(s), d)
        else:
            shutil.copy2(s, d)


def apply(tree, m):
    for file, find, replace in m["edits"]:
        p = tree / file
        text = p.read_text(encoding="utf-8")
        if text.count(find) != 1:
            raise RuntimeError(f"{m['id']}: {file}: source text not found exactly once")
        p.write_text(text.replace(find, replace, 1), encoding="utf-8")


def build(tree, timeout):
    p = subprocess.run(["make", "-C", str(tree), "build"], capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"make build failed in {tree}:\n{(p.stdout + p.stderr)[-3000:]}")


def pytest(tree, nodeids, timeout, tag):
    """(passed, failed tests, errored, skipped, seconds, output tail)."""
    junit = tree / f".junit-{tag}.xml"
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)       # a skip must stay a skip here (= not killed), never turn into a failure
    t0 = time.monotonic()
    try:
        p = subprocess.run([PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", "-rs",
                            f"--junitxml={junit}", *nodeids], cwd=tree, env=env, capture_output=True,
                           text=True, timeout=timeout)
        tail, rc = (p.stdout + p.stderr)[-2500:], p.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        tail, rc = (out.decode(errors="replace") if isinstance(out, bytes) else out)[-2500:], None
    took = time.monotonic() - t0
    failed, errors, skipped, passed = [], 0, 0, 0
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            name = f"{case.get('classname')}::{case.get('name')}"
            if case.find("failure") is not None:
                failed.append(name)
            elif case.find("error") is not None:
                errors += 1
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    if rc is None:
        errors += 1
        tail = f"timed out after {timeout:.0f} s\n" + tail
    elif rc not in (0, 1) or not junit.exists():
        errors += 1                       # usage error, unknown node id, collection error
    return passed, failed, errors, skipped, took, tail


class Runner:
    def __init__(self, args, mutants):
        self.args, self.mutants = args, mutants
        self.t0 = time.monotonic()
        self.results = {}
        self.lock = threading.Lock()

    def remaining(self):
        return self.args.budget - (time.monotonic() - self.t0) if self.args.budget else 3600.0

    def say(self, line):
        with self.lock:
            print(line, flush=True)

    def run_one(self, m):
        mid = m["id"]
        if self.remaining() < 5:
            self.results[mid] = ("not run", 0.0, "time budget exhausted")
            self.say(f"NOT RUN   {mid}: time budget exhausted")
            return
        t0 = time.monotonic()
        tree = self.work / f"m-{mid}"
        try:
            copy_tree(self.base, tree)
            apply(tree, m)
            if any(f.startswith("csrc/") for f, _, _ in m["edits"]):
                build(tree, min(300, self.remaining()))
            passed, failed, errors, skipped, _, tail = pytest(tree, m["kill"], self.remaining(), mid)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            passed, failed, errors, skipped, tail = 0, [], 1, 0, str(e)
        took = time.monotonic() - t0
        if failed:
            status, detail = "killed", "by " + failed[0]
        elif errors:
            status, detail = "error", "a kill test errored instead of failing:\n" + tail
        else:
            status, detail = "SURVIVED", (f"{passed} passed, {skipped} skipped:\n" + tail)
        self.results[mid] = (status, took, detail)
        first, _, rest = detail.partition("\n")
        self.say(f"{status.upper():9} {took:6.1f}s {mid}: {first}"
                 + ("\n    " + rest.rstrip().replace("\n", "\n    ") if rest.strip() else ""))
        if not self.args.keep:
            shutil.rmtree(tree, ignore_errors=True)

    def baseline(self):
        ids = sorted({k for m in self.mutants for k in m["kill"]})
        tree = self.work / "baseline"
        copy_tree(self.base, tree)
        passed, failed, errors, skipped, took, tail = pytest(tree, ids, self.remaining(), "baseline")
        ok = not failed and not errors and not skipped and passed > 0
        self.say(f"{'BASELINE' if ok else 'BASELINE FAILED'} {took:6.1f}s: {passed} passed, "
                 f"{len(failed)} failed, {errors} errors, {skipped} skipped (unmutated copy)")
        if not ok:
            self.say("    " + tail.replace("\n", "\n    "))
        self.baseline_ok = ok
        if not self.args.keep:
            shutil.rmtree(tree, ignore_errors=True)

    def go(self):
        WORK_BASE.mkdir(mode=0o755, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix="mutants-", dir=WORK_BASE))
        os.chmod(self.work, 0o755)
        try:
            self.base = self.work / "base"
            copy_tree(ROOT, self.base, tree_files(ROOT))
            build(self.base, 300)
            serial = [m for m in self.mutants if any(k.startswith(SERIAL) for k in m["kill"])]
            local = [m for m in self.mutants if m not in serial]
            self.baseline_ok = True

            def serial_worker():
                if not self.args.no_baseline:
                    self.baseline()
                for m in serial:
                    self.run_one(m)

            queue = list(local)

            def local_worker():
                while True:
                    with self.lock:
                        if not queue:
                            return
                        m = queue.pop(0)
                    self.run_one(m)

            threads = [threading.Thread(target=serial_worker)]
            threads += [threading.Thread(target=local_worker) for _ in range(max(1, self.args.jobs - 1))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            if not self.args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                print(f"copies kept in {self.work}")
        counts = {}
        for status, _, _ in self.results.values():
            counts[status] = counts.get(status, 0) + 1
        total = time.monotonic() - self.t0
        print(f"mutants: {len(self.mutants)} listed, " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
              + f"; {total:.0f} s" + ("" if self.baseline_ok else "; BASELINE FAILED"))
        return self.baseline_ok and counts.get("killed", 0) == len(self.mutants)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ids", nargs="*", help="run only these mutant ids")
    ap.add_argument("--budget", type=float, default=0, help="seconds for the whole run (0 = unbounded)")
    ap.add_argument("--jobs", type=int, default=2, help="workers (one of them runs the privileged tests)")
    ap.add_argument("--keep", action="store_true", help="keep the copies (to debug a survivor)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the kill tests")
    ap.add_argument("--check", action="store_true", help="only check the list against the source, run nothing")
    ap.add_argument("--if-root", action="store_true",
                    help="as non-root outside CI: say so and exit 0 (make test, like the privileged tests)")
    args = ap.parse_args(argv)
    mutants = load()
    bad = problems(mutants)
    if args.ids:
        unknown = set(args.ids) - {m["id"] for m in mutants}
        bad += [f"unknown mutant id {u!r}" for u in sorted(unknown)]
        mutants = [m for m in mutants if m["id"] in args.ids]
    if bad:
        print("mutant list does not match the source:\n  " + "\n  ".join(bad), file=sys.stderr)
        return 1
    if args.check:
        print(f"{len(mutants)} mutants: every edit's source text found exactly once")
        return 0
    if os.geteuid() != 0:
        if args.if_root and os.environ.get("CI") != "true":
            print("mutation check not run: needs root (as the privileged tests, which were skipped too)",
                  file=sys.stderr)
            return 0
        print("make mutants: must run as root (the privileged kill tests install the mutated copy)",
              file=sys.stderr)
        return 1
    return 0 if Runner(args, mutants).go() else 1


if __name__ == "__main__":
    sys.exit(main())
