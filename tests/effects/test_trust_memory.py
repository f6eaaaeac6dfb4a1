"""The engine service's children re-check only modules imported after the fork
(effects/trust.py remember_checked_modules): code already in memory cannot change with its
files, but anything imported later must still come from trusted files."""
import types

import pytest

from glexec_py.effects import trust
from glexec_py.errors import SystemFault


@pytest.fixture
def modules(monkeypatch, tmp_path):
    """A sys.modules of one module whose file is in an untrusted (world-writable) directory."""
    untrusted = tmp_path / "w"
    untrusted.mkdir()
    untrusted.chmod(0o777)
    (untrusted / "m.py").write_text("")
    table = {"m": _module(untrusted / "m.py")}
    monkeypatch.setattr(trust, "sys", types.SimpleNamespace(modules=table))
    monkeypatch.setattr(trust, "_checked_in_memory", {})
    monkeypatch.setattr(trust, "_trusted_dirs", set())
    return table, untrusted


def _module(path):
    m = types.ModuleType("m")
    m.__file__ = str(path)
    return m


def test_untrusted_module_file_is_refused(modules):
    with pytest.raises(SystemFault):
        trust.check_loaded_modules()


def test_module_checked_before_the_fork_is_not_checked_again(modules):
    trust.remember_checked_modules()
    trust.check_loaded_modules()


def test_module_imported_after_is_still_checked(modules):
    table, untrusted = modules
    table.clear()
    trust.remember_checked_modules()
    table["m"] = _module(untrusted / "m.py")
    with pytest.raises(SystemFault):
        trust.check_loaded_modules()


def test_a_replaced_module_object_under_a_remembered_name_is_checked(modules):
    table, untrusted = modules
    trust.remember_checked_modules()
    table["m"] = _module(untrusted / "m.py")     # same name, other code: not what was checked
    with pytest.raises(SystemFault):
        trust.check_loaded_modules()
