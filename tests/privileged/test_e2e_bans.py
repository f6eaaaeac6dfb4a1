"""Global bans through the installed binary: checked before any mapping, at every proxy
depth, and a broken ban source denies everyone."""
import os
import subprocess

from tests.privileged.conftest import USER1_DN, USER2_DN


def _banfile(gx, name, text, mode=0o644, owner=0):
    path = gx.prefix / "etc" / "glexec-py" / name
    path.write_text(text)
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    return path


def test_banned_dn_is_refused_and_others_still_map(gx):
    f = _banfile(gx, "ban_dn.db", f'"{USER1_DN}"\n')
    gx.config(bans={"dn_files": [str(f)]})
    r = gx.run(["/usr/bin/id", "-un"])
    gx.assert_refused(r, 203, "banned_dn")
    assert r.records[0]["detail"]["ban_entry"] == USER1_DN
    r = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user2"))
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget2\n"


def test_ban_applies_to_a_proxy_of_a_proxy(gx, pkis):
    f = _banfile(gx, "ban_dn.db", f'"{USER1_DN}"\n')
    gx.config(bans={"dn_files": [str(f)]})
    inner = pkis.proxies["user1"]
    deeper = gx.box / "proxy2.pem"
    # a second-level proxy signed by the first proxy, made by grid-proxy-init
    import subprocess
    subprocess.run(["grid-proxy-init", "-q", "-cert", str(inner), "-key", str(inner), "-out", str(deeper)],
                   check=True, env={"X509_CERT_DIR": str(pkis.pki.ca_dir), "PATH": "/usr/bin:/bin"})
    os.chown(deeper, gx.accounts.pilot.uid, gx.accounts.pilot.gid)
    os.chmod(deeper, 0o600)
    r = gx.run(["/usr/bin/id"], proxy=deeper)
    gx.assert_refused(r, 203, "banned_dn")


def _subject(pem_path):
    from cryptography import x509
    return x509.load_pem_x509_certificate(pem_path.read_bytes()).subject.rfc4514_string()


def test_ban_of_a_dn_only_a_proxy_has(gx, pkis):
    """The engine hands every subject of the chain to the ban check, not only the EEC's:
    a ban on the first proxy's own subject (EEC DN + its CN) refuses that proxy and a
    second-level proxy made from it (banned DN at an intermediate depth), and the same
    user's other proxy still maps."""
    inner = pkis.proxies["user1"]
    deeper = gx.box / "proxy2.pem"
    subprocess.run(["grid-proxy-init", "-q", "-cert", str(inner), "-key", str(inner), "-out", str(deeper)],
                   check=True, env={"X509_CERT_DIR": str(pkis.pki.ca_dir), "PATH": "/usr/bin:/bin"})
    os.chown(deeper, gx.accounts.pilot.uid, gx.accounts.pilot.gid)
    os.chmod(deeper, 0o600)
    banned = _subject(inner)
    assert banned.startswith("CN=") and banned != _subject(deeper)
    gx.config(bans={"dn": [banned]})
    for proxy in (gx.proxy("user1"), deeper):
        r = gx.run(["/usr/bin/id"], proxy=proxy)
        gx.assert_refused(r, 203, "banned_dn")
        assert r.records[0]["detail"]["ban_entry"] == banned
    other = gx.box / "other-user1.pem"
    pkis.pki.proxy(pkis.user1, other)     # same EEC, another proxy CN: not banned
    os.chown(other, gx.accounts.pilot.uid, gx.accounts.pilot.gid)
    gx.assert_granted(gx.run(["/usr/bin/id"], proxy=other))


def test_wildcard_ban_in_lcmaps_syntax(gx):
    f = _banfile(gx, "ban_dn.db", '# banned\n"/DC=test/DC=glexec-py/CN=Test User T*"\n')
    gx.config(bans={"dn_files": [str(f)]})
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=gx.proxy("user2")), 203, "banned_dn")


def test_inline_ban_by_ca(gx, pkis):
    gx.config(bans={"ca": [pkis.pki.ca_dn]})
    gx.assert_refused(gx.run(["/usr/bin/id"]), 203, "banned_ca")


def test_prefix_of_a_name_is_not_a_ban(gx):
    gx.config(bans={"dn": [USER1_DN[:-1]]})  # ".../CN=Test User On" must not ban "...One"
    gx.assert_granted(gx.run(["/usr/bin/id"]))


def test_missing_ban_file_denies_everyone(gx):
    gx.config(bans={"dn_files": [str(gx.prefix / "etc" / "glexec-py" / "absent.db")]})
    for proxy in ("user1", "user2"):
        gx.assert_refused(gx.run(["/usr/bin/id"], proxy=gx.proxy(proxy)), 203, "bans_unavailable")


def test_ban_file_writable_by_others_denies_everyone(gx):
    f = _banfile(gx, "ban_dn.db", '"/DC=nobody/CN=x"\n', mode=0o666)
    gx.config(bans={"dn_files": [str(f)]})
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=gx.proxy("user2")), 203, "bans_unavailable")


def test_unparsable_ban_file_denies_everyone(gx):
    f = _banfile(gx, "ban_dn.db", '"/DC=test/CN=unterminated\n')
    gx.config(bans={"dn_files": [str(f)]})
    gx.assert_refused(gx.run(["/usr/bin/id"], proxy=gx.proxy("user2")), 203, "bans_unavailable")


def test_ban_takes_effect_on_the_next_call(gx):
    f = _banfile(gx, "ban_dn.db", "# nobody yet\n")
    gx.config(bans={"dn_files": [str(f)]})
    gx.assert_granted(gx.run(["/usr/bin/id"]))
    _banfile(gx, "ban_dn.db", f'"{USER1_DN}"\n')
    gx.assert_refused(gx.run(["/usr/bin/id"]), 203, "banned_dn")


def test_ban_file_over_the_size_cap_denies_everyone(gx):
    f = _banfile(gx, "ban_dn.db", '"/DC=nobody/CN=x"\n' * 100)
    gx.config(bans={"dn_files": [str(f)], "max_file_size": 1000})
    r = gx.run(["/usr/bin/id"], proxy=gx.proxy("user2"))
    gx.assert_refused(r, 203, "bans_unavailable")
    assert "max_file_size" in r.records[0]["detail"]["explain"]


def test_irregular_wildcard_ban_denies_everyone(gx):
    # glibc's fnmatch (LCMAPS) reads "[M[:]" as the set {M, [, :}: this line bans user2 there;
    # a matcher that read it otherwise would fail open, so the file is refused.
    f = _banfile(gx, "ban_dn.db", '"/DC=test/DC=glexec-py/CN=Test User [T[:]wo*"\n')
    gx.config(bans={"dn_files": [str(f)]})
    r = gx.run(["/usr/bin/id"], proxy=gx.proxy("user2"))
    gx.assert_refused(r, 203, "bans_unavailable")
