"""The adversarial archive corpus (tests/job/corpus.py), unpacked by our inner unpacker AS
THE REAL UNPRIVILEGED ACCOUNT gxtjob1, and in the same test by the failing baselines as the
same account: plain ``tarfile.extractall()`` (no filter; ``zipfile.extractall`` for zip),
``tarfile`` with the ``data`` filter where the python has it, and GNU ``tar -x`` (``unzip`` for zip).

The sentinel tree next to the job directory belongs to gxtjob1 too, so an escape would
really land.  Oracles for ours: the sentinel tree and the dirs around the job dir are
byte-identical afterwards, no device/FIFO/socket, no set-id/sticky bit, no foreign owner,
no symlink resolving outside the job dir, caps respected; a refusal is exit 1 with one line
and leaves the job dir exactly as before that archive.  The baselines' results are recorded
(``GLEXEC_JOB_CORPUS_REPORT``, default /var/tmp/glexec-job-corpus.json) and the last test
asserts the corpus has teeth: the baselines do escape on some cases."""
import json
import os
import stat
import subprocess

import tarfile

import pytest

from tests.job import corpus
from tests.support import job_oracle

pytestmark = pytest.mark.privileged

CASES = corpus.cases()
# Debian 12's python3.11 (3.11.2) has no extraction filters; newer ones get a fourth column
TOOLS = ("ours", "tarfile", "gnu-tar") + (("tarfile-data",) if hasattr(tarfile, "data_filter") else ())
RESULTS = {}
REPORT = os.environ.get("GLEXEC_JOB_CORPUS_REPORT", "/var/tmp/glexec-job-corpus.json")
FSIZE = 256 << 20           # the baselines' file-size limit (a bomb would fill the disk)
_archives = {}


def _archives_of(case, ctx):
    # bombs and other path-independent archives are built once per session
    key = (case.name, ctx.sent_abs) if "sentinel" in repr(case.build.__code__.co_names) else case.name
    if case.name.startswith(("bomb-", "sparse-")):
        key = case.name
    if key not in _archives:
        _archives[key] = case.build(ctx)
    return _archives[key]


def _layout(runner, root):
    """BASE/sentinel/{file,dir/inner}, BASE/w1/w2/job, all gxtjob1's."""
    runner.mkdir(root, 0o755)
    s = runner.mkdir(os.path.join(root, "sentinel"), 0o755)
    runner.mkdir(os.path.join(s, "dir"), 0o755)
    for p, data in ((os.path.join(s, "file"), b"SENTINEL\n"), (os.path.join(s, "dir", "inner"), b"INNER\n")):
        with open(p, "wb") as f:
            f.write(data)
        os.chown(p, runner.account.uid, runner.account.gid)
        os.chmod(p, 0o644)
    w2 = runner.mkdir(os.path.join(runner.mkdir(os.path.join(root, "w1"), 0o755), "w2"), 0o755)
    return runner.mkdir(os.path.join(w2, "job"), 0o700)


def _inspect(job, uid, planted=()):
    """Counts of what must never be inside a job directory (the payload's own ``planted``
    entries aside)."""
    real_job = os.path.realpath(job)
    bad = {"devices": 0, "fifos": 0, "setid": 0, "foreign": 0, "links_out": 0, "bytes": 0}
    for d, dirs, files in os.walk(job):
        for n in dirs + files:
            p = os.path.join(d, n)
            if os.path.relpath(p, job) in planted:
                continue
            st = os.lstat(p)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                bad["devices"] += 1
            if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                bad["fifos"] += 1
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o7000:
                bad["setid"] += 1
            if st.st_uid != uid:
                bad["foreign"] += 1
            if stat.S_ISLNK(st.st_mode):
                r = os.path.realpath(p)
                if r != real_job and not r.startswith(real_job + "/"):
                    bad["links_out"] += 1
            if stat.S_ISREG(st.st_mode):
                bad["bytes"] += st.st_size
    return bad


def _baseline_argv(tool, archive, job, is_zip):
    py_tar = "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2]%s)"
    if tool == "tarfile":
        argv = ([corpus_py(), "-I", "-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])"]
                if is_zip else [corpus_py(), "-I", "-c", py_tar % ""]) + [archive, job]
    elif tool == "tarfile-data":
        if is_zip:
            return None
        argv = [corpus_py(), "-I", "-c", py_tar % ", filter='data'", archive, job]
    else:
        argv = ["unzip", "-q", "-o", archive, "-d", job] if is_zip else ["tar", "-xf", archive, "-C", job]
    return ["prlimit", f"--fsize={FSIZE}", "--"] + argv


def corpus_py():
    return "/usr/bin/python3"


def _run_one(runner, case, root, tool):
    """Unpack the case's archives with ``tool``; returns the result record."""
    job = _layout(runner, root)
    ctx = corpus.Ctx(os.path.join(root, "sentinel"))
    archives = _archives_of(case, ctx)
    if case.plant:
        case.plant(job, ctx)
        for d, dirs, files in os.walk(job):
            for n in dirs + files:
                os.lchown(os.path.join(d, n), runner.account.uid, runner.account.gid)
    planted = set(job_oracle.snapshot(job))
    paths = []
    for i, data in enumerate(archives):
        paths.append(os.path.join(root, f"archive{i}"))
        with open(paths[-1], "wb") as f:
            f.write(data)
        os.chmod(paths[-1], 0o644)
    before = job_oracle.snapshot(root, job)
    rec = {"exit": [], "refused_clean": True, "stderr": ""}
    for path, data in zip(paths, archives):
        job_before = job_oracle.snapshot(job)
        is_zip = data.startswith(b"PK")
        if tool == "ours":
            r = runner.unpack(job, path, *case.caps)
        else:
            argv = _baseline_argv(tool, path, job, is_zip)
            if argv is None:
                rec["exit"].append(None)
                break
            try:
                r = runner.run(argv, timeout=60)
            except subprocess.TimeoutExpired:
                rec["exit"].append("timeout")
                break
        rec["exit"].append(r.returncode)
        rec["stderr"] = r.stderr.decode(errors="replace")
        if r.returncode != 0:
            rec["refused_clean"] = job_oracle.snapshot(job) == job_before
            break
    rec["escaped"] = job_oracle.snapshot(root, job) != before
    rec.update(_inspect(job, runner.account.uid, planted))
    rec["job"] = job
    return rec


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_case(case, runner, job_base):
    results = {}
    for tool in TOOLS:
        results[tool] = _run_one(runner, case, os.path.join(job_base, f"{case.name}-{tool}"), tool)
    RESULTS[case.name] = {t: {k: v for k, v in r.items() if k not in ("job", "stderr")}
                          for t, r in results.items()}
    ours = results["ours"]
    # --- oracles for ours --------------------------------------------------------------
    assert not ours["escaped"], f"{case.name}: something outside the job directory changed"
    for k in ("devices", "fifos", "setid", "foreign", "links_out"):
        assert ours[k] == 0, (case.name, k, ours)
    caps = dict(zip(case.caps[::2], case.caps[1::2]))
    assert ours["bytes"] <= int(caps.get("--max-total-bytes", 16 << 30))
    if case.expect == "refuse":
        assert ours["exit"][-1] == 1, (case.name, ours["exit"], ours["stderr"])
        assert ours["refused_clean"], f"{case.name}: the refused archive left something behind"
        err = ours["stderr"]
        assert err.startswith("glexec-job unpack: refused: ") and err.count("\n") == 1, err
    else:
        assert ours["exit"] == [0] * len(ours["exit"]) and ours["exit"], (case.name, ours)
        if case.check:
            case.check(os.fsencode(ours["job"]))


def test_corpus_report_baselines_fail():
    """After the corpus: the baselines escape or plant what ours never does (the corpus has
    teeth), and the table is written for the report."""
    if len(RESULTS) < len(CASES):
        pytest.skip("runs after the whole corpus only")
    table = {}
    for tool in TOOLS:
        rs = [r[tool] for r in RESULTS.values() if r[tool]["exit"] and r[tool]["exit"][0] is not None]
        table[tool] = {
            "cases": len(rs),
            "escaped": sum(r["escaped"] for r in rs),
            "devices": sum(r["devices"] > 0 for r in rs),
            "fifos": sum(r["fifos"] > 0 for r in rs),
            "setid": sum(r["setid"] > 0 for r in rs),
            "links_out": sum(r["links_out"] > 0 for r in rs),
            "over_64MiB": sum(r["bytes"] > 64 << 20 for r in rs),
            "any_bad": sum(bool(r["escaped"] or r["devices"] or r["fifos"] or r["setid"] or r["links_out"]
                                or r["bytes"] > 64 << 20) for r in rs),
        }
    with open(REPORT, "w") as f:
        json.dump({"summary": table, "cases": RESULTS}, f, indent=1, sort_keys=True)
    print(json.dumps(table, indent=1))
    assert table["ours"]["any_bad"] == 0
    assert table["tarfile"]["escaped"] > 0 and table["gnu-tar"]["links_out"] + table["gnu-tar"]["escaped"] > 0
