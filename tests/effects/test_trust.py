"""effects/trust.py on real root-owned files: what makes a path of the installation
trusted (the engine refuses to run code or read configuration from anything else)."""
import os
import types

import pytest

from glexec_py.effects import trust
from glexec_py.errors import SystemFault


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(trust, "_trusted_dirs", set())


def untrusted(fn, *args, says):
    with pytest.raises(SystemFault) as ei:
        fn(*args)
    assert ei.value.reason == "untrusted_install" and says in ei.value.message, ei.value.message


def test_a_symlinked_directory_in_the_chain_is_refused(root_dir):
    real = os.path.join(root_dir, "real")
    os.mkdir(real, 0o755)
    link = os.path.join(root_dir, "link")
    os.symlink(real, link)                      # root-owned symlink to a root-owned 0755 dir
    trust.check_dir_chain(real)
    untrusted(trust.check_dir_chain, link, says="is a symlink")
    with open(os.path.join(real, "f"), "w"):
        pass
    untrusted(trust.check_file, os.path.join(link, "f"), says="is a symlink")


def test_a_file_that_is_not_regular_is_refused(root_dir):
    fifo, sub = os.path.join(root_dir, "fifo"), os.path.join(root_dir, "sub")
    os.mkfifo(fifo, 0o644)
    os.mkdir(sub, 0o755)
    untrusted(trust.check_file, fifo, says="is not a regular file")
    untrusted(trust.check_file, sub, says="is not a regular file")
    assert trust.check_file(sub, regular=False).st_uid == 0


def test_forget_makes_the_next_call_check_again(root_dir):
    """The engine service's children call forget(): a directory made writable after an
    earlier call was found trusted must be refused in the next one."""
    d = os.path.join(root_dir, "d")
    os.mkdir(d, 0o755)
    trust.check_dir_chain(d)
    os.chmod(d, 0o777)
    trust.check_dir_chain(d)                    # remembered within one call
    trust.forget()
    untrusted(trust.check_dir_chain, d, says="writable by group or others")


def _interp(monkeypatch, path, isolated=True):
    flags = types.SimpleNamespace(isolated=int(isolated), no_site=1, dont_write_bytecode=1)
    monkeypatch.setattr(trust, "sys", types.SimpleNamespace(flags=flags, path=list(path), modules={}))


def test_interpreter_must_be_isolated(monkeypatch, root_dir):
    _interp(monkeypatch, [root_dir], isolated=False)
    untrusted(trust.check_interpreter_state, says="isolated mode")
    _interp(monkeypatch, [root_dir])
    trust.check_interpreter_state()


def test_relative_sys_path_entry_is_refused(monkeypatch, root_dir):
    _interp(monkeypatch, [root_dir, "lib"])
    untrusted(trust.check_interpreter_state, says="relative sys.path entry")
