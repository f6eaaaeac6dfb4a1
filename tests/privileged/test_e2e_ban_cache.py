"""The installed engine answers from the cached index of a ban file exactly as from the
file: the same refusal evidence on the cold call and on the cache hit (a ban written in
RFC 4514 spelling among 3,000 lines, a second ban file and inline bans merged in), and
everyone else still maps."""
import glob
import os
import time

from tests.privileged.conftest import USER1_DN


def test_cache_hit_refuses_as_the_parsed_file(gx):
    etc = gx.prefix / "etc" / "glexec-py"
    dn_file, ca_file = etc / "ban_dn.db", etc / "ban_ca.db"
    other = [f'"/DC=test/DC=glexec-py/CN=Someone {i}"' for i in range(3000)]
    # USER1 banned in RFC 4514 spelling (the engine sees the slash form) near the end
    rfc = ",".join(reversed(USER1_DN.lstrip("/").split("/")))
    dn_file.write_text("\n".join(["# site bans", *other, f'"{rfc}"', '"/DC=x/CN=y*"']) + "\n")
    ca_file.write_text('"/DC=nowhere/CN=Some CA"\n')
    for f in (dn_file, ca_file):
        os.chown(f, 0, 0)
        os.chmod(f, 0o644)
    time.sleep(2.3)                         # past the racy window: the version is cached
    gx.config(bans={"dn_files": [str(dn_file)], "ca_files": [str(ca_file)],
                    "fingerprint": ["ab" * 32]})
    state = gx.prefix / "var" / "lib" / "glexec-py"
    evidence = []
    for call in ("cold", "hit"):
        r = gx.run(["/usr/bin/id", "-un"])
        gx.assert_refused(r, 203, "banned_dn")
        evidence.append({k: r.records[0]["detail"][k] for k in ("ban_entry", "ban_where")})
        assert len(glob.glob(str(state / "bans-*.cache"))) == 2, call
    assert evidence[0] == evidence[1] == {"ban_entry": rfc, "ban_where": f"{dn_file}:3002"}
    r = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user2"))
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget2\n"
