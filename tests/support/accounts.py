"""Real test accounts and groups for the privileged suite.

Only names starting with ``gxt`` and ids in 47000-47999 are ever created, changed or removed;
every helper refuses anything else.  Accounts are made with the real tools (groupadd, useradd,
userdel, groupdel), never by editing /etc/passwd.

    accts = TestAccounts.create_standard()   # removes leftovers of a crashed run first
    accts.pilot.uid, accts.target1.groups, ...
    accts.remove()                           # kills their processes, removes homes and entries

A session-wide lock file (``/var/lib/glexec-py-tests/.accounts.lock``, flock) serialises test
sessions so two engineers' runs never create/remove the same accounts under each other.
"""
from __future__ import annotations

import fcntl
import grp
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NAME_PREFIX", "ID_MIN", "ID_MAX", "SUITE_ID_MIN", "SUITE_ID_MAX", "TESTS_BASE", "HOME_BASE", "Account",
           "TestAccounts", "cleanup_leftovers", "expire_user", "lock_password", "shadow_password",
           "kill_uid_processes", "session_lock"]

NAME_PREFIX = "gxt"
ID_MIN, ID_MAX = 47000, 47999
# Part of the range that the end-to-end suite (tests/privileged) owns and sweeps at session
# start. Ids above it are left to other suites that may be running concurrently (tests/shim
# uses gxtshim 47190 / gxtshimx 47191, tests/backmap gxtbm001 47195): never sweep those.
SUITE_ID_MIN, SUITE_ID_MAX = 47000, 47179
TESTS_BASE = Path("/var/lib/glexec-py-tests")
HOME_BASE = TESTS_BASE / "home"
SHELL = "/bin/sh"

# The standard population: groups first (name -> gid), then users.
STANDARD_GROUPS = {
    "gxtpilot": 47001, "gxtoutsider": 47002, "gxtgroupie": 47003,
    "gxttarget1": 47011, "gxttarget2": 47012,
    "gxtextra": 47100,      # extra group of the pilot: must never reach the payload
    "gxtvo": 47101,         # secondary group of target1: must reach the payload
    "gxtpilotgrp": 47102,   # allowed via callers.groups; member gxtgroupie
}
# name -> (uid, primary group, [supplementary groups], has home)
STANDARD_USERS = {
    "gxtpilot": (47001, "gxtpilot", ["gxtextra"], False),
    "gxtoutsider": (47002, "gxtoutsider", [], False),
    "gxtgroupie": (47003, "gxtgroupie", ["gxtpilotgrp"], False),
    "gxttarget1": (47011, "gxttarget1", ["gxtvo"], True),
    "gxttarget2": (47012, "gxttarget2", [], True),
}


class AccountError(RuntimeError):
    pass


def _check_name(name: str) -> None:
    if not (isinstance(name, str) and name.startswith(NAME_PREFIX) and len(name) <= 32
            and name.replace("-", "").replace("_", "").isalnum() and name.isascii()):
        raise AccountError(f"refusing to touch account/group {name!r}: not a {NAME_PREFIX}* test name")


def _check_id(i: int, what: str) -> None:
    if not (isinstance(i, int) and ID_MIN <= i <= ID_MAX):
        raise AccountError(f"refusing to touch {what} {i!r}: outside the test range {ID_MIN}-{ID_MAX}")


def _run(cmd: list[str], ok=(0,)) -> subprocess.CompletedProcess:
    # The shadow tools take a lock on /etc/passwd etc.; another process may hold it briefly.
    for attempt in range(20):
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode in ok:
            return p
        if "lock" in p.stderr.lower() and attempt < 19:
            time.sleep(0.25)
            continue
        raise AccountError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int                 # primary group id
    group: str               # primary group name
    groups: tuple[int, ...]  # all groups as initgroups() would give them (incl. primary)
    home: Path

    @property
    def supplementary(self) -> tuple[int, ...]:
        return tuple(g for g in self.groups if g != self.gid)

    @classmethod
    def lookup(cls, name: str) -> "Account":
        pw = pwd.getpwnam(name)
        return cls(name=name, uid=pw.pw_uid, gid=pw.pw_gid, group=grp.getgrgid(pw.pw_gid).gr_name,
                   groups=tuple(sorted(set(os.getgrouplist(name, pw.pw_gid)))),
                   home=Path(pw.pw_dir))


# --- low-level, each refusing anything outside prefix + range ---------------------------------

def create_group(name: str, gid: int) -> None:
    _check_name(name)
    _check_id(gid, "gid")
    _run(["groupadd", "-g", str(gid), name])


def create_user(name: str, uid: int, group: str, extra_groups=(), *, home: bool = False) -> Account:
    """Create ``name`` (shell /bin/sh, home path under HOME_BASE, created only if ``home``)."""
    _check_name(name)
    _check_id(uid, "uid")
    gid = grp.getgrnam(group).gr_gid
    _check_name(group)
    _check_id(gid, "gid")
    for g in extra_groups:
        _check_name(g)
        _check_id(grp.getgrnam(g).gr_gid, "gid")
    home_dir = HOME_BASE / name
    cmd = ["useradd", "-u", str(uid), "-g", group, "-N", "-M", "-s", SHELL, "-d", str(home_dir),
           "-c", "glexec-py test account"]
    if extra_groups:
        cmd += ["-G", ",".join(extra_groups)]
    _run(cmd + [name])
    if home:
        _ensure_home_base()
        if home_dir.is_symlink() or home_dir.exists():
            _rm_tree_checked(home_dir)
        home_dir.mkdir(mode=0o700)
        os.chown(home_dir, uid, gid)
        os.chmod(home_dir, 0o700)
    return Account.lookup(name)


def expire_user(name: str, date: str = "1970-01-02") -> None:
    """Set the account's expiry date (``usermod -e``; "" = never expires)."""
    _check_name(name)
    _check_id(pwd.getpwnam(name).pw_uid, "uid")
    _run(["usermod", "-e", date, name])


def lock_password(name: str, locked: bool = True) -> None:
    """``usermod -L`` / ``-U``: a '!' in front of the shadow password (not an expiry)."""
    _check_name(name)
    _check_id(pwd.getpwnam(name).pw_uid, "uid")
    _run(["usermod", "-L" if locked else "-U", name], ok=(0, 1) if not locked else (0,))


def shadow_password(name: str) -> str:
    """The account's password field in /etc/shadow (as the shadow tools wrote it)."""
    _check_name(name)
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name:
                return fields[1]
    raise AccountError(f"{name} has no shadow entry")


def remove_user(name: str) -> None:
    _check_name(name)
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return
    _check_id(pw.pw_uid, "uid")
    kill_uid_processes({pw.pw_uid})
    _run(["userdel", name], ok=(0, 6))  # 6: no such user (raced)
    home = Path(pw.pw_dir)
    if home.parent == HOME_BASE and home.name.startswith(NAME_PREFIX):
        _rm_tree_checked(home)
    _remove_default_proxy(pw.pw_uid)


def remove_group(name: str) -> None:
    _check_name(name)
    try:
        g = grp.getgrnam(name)
    except KeyError:
        return
    _check_id(g.gr_gid, "gid")
    _run(["groupdel", name], ok=(0, 6))


def _remove_default_proxy(uid: int) -> None:
    """The engine's default target proxy (/tmp/x509up_u<uid>) of a test uid."""
    _check_id(uid, "uid")
    p = Path(f"/tmp/x509up_u{uid}")
    try:
        st = p.lstat()
    except FileNotFoundError:
        return
    if st.st_uid == uid:
        p.unlink()


def _ensure_home_base() -> None:
    for d in (TESTS_BASE, HOME_BASE):
        if d.is_symlink():
            raise AccountError(f"{d} is a symlink")
        d.mkdir(mode=0o755, exist_ok=True)
        os.chown(d, 0, 0)
        os.chmod(d, 0o755)


def _rm_tree_checked(path: Path) -> None:
    path = Path(path)
    if path.parent != HOME_BASE or not path.name.startswith(NAME_PREFIX):
        raise AccountError(f"refusing to remove {path}: not a test home")
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _uids_of(pid_dir: Path) -> set[int]:
    with open(pid_dir / "status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return {int(x) for x in line.split()[1:]}
    return set()


def live_uid_processes(uids, grace: float = 0.0) -> list[int]:
    """Pids of processes (zombies excepted) whose real, effective, saved or fs uid is in
    ``uids``; with ``grace``, asked again until there are none or ``grace`` seconds passed
    (a payload's last children may still be exiting)."""
    uids, deadline = set(uids), time.monotonic() + grace
    while True:
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    st = (d / "status").read_text()
                except OSError:
                    continue
                if "\nState:\tZ" not in st and any(
                        line.startswith("Uid:") and {int(x) for x in line.split()[1:]} & uids
                        for line in st.splitlines()):
                    out.append(int(d.name))
        if not out or time.monotonic() >= deadline:
            return out
        time.sleep(0.1)


def kill_uid_processes(uids, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process whose real, effective, saved or fs uid is in ``uids``."""
    uids = set(uids)
    for u in uids:
        _check_id(u, "uid")
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or int(d.name) == os.getpid():
                continue
            try:
                if _uids_of(d) & uids:
                    found.append(int(d.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        if not found:
            return killed
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise AccountError(f"processes of test uids survive SIGKILL: {found}")
        time.sleep(0.05)


def cleanup_leftovers(id_min: int = SUITE_ID_MIN, id_max: int = SUITE_ID_MAX) -> list[str]:
    """Remove every passwd/group entry named gxt* with an id in [id_min, id_max] (left by a
    crashed run), kill processes of those uids, remove their homes and default target proxies.

    gxt* entries with other ids in the test range belong to other suites and are left alone;
    gxt* entries outside 47000-47999 are never touched and reported as AccountError."""
    _check_id(id_min, "id")
    _check_id(id_max, "id")
    removed, foreign = [], []
    for p in pwd.getpwall():
        if p.pw_name.startswith(NAME_PREFIX):
            if id_min <= p.pw_uid <= id_max:
                remove_user(p.pw_name)
                removed.append(p.pw_name)
            elif not ID_MIN <= p.pw_uid <= ID_MAX:
                foreign.append(f"user {p.pw_name} uid {p.pw_uid}")
    for g in grp.getgrall():
        if g.gr_name.startswith(NAME_PREFIX):
            if id_min <= g.gr_gid <= id_max:
                remove_group(g.gr_name)
                removed.append("group:" + g.gr_name)
            elif not ID_MIN <= g.gr_gid <= ID_MAX:
                foreign.append(f"group {g.gr_name} gid {g.gr_gid}")
    # processes of suite uids whose accounts were already gone
    kill_uid_processes(range(id_min, id_max + 1))
    suite_names = set(STANDARD_USERS)
    if HOME_BASE.is_dir():
        for h in HOME_BASE.iterdir():
            if h.name in suite_names:
                _rm_tree_checked(h)
    for uid in range(id_min, id_max + 1):
        if os.path.lexists(f"/tmp/x509up_u{uid}"):
            _remove_default_proxy(uid)
    if foreign:
        raise AccountError("entries with the test prefix outside the test id range "
                           f"(not touched, fix by hand): {', '.join(foreign)}")
    return removed


class session_lock:
    """Exclusive flock serialising privileged test sessions on this machine.

    Re-entrant within one process: flock conflicts between two open files even in the same
    process, so a second taker (a module fixture inside a session that already holds it)
    would otherwise wait for itself until its timeout.  Only the outermost holder locks and
    unlocks."""

    _depth = 0            # holders in this process
    _pid = None           # the process they belong to (a forked child holds nothing)

    def __init__(self, timeout: float = 900.0):
        self.timeout = timeout
        self.fd = None
        self.nested = False

    def __enter__(self):
        cls = type(self)
        if cls._depth and cls._pid == os.getpid():
            cls._depth += 1
            self.nested = True
            return self
        _ensure_home_base()
        fd = os.open(TESTS_BASE / ".session.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise AccountError("another privileged test session holds "
                                       f"{TESTS_BASE}/.session.lock")
                time.sleep(0.5)
        self.fd = fd
        cls._depth, cls._pid = 1, os.getpid()
        return self

    def __exit__(self, *exc):
        self.release()

    def release(self):
        cls = type(self)
        if self.nested:
            self.nested = False
            cls._depth -= 1
        elif self.fd is not None:
            cls._depth = 0
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


@dataclass
class TestAccounts:
    """The standard population of the end-to-end suite (see STANDARD_USERS/GROUPS)."""

    __test__ = False

    accounts: dict[str, Account] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)

    @classmethod
    def create_standard(cls) -> "TestAccounts":
        cleanup_leftovers()
        self = cls()
        try:
            for name, gid in STANDARD_GROUPS.items():
                create_group(name, gid)
                self.groups[name] = gid
            for name, (uid, group, extra, home) in STANDARD_USERS.items():
                self.accounts[name] = create_user(name, uid, group, extra, home=home)
        except BaseException:
            self.remove()
            raise
        return self

    def __getitem__(self, name: str) -> Account:
        return self.accounts[name]

    pilot = property(lambda self: self.accounts["gxtpilot"])
    outsider = property(lambda self: self.accounts["gxtoutsider"])
    groupie = property(lambda self: self.accounts["gxtgroupie"])
    target1 = property(lambda self: self.accounts["gxttarget1"])
    target2 = property(lambda self: self.accounts["gxttarget2"])

    @property
    def uids(self) -> set[int]:
        return {a.uid for a in self.accounts.values()}

    def remove(self) -> None:
        """Kill their processes, remove users (and homes), then groups. Safe to call twice."""
        errors = []
        uids = {u for u, *_ in STANDARD_USERS.values()} | self.uids
        try:
            kill_uid_processes(uids)
        except AccountError as e:
            errors.append(str(e))
        for name in list(STANDARD_USERS) + [n for n in self.accounts if n not in STANDARD_USERS]:
            try:
                remove_user(name)
            except AccountError as e:
                errors.append(str(e))
        for name in list(STANDARD_GROUPS) + [n for n in self.groups if n not in STANDARD_GROUPS]:
            try:
                remove_group(name)
            except AccountError as e:
                errors.append(str(e))
        self.accounts.clear()
        self.groups.clear()
        if errors:
            raise AccountError("; ".join(errors))
