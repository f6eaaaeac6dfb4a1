"""Smoke tests of the privileged fixtures themselves (accounts, PKI, config, install)."""
import grp
import os
import pwd
import stat

import pytest
import yaml

from tests.support import accounts as acc
from tests.support import install as inst
from tests.support.pki import openssl_verify
from tests.support.runas import read_audit, run_as


def test_accounts_exist_with_expected_ids_and_groups(accounts):
    p, t1, t2, g, o = (accounts.pilot, accounts.target1, accounts.target2, accounts.groupie,
                       accounts.outsider)
    for a in (p, t1, t2, g, o):
        assert a.name.startswith("gxt") and 47000 <= a.uid <= 47999
        assert pwd.getpwnam(a.name).pw_shell == "/bin/sh"
        assert a.home.parent == acc.HOME_BASE
    assert set(p.supplementary) == {grp.getgrnam("gxtextra").gr_gid}
    assert set(t1.supplementary) == {grp.getgrnam("gxtvo").gr_gid}
    assert t2.supplementary == ()
    assert "gxtgroupie" in grp.getgrnam("gxtpilotgrp").gr_mem
    for t in (t1, t2):
        st = t.home.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == t.uid and stat.S_IMODE(st.st_mode) == 0o700
    assert not p.home.exists()  # no home unless asked


def test_run_as_gives_real_identity_and_clean_env(accounts, run_dir):
    r = run_as("gxtpilot", ["/usr/bin/id"], cwd=str(run_dir))
    assert r.returncode == 0
    assert r.stdout.decode() == ("uid=47001(gxtpilot) gid=47001(gxtpilot) "
                                 "groups=47001(gxtpilot),47100(gxtextra)\n")
    r = run_as("gxtpilot", ["/usr/bin/env"], env={"FOO": "bar"})
    assert sorted(r.stdout.decode().split()) == ["FOO=bar", "PATH=/usr/bin:/bin"]
    r = run_as("gxtpilot", ["/bin/sh", "-c", 'echo $$ $(ps -o sid= -p $$)'])
    pid, sid = r.stdout.split()
    assert pid == sid and int(pid) == r.pid


def test_guards_refuse_foreign_accounts():
    with pytest.raises(acc.AccountError):
        acc.remove_user("root")
    with pytest.raises(acc.AccountError):
        acc.create_user("gxtbad", 1000, "gxtpilot")
    with pytest.raises(acc.AccountError):
        acc.kill_uid_processes({0})


def test_pki_proxies_verify_with_openssl(pkis):
    ca = pkis.pki.ca_dir
    assert openssl_verify(ca, pkis.proxies["user1"])
    assert openssl_verify(ca, pkis.proxies["user3"])
    assert not openssl_verify(ca, pkis.proxies["rogue"])
    assert not openssl_verify(ca, pkis.proxies["expired"])


def test_config_renders_as_strict_yaml(tmp_path):
    prefix = tmp_path
    cfg = inst.default_config(prefix)
    text = inst.render_yaml(inst._merge(cfg, {"payload": {"linger": False},
                                              "target_proxy": inst.DELETE}))
    data = yaml.safe_load(text)
    assert data["payload"] == {"linger": False, "preserve_env": [], "keep_caller_groups": []}
    assert "target_proxy" not in data
    assert data["callers"]["users"] == ["gxtpilot"]
    assert yaml.safe_load(inst.render_yaml(cfg)) == cfg


def test_install_prefix_layout(prefix, pkis):
    g = inst.glexec_path(prefix)
    st = g.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o4755
    for d in [prefix, *prefix.parents]:
        s = d.lstat()
        assert s.st_uid == 0 and not s.st_mode & 0o022, d
    assert not str(prefix).startswith("/tmp")
    c = inst.config_path(prefix)
    s = c.stat()
    assert s.st_uid == 0 and stat.S_IMODE(s.st_mode) == 0o644
    assert yaml.safe_load(c.read_text())["credentials"]["ca_dir"] == str(inst.trust_dir_path(prefix))
    assert openssl_verify(inst.trust_dir_path(prefix), pkis.proxies["user1"])
    assert inst.gridmap_path(prefix).read_text().count('"/DC=test/DC=glexec-py/CN=') == 2
    assert isinstance(read_audit(prefix), list)
