"""Shared helpers for the atheris targets in fuzz/ (not a target itself).

Every target is started as ``python fuzz/fuzz_X.py [libFuzzer flags] CORPUS_DIR...``
(see fuzz/README.md).  The first positional argument is the target's corpus directory;
``seed`` writes the target's seed inputs there when it is empty."""
import hashlib
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (REPO, os.path.join(REPO, "tools")):   # glexec_py; the site tools' glexec_tools
    if _p not in sys.path:
        sys.path.insert(0, _p)

BASE = os.environ.get("GLEXEC_FUZZ_BASE", "/var/lib/glexec-py-tests")
WORK = os.path.join(BASE, "fuzz-work")          # long-lived PKI/keys the seeds refer to


def corpus_dir(argv):
    """The first positional (non ``-flag``) argument, or None."""
    for a in argv[1:]:
        if not a.startswith("-"):
            return a
    return None


def work_dir(name):
    d = os.path.join(WORK, name)
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def seed(argv, make_seeds):
    """Write ``make_seeds()`` (iterable of bytes) into the corpus dir if it has no files."""
    d = corpus_dir(argv)
    if d is None or os.path.isfile(d):     # no corpus, or replaying saved inputs
        return
    os.makedirs(d, exist_ok=True)
    if any(os.scandir(d)):
        return
    for blob in make_seeds():
        with open(os.path.join(d, "seed-" + hashlib.sha1(blob).hexdigest()), "wb") as f:
            f.write(blob)


def is_replay(argv):
    """True when libFuzzer only re-runs given files (reproducing a finding)."""
    return any(os.path.isfile(a) for a in argv[1:] if not a.startswith("-"))


class OracleViolation(AssertionError):
    """An oracle beyond "no crash" failed: a real bug (libFuzzer saves the input)."""


def check(cond, msg):
    if not cond:
        raise OracleViolation(msg)


def only(exc_types, fn, *args, **kw):
    """Call fn; return (True, result) or (False, exception) if it raised one of
    ``exc_types``.  Any other exception escapes (a finding)."""
    try:
        return True, fn(*args, **kw)
    except exc_types as e:
        return False, e
