"""glexec-backmap through its launcher, as a separate process (as an admin would run it)."""
import json
import os
import subprocess

import pytest

from tests.backmap.backmap_helpers import S, T0, record, write, format_time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(REPO, "tools", "bin", "glexec-backmap")
HOSTILE_DN = "/CN=Eve\x1b]0;pwned\x07\n\u202egnp.exe\u2028/CN=x"


def run(*args, user=None):
    return subprocess.run(["/usr/bin/python3.11", "-I", "-S", LAUNCHER, *args], capture_output=True,
                          user=user, timeout=60, cwd="/")


@pytest.fixture
def logs(private_dir):
    audit = os.path.join(private_dir, "audit.jsonl")
    write(audit, [record("grant", T0, pid=1, dn=HOSTILE_DN), record("end", T0 + 10 * S, pid=1, dn=HOSTILE_DN),
                  record("grant", T0 + 20 * S, pid=2), record("refuse", T0 + 60 * S)])
    return ["--audit-file", audit, "--index", os.path.join(private_dir, "i.sqlite")]


def test_json_answer_known(logs):
    r = run(*logs, "--uid", "47011", "--at", format_time(T0 + 5 * S), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["status"] == "known" and d["matches"][0]["dn"] == HOSTILE_DN
    assert d["matches"][0]["records"][0]["line"] == 1


def test_open_grant_is_unknown_exit_1(logs):
    r = run(*logs, "--uid", "47011", "--at", format_time(T0 + 30 * S), "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["status"] == "unknown"


def test_none_exit_1(logs):
    r = run(*logs, "--uid", "47999", "--at", format_time(T0 + 5 * S))
    assert r.returncode == 1 and r.stdout.startswith(b"NONE")


def test_text_output_escapes_control_characters(logs):
    r = run(*logs, "--dn", HOSTILE_DN)
    assert r.returncode == 0, r.stderr
    assert b"\x1b" not in r.stdout and b"\x07" not in r.stdout
    assert "\u202e".encode() not in r.stdout and "\u2028".encode() not in r.stdout
    assert b"\\x1b]0;pwned\\x07\\x0a\\u202egnp.exe" in r.stdout
    assert all(line.startswith((b"KNOWN", b"  ")) for line in r.stdout.splitlines())


def test_account_and_range(logs):
    assert run(*logs, "--account", "pool47011", "--at", format_time(T0 + 5 * S)).returncode == 0
    r = run(*logs, "--uid", "47011", "--from", format_time(T0), "--to", format_time(T0 + 15 * S), "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["matches"]) == 1


def test_usage_errors_exit_2(logs):
    assert run(*logs, "--uid", "47011", "--at", "yesterday").returncode == 2
    assert run(*logs, "--uid", "47011").returncode == 2
    assert run("--bogus").returncode == 2


def test_live_pid(logs, private_dir):
    r = run(*logs, "--pid", str(os.getpid()), "--json")
    d = json.loads(r.stdout)
    assert d["question"]["live"] is True and d["question"]["uid"] == 0
    assert r.returncode == 1          # root is never granted through glexec


def test_launcher_runs_when_executed_directly(logs):
    r = subprocess.run([LAUNCHER, *logs, "--uid", "47011", "--at", format_time(T0 + 5 * S)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_non_root_is_refused(logs):
    r = run(*logs, "--uid", "47011", "--at", format_time(T0 + 5 * S), user=65534)
    assert r.returncode == 2
    assert b"root only" in r.stderr and r.stdout == b""


def test_option_forms(logs):
    at = format_time(T0 + 5 * S)
    r = run(*[a for a in logs], "--uid=47011", f"--at={at}", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["matches"][0]["uid"] == 47011
    r = run("--help")
    assert r.returncode == 0 and r.stdout.startswith(b"usage: glexec-backmap") and b"--no-refresh" in r.stdout


@pytest.mark.parametrize("bad", [
    ["--uid", "47011", "--account", "pool47011"],      # two questions
    ["--uid", "47011", "--uid", "47012"],              # given twice
    ["--uid", "-5"], ["--uid", "4.5"], ["--uid", "\u0664\u0667"],   # not a plain decimal number
    ["--uid"],                                          # no value
    ["--json=yes"],                                     # a flag takes no value
    ["--ui", "47011"],                                  # no abbreviations
    ["47011"],                                          # no positional arguments
    ["--at", "2026-01-01T00:00:00Z", "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z", "--uid", "1"],
])
def test_usage_errors_are_one_line_exit_2(logs, bad):
    r = run(*logs, *bad)
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.startswith(b"glexec-backmap: ") and r.stderr.count(b"\n") == 1, r.stderr


def test_index_in_a_missing_directory_is_one_line_exit_2(logs, private_dir):
    r = run("--audit-file", logs[1], "--index", os.path.join(private_dir, "nonexistent", "i.sqlite"),
            "--uid", "47011", "--at", format_time(T0))
    assert r.returncode == 2 and r.stdout == b""
    assert r.stderr.startswith(b"glexec-backmap: cannot open the index") and r.stderr.count(b"\n") == 1, r.stderr


LIVE_UID = 47195            # tests/backmap's id (tests/support/accounts.py); no account needed


def test_at_now_names_the_holder_of_a_running_payload(private_dir):
    # A grant whose payload is still running (no end record yet) and a real process of the
    # target uid started after it: "who holds it now?" is that identity, not unknown.
    import time
    audit = os.path.join(private_dir, "audit.jsonl")
    host = os.uname().nodename
    args = ["--audit-file", audit, "--index", os.path.join(private_dir, "i.sqlite"),
            "--uid", str(LIVE_UID), "--at", "now", "--json"]
    write(audit, [record("grant", int(time.time() * S) - 2 * S, uid=LIVE_UID, pid=9, host=host)])
    r = run(*args)                                   # nothing of the uid runs: still unknown
    assert r.returncode == 1 and json.loads(r.stdout)["status"] == "unknown", r.stdout
    payload = subprocess.Popen(["/bin/sleep", "60"], user=LIVE_UID, group=LIVE_UID, cwd="/")
    try:
        r = run(*args)
        d = json.loads(r.stdout)
        assert r.returncode == 0 and d["status"] == "known", d
        assert [m["dn"] for m in d["matches"]] == ["/CN=Alice"]
    finally:
        payload.kill()
        payload.wait()


def test_at_now_does_not_settle_a_grant_older_than_the_process_evidence(private_dir):
    import time
    audit = os.path.join(private_dir, "audit.jsonl")
    host = os.uname().nodename
    payload = subprocess.Popen(["/bin/sleep", "60"], user=LIVE_UID, group=LIVE_UID, cwd="/")
    try:
        time.sleep(2.5)
        # granted only now, but the uid's process is older: not this grant's payload
        write(audit, [record("grant", int(time.time() * S), uid=LIVE_UID, pid=9, host=host)])
        r = run("--audit-file", audit, "--index", os.path.join(private_dir, "i.sqlite"),
                "--uid", str(LIVE_UID), "--at", "now", "--json")
        assert json.loads(r.stdout)["status"] == "unknown"
    finally:
        payload.kill()
        payload.wait()
