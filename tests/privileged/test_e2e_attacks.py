"""End-to-end attack cases (security.md section 4 A, B, F): bait from the caller has no effect."""
import os
import stat

import pytest

from tests.privileged import payloads as P

SH = os.path.realpath("/bin/sh")

EVIL_SO = r'''
#include <fcntl.h>
#include <unistd.h>
#include <stdlib.h>
__attribute__((constructor)) static void evil(void) {
    const char *m = getenv("GXT_EVIL_MARKER");
    int fd = open(m ? m : "/var/lib/glexec-py-tests/evil-so-loaded", O_WRONLY | O_CREAT | O_APPEND, 0666);
    if (fd >= 0) { write(fd, "so\n", 3); close(fd); }
}
'''

EXECVE_ARGC0 = r'''
#include <stdio.h>
#include <string.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    /* argv[1]: glexec path; argv[2]: "null" -> argv = {NULL}, "empty" -> argv = {"", NULL} */
    char *none[] = { NULL };
    char *empty[] = { "", NULL };
    if (argc < 3) return 99;
    execve(argv[1], strcmp(argv[2], "null") == 0 ? none : empty, environ);
    perror("execve");
    return 98;
}
'''


def _bait_dir(gx):
    """A pilot-owned dir full of Python/loader bait, each piece leaving a marker if it runs."""
    bait = gx.dir("bait")
    markers = {}
    for name in ("sitecustomize", "usercustomize", "startup", "evilmod", "encodings_hit"):
        markers[name] = gx.out / f"marker-{name}"
    code = 'open({!r}, "a").write("hit\\n")\n'
    gx.file("sitecustomize.py", code.format(str(markers["sitecustomize"])), where=bait)
    gx.file("usercustomize.py", code.format(str(markers["usercustomize"])), where=bait)
    gx.file("startup.py", code.format(str(markers["startup"])), where=bait)
    gx.file("evilmod.py", code.format(str(markers["evilmod"])) + "class W(Warning): pass\n",
            where=bait)
    # same names in the caller's cwd (the box): -I must ignore cwd as well
    gx.file("sitecustomize.py", code.format(str(markers["sitecustomize"])))
    gx.file("yaml.py", code.format(str(markers["evilmod"])))
    gx.file("json.py", code.format(str(markers["evilmod"])))
    return bait, markers


def test_python_and_loader_bait_has_no_effect(gx, cc):
    bait, markers = _bait_dir(gx)
    so_marker = gx.out / "marker-ld-preload"
    so = cc("evil.so", EVIL_SO, shared=True)
    # the payload script lives outside the cwd: Python puts a script's own dir on sys.path,
    # so the cwd bait (json.py, ...) must not sit beside it
    dump = gx.script("dump.py", P.DUMP, where=gx.dir("bin"))
    env = {
        "PYTHONPATH": str(bait),
        "PYTHONSTARTUP": str(bait / "startup.py"),
        "PYTHONINSPECT": "1",
        "PYTHONHOME": str(bait),
        "PYTHONUSERBASE": str(bait),
        "PYTHONWARNINGS": "error::evilmod.W",
        "PYTHONBREAKPOINT": "evilmod.W",
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPYCACHEPREFIX": str(gx.out / "pycache"),
        "LD_PRELOAD": str(so),
        "LD_LIBRARY_PATH": str(bait),
        "LD_AUDIT": str(so),
        "GXT_EVIL_MARKER": str(so_marker),
        "MALLOC_CHECK_": "3",
        "MALLOC_PERTURB_": "165",
        "GCONV_PATH": str(bait),
        "GLIBC_TUNABLES": "glibc.malloc.check=3",
    }
    r = gx.run([str(dump)], env=env, stdin=b"print('interactive')\n")
    gx.assert_granted(r)
    for name, m in markers.items():
        assert not m.exists(), f"{name} bait was executed"
    assert not so_marker.exists(), "LD_PRELOAD/LD_AUDIT library was loaded"
    assert not (gx.out / "pycache").exists()
    d = P.load_dump(r.stdout)
    names = set(P.env_dict(d))
    assert not {n for n in names if n.startswith(("LD_", "MALLOC_", "PYTHON", "GCONV", "GLIBC_"))}
    assert names == {"GLEXEC_CLIENT_CERT", "HOME", "USER", "LOGNAME", "PATH", "X509_USER_PROXY"}


def test_bait_with_refusal_has_no_effect_either(gx, cc):
    """The engine runs as root even when it refuses: the bait must not reach it then either."""
    bait, markers = _bait_dir(gx)
    so_marker = gx.out / "marker-ld-preload"
    so = cc("evil.so", EVIL_SO, shared=True)
    r = gx.run(["/bin/true"], user="gxtoutsider",
               env={"PYTHONPATH": str(bait), "PYTHONSTARTUP": str(bait / "startup.py"),
                    "PYTHONINSPECT": "1", "LD_PRELOAD": str(so),
                    "GXT_EVIL_MARKER": str(so_marker)})
    gx.assert_refused(r, 203, "caller_not_allowed")
    for name, m in markers.items():
        assert not m.exists(), f"{name} bait was executed"
    assert not so_marker.exists()


def test_caller_path_cannot_replace_interpreter(gx):
    fakebin = gx.dir("fakebin")
    m = gx.marker("fake-python")
    for name in ("python3", "python3.11", "python", "id", "true"):
        gx.script(name, f'#!/bin/sh\necho hit > "{m}"\nexit 0\n', mode=0o755, where=fakebin)
    r = gx.run(["/usr/bin/id", "-u"], env={"PATH": f"{fakebin}:/usr/bin:/bin"})
    gx.assert_granted(r)
    assert r.stdout == b"47011\n"
    assert not m.exists()


@pytest.mark.parametrize("how", ["null", "empty"])
def test_argc_zero_refused_without_grant(gx, cc, how):
    helper = cc("execve-argc0", EXECVE_ARGC0)
    m = gx.marker("ran")
    before = len(gx.audit())
    proxy = gx.proxy("user1")
    from tests.support.runas import run_as
    r = run_as("gxtpilot", [str(helper), gx.glexec, how],
               env={"GLEXEC_CLIENT_CERT": str(proxy), "GCONV_PATH": ".",
                    "CHARSET": "PWNKIT", "SHELL": SH}, cwd=str(gx.box))
    assert r.returncode == 201, r
    assert r.stderr.startswith(b"glexec: ") and len(r.stderr.splitlines()) == 1, r
    assert r.stdout == b""
    recs = gx.audit()[before:]
    assert not [x for x in recs if x.get("event") == "grant"], recs
    assert len(recs) <= 1
    assert not m.exists()


def test_caller_extra_groups_and_fds_do_not_leak(gx):
    """Pilot holds extra groups and open fds (a pilot-only secret): payload sees neither."""
    secret = gx.file("secret", "pilot-only secret\n", mode=0o600)
    fd = os.open(secret, os.O_RDONLY)
    dfd = os.open(gx.box, os.O_RDONLY | os.O_DIRECTORY)
    try:
        dump = gx.script("dump.py", P.DUMP)
        from tests.support.runas import run_as
        proxy = gx.proxy("user1")
        before = len(gx.audit())
        r = run_as("gxtpilot", [gx.glexec, str(dump)], env={"GLEXEC_CLIENT_CERT": str(proxy)},
                   cwd=str(gx.box), pass_fds=(fd, dfd))
    finally:
        os.close(fd)
        os.close(dfd)
    assert r.returncode == 0 and r.stderr == b"", r
    d = P.load_dump(r.stdout)
    assert d["fds"] == [0, 1, 2], d["fd_targets"]
    assert not set(d["groups"]) & {47001, 47100}
    assert len([x for x in gx.audit()[before:] if x["event"] == "grant"]) == 1


def test_payload_cannot_regain_privilege(gx):
    prog = gx.script("escalate.py", r'''#!/usr/bin/python3
import os
res = []
for name, f in (("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0)),
                ("setgroups", lambda: os.setgroups([0])), ("seteuid", lambda: os.seteuid(0)),
                ("setresuid", lambda: os.setresuid(47001, 47001, 47001))):
    try:
        f()
        res.append(name + ":OK")
    except PermissionError:
        res.append(name + ":EPERM")
print(" ".join(res))
''')
    r = gx.run([str(prog)])
    gx.assert_granted(r)
    assert r.stdout.split() == [b"setuid:EPERM", b"setgid:EPERM", b"setgroups:EPERM",
                                b"seteuid:EPERM", b"setresuid:EPERM"]


def test_audit_record_escapes_hostile_argv(gx):
    args = ["a\nb", "\x1b[31mred", "\u2028sep", "x" * 5000, "\r"]
    r = gx.run(["/bin/true", *args])
    gx.assert_granted(r)
    raw = gx.audit_file.read_bytes()
    assert b"\x1b" not in raw and b"\r" not in raw
    assert all(line.startswith(b"{") for line in raw.splitlines())


def test_proxy_policy_knobs(gx, pkis, run_dir):
    """credentials.allow_limited_proxy / allow_legacy_proxy / min_proxy_remaining."""
    limited = pkis.pki.proxy(pkis.user1, run_dir / "limited-knob.pem", limited=True)
    legacy = pkis.pki.proxy(pkis.user1, run_dir / "legacy-knob.pem", kind="old")
    own = lambda p: gx.file(p.name, p.read_bytes(), mode=0o600)  # noqa: E731
    gx.assert_granted(gx.run(["/usr/bin/id"], proxy=own(limited)))
    gx.assert_granted(gx.run(["/usr/bin/id"], proxy=own(legacy)))
    gx.config(credentials={"allow_limited_proxy": False, "allow_legacy_proxy": False})
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=own(limited)), 201, "credential_limited")
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=own(legacy)), 201, "credential_legacy")
    gx.config(credentials={"min_proxy_remaining": 48 * 3600})  # the session's proxies last 12 h
    gx.assert_refused(gx.run(["/usr/bin/id"]), 201, "credential_expiring")
