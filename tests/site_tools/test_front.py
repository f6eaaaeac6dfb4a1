"""The site tools' shared front (tools/glexec_tools/front.py) and the one configuration.

* a fresh installation's glexec.yaml (policy/glexec.yaml.in as ``make install`` writes it)
  runs every tool with no arguments (the timers' commands) and exit 0;
* for ANY argv (options, bad paths, garbage) every tool answers with an exit code of its
  documented set, at most one line on stderr, never a traceback and never the "internal
  error" code (property test, in-process, as root: nothing the values name can be
  changed: the configurations name no pool and the gridmapdirs are empty scratch dirs);
* the issue's own example through the real launcher: ``glexec-backmap --gridmapdir
  /nonexistent``;
* help texts say no "None"; a path is named once in an error; human ages.
"""
import contextlib
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_tools import front

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / "tools" / "bin"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the tools run as root only")


def render_shipped_config(prefix):
    """glexec.yaml as ``make install PREFIX=prefix`` installs it, with its directories."""
    text = (REPO / "policy" / "glexec.yaml.in").read_text()
    for mark, d in (("@CONFDIR@", "etc/glexec-py"), ("@STATEDIR@", "var/lib/glexec-py"),
                    ("@LOGDIR@", "var/log/glexec-py")):
        text = text.replace(mark, str(prefix / d))
    for d in ("etc/glexec-py", "var/lib/glexec-py", "var/log/glexec-py"):
        (prefix / d).mkdir(parents=True, exist_ok=True)
    path = prefix / "etc" / "glexec-py" / "glexec.yaml"
    path.write_text(text)
    os.chown(path, 0, 0)
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def sandbox():
    """A fresh install's config and the odd files and directories argv values name, in a
    root-owned directory (the back-map index demands trusted ancestors), removed after."""
    os.makedirs("/var/lib/glexec-py-tests", mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="front-", dir="/var/lib/glexec-py-tests"))
    os.chmod(root, 0o755)
    try:
        yield _sandbox(root)
    finally:
        shutil.rmtree(root)


def _sandbox(root):
    cfg = render_shipped_config(root / "prefix")
    garbage = root / "garbage.yaml"
    garbage.write_bytes(b"\x00\xff: [unclosed\n\ttab")
    old_prune = root / "prune.yaml"
    old_prune.write_text("pool_accounts: ['.gxtnopool']\nstate_dir: /x\naudit_file: /x/a\n")
    bad_section = root / "bad.yaml"
    bad_section.write_text(cfg.read_text() + "\nsweep2: {}\n")
    writable = root / "writable.yaml"
    writable.write_text(cfg.read_text())
    writable.chmod(0o666)
    gmd = root / "gridmapdir"
    gmd.mkdir(mode=0o755)
    for f in (garbage, old_prune, bad_section):
        f.chmod(0o644)
    return {"config": str(cfg), "root": root, "gridmapdir": str(gmd),
            "paths": [str(cfg), str(garbage), str(old_prune), str(bad_section), str(writable),
                      str(root), str(root / "missing"), "/nonexistent/x/y", "relative/path", "",
                      "/dev/null", "/proc/self/mem", "a\0b", "-", "--", "\udcff\u202e"]}


def _main(tool):
    from importlib import import_module
    return import_module(f"glexec_tools.{tool}.cli").main


def call(tool, argv, monkeypatch=None, config=None):
    """Run a tool's main in-process: (exit code, stdout, stderr)."""
    import glexec_py.site_paths as site_paths
    out, err = io.StringIO(), io.StringIO()
    saved = site_paths.CONFIG_FILE
    if config is not None:
        site_paths.CONFIG_FILE = config
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = _main(tool)(list(argv))
    finally:
        site_paths.CONFIG_FILE = saved
    return rc, out.getvalue(), err.getvalue()


# --- a fresh installation -------------------------------------------------------------------

@pytest.mark.parametrize("tool,argv", [
    ("prune", []),                          # the prune-users timer
    ("sweep", []),                          # the glexec-sweep timer
    ("leases", ["expire", "--yes"]),        # the lease lifecycle's expire step
    ("leases", ["list"]),
    ("leases", ["fsck"]),
    ("backmap", ["--reindex"]),
])
def test_fresh_install_runs_every_tool_with_no_arguments(sandbox, tool, argv):
    """No --config: glexec_py.site_paths.CONFIG_FILE (what make install writes) is the
    shipped glexec.yaml; no pools, no gridmapdir, no audit records yet: exit 0, no error."""
    rc, out, err = call(tool, argv, config=sandbox["config"])
    assert (rc, err) == (0, ""), (out, err)


def test_fresh_install_through_the_launchers(sandbox):
    for name, argv in (("prune-users", []), ("glexec-sweep", []),
                       ("glexec-leases", ["expire", "--yes"]), ("glexec-backmap", ["--reindex"])):
        r = subprocess.run([str(BIN / name), "--config", sandbox["config"], *argv]
                           if name != "glexec-leases" else
                           [str(BIN / name), argv[0], "--config", sandbox["config"], *argv[1:]],
                           capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stderr) == (0, ""), (name, r.stdout, r.stderr)


def test_old_tool_file_gets_one_line_saying_where_its_keys_go(sandbox):
    old = str(sandbox["root"] / "prune.yaml")
    for tool, section in (("prune", "prune"), ("sweep", "sweep")):
        rc, out, err = call(tool, ["--config", old, "--dry-run"])
        assert rc == 2 and err.count("\n") == 1 and f"'{section}:' section of glexec.yaml" in err


def test_issue_example_backmap_nonexistent_gridmapdir(sandbox):
    for argv, said in ((["--gridmapdir", "/nonexistent"], "glexec.yaml"),
                       (["--config", sandbox["config"], "--gridmapdir", "/nonexistent",
                         "--uid", "1"], "/nonexistent: No such file or directory"),
                       (["--config", "/nonexistent", "--uid", "1"], "/nonexistent: No such")):
        r = subprocess.run([str(BIN / "glexec-backmap"), *argv], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("glexec-backmap: ")
        assert said in r.stderr and r.stderr.count("/nonexistent") <= 1, r.stderr   # said once


# --- any argv -------------------------------------------------------------------------------

FLAG, PATH, NUM, TEXT = "flag", "path", "num", "text"
# tool -> (documented exit codes, options -> kind, leading words [subcommands])
TOOLS = {
    "prune": ({0, 1, 2, 3}, {"--config": PATH, "--json": FLAG, "--dry-run": FLAG, "-n": FLAG,
                             "--all": FLAG, "--signal": TEXT, "--grace": NUM, "--min-age": NUM,
                             "--max-kills": NUM, "--spare-ssh": FLAG, "--no-spare-ssh": FLAG,
                             "--daemons": TEXT, "--kill-all": FLAG, "--no-kill-all": FLAG,
                             "--help": FLAG}, [[]]),
    "sweep": ({0, 1, 2, 3, 4}, {"--config": PATH, "--json": FLAG, "--dry-run": FLAG,
                                "--test": FLAG, "--verbose": FLAG, "--account": TEXT,
                                "--uid": NUM, "--help": FLAG}, [[]]),
    "leases": ({0, 1, 2, 3}, {"--config": PATH, "--json": FLAG, "--gridmapdir": PATH,
                              "--audit-file": PATH, "--state-dir": PATH, "--pool": TEXT,
                              "--account": TEXT, "--dn": TEXT, "--dry-run": FLAG,
                              "--older-than": TEXT, "--grace": NUM, "--settle": NUM,
                              "--force": FLAG, "--help": FLAG},
               [[], ["list"], ["show"], ["fsck"], ["repair"], ["release"], ["drain"],
                ["expire"], ["bogus"]]),
    "backmap": ({0, 1, 2}, {"--config": PATH, "--json": FLAG, "--uid": NUM, "--account": TEXT,
                            "--pid": NUM, "--dn": TEXT, "--at": TEXT, "--from": TEXT,
                            "--to": TEXT, "--host": TEXT, "--audit-file": PATH,
                            "--index": PATH, "--gridmapdir": PATH, "--reindex": FLAG,
                            "--no-refresh": FLAG, "--help": FLAG}, [[]]),
    "sutest": ({0, 1, 2}, {"--glexec": PATH, "--proxy": PATH, "--pilot": TEXT, "--json": FLAG,
                           "--checks": TEXT, "--workdir": PATH, "--help": FLAG}, [[]]),
    "check": ({0, 1, 2}, {"--config": PATH, "--json": FLAG, "--passwd": PATH, "--group": PATH,
                          "--gridmapdir": PATH, "--proxy": PATH, "--token": PATH, "--dn": TEXT,
                          "--fqan": TEXT, "--issuer": TEXT, "--mapcount": NUM, "--caller": TEXT,
                          "--no-pam": FLAG, "--help": FLAG}, [[], ["explain"], ["bogus"]]),
    # no --output here: a successful translation is allowed to write (its own tests cover it)
    "importer": ({0, 1, 2}, {"--glexec-conf": PATH, "--lcmaps-db": PATH, "--lcas-db": PATH,
                             "--json": FLAG, "--dry-run": FLAG, "--force": FLAG,
                             "--state-dir": PATH, "--audit-file": PATH, "--help": FLAG}, [[]]),
}
GARBAGE = st.sampled_from(["", "-", "--", "-x", "--bogus", "0", "-1", "99999999999999999999",
                           "1.5", "nan", "now", "2026-01-01T00:00:00Z", "x" * 300, "\t",
                           "a\0b", "\udcff", "\u202e", "SIGKILL", "KILL", "nobody", "root",
                           "gxtnouser", "12h", "soon", "/CN=x"])


@st.composite
def argvs(draw, tool, paths):
    _codes, options, leads = TOOLS[tool]
    argv = list(draw(st.sampled_from(leads)))
    value = {PATH: st.sampled_from(paths) | GARBAGE, NUM: GARBAGE | st.integers(-5, 1 << 33).map(str),
             TEXT: GARBAGE}
    for _ in range(draw(st.integers(0, 5))):
        choice = draw(st.sampled_from(sorted(options) + ["<garbage>"]))
        if choice == "<garbage>":
            argv.append(draw(GARBAGE))
            continue
        if choice == "--help" and draw(st.booleans()):
            continue                                     # keep --help rarer
        kind = options[choice]
        if kind == FLAG:
            argv.append(choice)
        elif draw(st.booleans()):
            argv.append(f"{choice}={draw(value[kind])}")
        else:
            argv += [choice, draw(value[kind])]
    return argv


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_any_argv_gives_a_documented_exit_and_at_most_one_line(sandbox, tool, monkeypatch):
    codes = TOOLS[tool][0]
    cwd = sandbox["root"] / f"cwd-{tool}"
    cwd.mkdir(mode=0o755)
    monkeypatch.chdir(cwd)          # a relative path must never be written where we stand

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(argvs(tool, sandbox["paths"] + [sandbox["gridmapdir"]]))
    def check(argv):
        if tool == "leases" and argv and argv[0] in ("release", "drain", "repair", "expire"):
            argv = argv + ["--gridmapdir", sandbox["gridmapdir"], "--dry-run"]
        if tool in ("prune", "sweep") and "--dry-run" not in argv:
            argv = argv + ["--dry-run"]      # belt and braces: no pool is configured anyway
        rc, out, err = call(tool, argv, config=sandbox["config"])
        assert "Traceback" not in err and "Traceback" not in out, (argv, err)
        assert rc in codes, (argv, rc, err)
        if not (tool in ("importer", "check") and rc in (0, 1)):   # their reports
            assert err.count("\n") <= 1, (argv, err)
        if err:
            assert err.startswith(front_prog(tool) + ": ") and err.endswith("\n"), (argv, err)
            for v in set(a.partition("=")[2] or a for a in argv):
                if v.startswith("/") and v.isprintable():
                    assert err.count(v + ":") + err.count(v + "'") <= 1, (argv, err)  # once
            assert err.isprintable() or err[:-1].isprintable(), (argv, err)

    check()
    assert sorted(os.listdir(cwd)) == [], "a tool wrote below the current directory"
    assert not os.path.exists("/nonexistent")


def front_prog(tool):
    return {"prune": "prune-users", "sweep": "glexec-sweep", "leases": "glexec-leases",
            "backmap": "glexec-backmap", "sutest": "glexec-sutest", "check": "glexec-check",
            "importer": "glexec-import"}[tool]


def test_an_unexpected_exception_is_one_line_and_exit_70():
    def body(argv):
        raise KeyError("surprise")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = front.run("glexec-x", body, [])
    assert rc == front.EXIT_INTERNAL == 70
    assert err.getvalue().count("\n") == 1 and "internal error (KeyError" in err.getvalue()


# --- help and output ------------------------------------------------------------------------

@pytest.mark.parametrize("name,argv", [("prune-users", []), ("glexec-sweep", []),
                                       ("glexec-leases", []), ("glexec-leases", ["expire"]),
                                       ("glexec-leases", ["show"]), ("glexec-backmap", []),
                                       ("glexec-sutest", [])])
def test_help_texts_say_no_none(name, argv):
    r = subprocess.run([str(BIN / name), *argv, "--help"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr == "" and "usage:" in r.stdout
    assert "None" not in r.stdout, r.stdout
    assert "/etc/glexec-py/glexec.yaml" in r.stdout or name in ("glexec-sutest",)


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m59s"),
                                          (3600 * 3 + 12 * 60 + 5, "3h12m"), (86400, "1d"),
                                          (86400 * 2 + 3600 * 4, "2d4h"), (-5, "0s")])
def test_human_age(seconds, text):
    assert front.human_age(seconds) == text


def test_progress_only_on_a_terminal_and_rate_limited():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    now = [0.0]
    quiet = io.StringIO()
    p = front.Progress("glexec-backmap", stream=quiet, clock=lambda: now[0])
    p(10)
    assert quiet.getvalue() == ""
    tty = Tty()
    p = front.Progress("glexec-backmap", interval=1.0, stream=tty, clock=lambda: now[0])
    for i in range(100):
        now[0] = i * 0.1
        p(i * 1000, None, "records")
    shown = tty.getvalue().count("\r")
    assert 9 <= shown <= 11                     # ~1 a second over 10 s, not 100
    p.done()
    assert tty.getvalue().endswith("\r\x1b[K")
