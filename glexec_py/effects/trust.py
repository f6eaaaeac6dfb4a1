"""Is this installation trustworthy? Ownership and mode checks on paths.

A path is trusted when it and every ancestor directory are owned by root and not
writable by group or others (the safefile rule without the sticky-directory exception:
nothing of ours belongs in /tmp).
"""
import os
import sys
from stat import S_ISDIR, S_ISLNK, S_ISREG

from glexec_py.errors import SystemFault

_trusted_dirs = set()
_checked_in_memory = {}      # module name -> the module object whose files were found trusted


def _check_node(path, st):
    if st.st_uid != 0:
        raise SystemFault("untrusted_install", f"glexec: untrusted installation: {path} is not owned by root",
                          path=path)
    if st.st_mode & 0o022:
        raise SystemFault("untrusted_install", f"glexec: untrusted installation: {path} is writable by group or others",
                          path=path)


def forget():
    """Runs as: anyone. Drop the directories found trusted so far: each call of the engine
    service (a child of its warm parent) checks them afresh, as an in-process engine does."""
    _trusted_dirs.clear()


def remember_checked_modules():
    """Runs as: anyone. The engine service's warm parent calls this once
    check_interpreter_state passed: these modules' code is in memory, where their files on
    disk can no longer change it, so a call forked from that parent checks only the modules
    imported after the fork (check_loaded_modules). The sys.path entries are still checked
    on every call: a lazy import must come from a trusted directory."""
    _checked_in_memory.update(sys.modules)


def check_dir_chain(directory):
    """Runs as: any user (lstat only). Raise SystemFault unless `directory` and all its
    ancestors are root-owned, not group/other-writable, real directories (no symlinks)."""
    if directory in _trusted_dirs:
        return
    parent = directory.rpartition("/")[0] or "/"
    if directory != "/":
        check_dir_chain(parent)
    st = os.lstat(directory)
    if not S_ISDIR(st.st_mode):
        kind = "a symlink" if S_ISLNK(st.st_mode) else "not a directory"
        raise SystemFault("untrusted_install", f"glexec: untrusted installation: {directory} is {kind}",
                          path=directory)
    _check_node(directory, st)
    _trusted_dirs.add(directory)


def check_file(path, *, regular=True):
    """Runs as: any user (lstat only). A root-owned, not group/other-writable file in a
    trusted directory chain. Returns its stat result."""
    check_dir_chain(path.rpartition("/")[0] or "/")
    st = os.lstat(path)
    if regular and not S_ISREG(st.st_mode):
        raise SystemFault("untrusted_install", f"glexec: untrusted installation: {path} is not a regular file",
                          path=path)
    _check_node(path, st)
    return st


def _nearest_existing(path):
    while True:
        try:
            return path, os.lstat(path)
        except FileNotFoundError:
            path = path.rpartition("/")[0] or "/"


def check_interpreter_state():
    """Runs as: the engine (root, or the caller in log-only mode); reads metadata only.

    The engine must run isolated (-I -S -B) with only trusted entries on sys.path and
    only trusted files behind every loaded module. An entry that does not exist is fine
    only if nobody but root could create it."""
    flags = sys.flags
    if not (flags.isolated and flags.no_site and flags.dont_write_bytecode):
        raise SystemFault("untrusted_install", "glexec: engine not started in isolated mode")
    for entry in sys.path:
        if not entry.startswith("/"):
            raise SystemFault("untrusted_install", f"glexec: untrusted installation: relative sys.path entry {entry!r}")
        existing, st = _nearest_existing(entry)
        if S_ISDIR(st.st_mode):
            check_dir_chain(existing)
        else:
            check_file(existing)
    check_loaded_modules()


def check_loaded_modules():
    """Runs as: any user (lstat only). Every module loaded from a file is trusted (those
    checked before they were forked into this process excepted: remember_checked_modules)."""
    for name, module in list(sys.modules.items()):
        if _checked_in_memory.get(name) is module:
            continue
        path = getattr(module, "__file__", None)
        if path:
            check_file(path)
        cached = getattr(module, "__cached__", None)
        if cached:
            try:
                check_file(cached)
            except FileNotFoundError:
                pass
