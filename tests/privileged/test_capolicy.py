"""effects.capolicy on a real root-owned trust dir: the per-process cache of parsed policy
files is keyed by file identity, so a rewritten or replaced file is read again (the engine
service relies on this), and precedence/absence come back as the engine expects."""
import os

import pytest

from glexec_py.core import namespaces as ns
from glexec_py.effects import capolicy
from glexec_py.errors import SystemFault
from tests.support import install as inst

H = "0a1b2c3d"
CA = "/DC=org/DC=A/CN=A CA"


@pytest.fixture
def cadir(session_lock):
    d = inst.make_run_dir("capolicy")
    yield d
    inst._safe_rmtree(d)


def write(d, name, text, mode=0o644):
    p = d / name
    tmp = d / f".{name}.new"
    tmp.write_text(text)
    os.chmod(tmp, mode)
    os.replace(tmp, p)           # a new inode, as a package update does
    return p


def verdict(d, subject):
    return ns.evaluate(capolicy.load(str(d), H), CA, subject)


def test_absent_files_mean_no_policy(cadir):
    assert capolicy.load(str(cadir), H) == (None, None)
    assert verdict(cadir, "/DC=org/DC=A/CN=x") is None


def test_rewritten_file_is_read_again(cadir):
    write(cadir, f"{H}.namespaces", 'TO Issuer SELF PERMIT Subject "/DC=org/DC=A/.*"\n')
    assert verdict(cadir, "/DC=org/DC=A/CN=x").permitted
    first = capolicy.load(str(cadir), H)[0]
    assert capolicy.load(str(cadir), H)[0] is first            # same file: parsed once
    write(cadir, f"{H}.namespaces", 'TO Issuer SELF DENY Subject "/DC=org/DC=A/CN=x"\n'
                                    'TO Issuer SELF PERMIT Subject "/DC=org/DC=A/.*"\n')
    v = verdict(cadir, "/DC=org/DC=A/CN=x")
    assert (v.permitted, v.reason, v.rule.line) == (False, "deny", 1)
    # rewritten in place (same inode, same size): ctime/mtime still change the identity
    p = cadir / f"{H}.namespaces"
    text = p.read_text().replace("DENY", "deny")
    with open(p, "w") as f:
        f.write(text)
    assert capolicy.load(str(cadir), H)[0] is not first


def test_signing_policy_alone_and_precedence(cadir):
    write(cadir, f"{H}.signing_policy", f"access_id_CA X509 '{CA}'\npos_rights globus CA:sign\n"
                                        "cond_subjects globus '\"/DC=org/DC=A/*\"'\n")
    assert verdict(cadir, "/DC=org/DC=A/CN=x").policy.kind == "signing_policy"
    write(cadir, f"{H}.namespaces", 'TO Issuer SELF PERMIT Subject "/DC=org/DC=B/.*"\n')
    v = verdict(cadir, "/DC=org/DC=A/CN=x")
    assert (v.permitted, v.policy.kind) == (False, "namespaces")


def test_unparsable_and_oversized_files_are_system_faults(cadir):
    write(cadir, f"{H}.namespaces", "TO Issuer SELF\n")
    with pytest.raises(SystemFault) as e:
        capolicy.load(str(cadir), H)
    assert (e.value.exit_code, e.value.reason, e.value.detail["line"]) == (202, "namespace_file_invalid", 1)
    write(cadir, f"{H}.namespaces", "#" * (ns.MAX_POLICY_FILE + 1))
    with pytest.raises(SystemFault) as e:
        capolicy.load(str(cadir), H)
    assert e.value.reason == "namespace_file"


@pytest.mark.parametrize("damage", ["group_writable", "other_writable", "not_root"])
def test_untrusted_policy_file_is_a_system_fault(cadir, damage):
    p = write(cadir, f"{H}.namespaces", 'TO Issuer SELF PERMIT Subject "/DC=org/DC=A/.*"\n',
              mode={"group_writable": 0o664, "other_writable": 0o646}.get(damage, 0o644))
    if damage == "not_root":
        os.chown(p, 47001, 0)
    with pytest.raises(SystemFault) as e:
        capolicy.load(str(cadir), H)
    assert e.value.exit_code == 202
