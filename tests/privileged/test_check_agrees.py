"""glexec-check explain says what the installed setuid glexec then does: for generated
gridmapfiles (exact and wildcard lines, local accounts, pools, bare dots, missing accounts)
and mapping orders, each identity's explanation (verified proxy, PAM account check as root,
pool lease prediction) is compared with a real call as the pilot: the same account (a
predicted "would lease" entry is the one leased, a reused lease the same), or the same
refusal (exit code and audit reason).

Accounts: group gxtchk 47166, pool gxtchk01-02 47167-47168."""
import json
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import accounts as acc
from tests.support import install as inst

POOL = ["gxtchk01", "gxtchk02"]
BASE = "/DC=test/DC=glexec-py"
IDENTITIES = [f"{BASE}/CN=Check A", f"{BASE}/CN=Check B", f"{BASE}/OU=Other/CN=Check C"]
SUBJECTS = IDENTITIES * 2 + [f"{BASE}/CN=Check*", f"{BASE}/*", f"{BASE}/*", "*Check B", f"{BASE}/CN=Check [AC]", "/DC=other/*"]
MAPPINGS = ["gxttarget1", "gxttarget2", ".gxtchk", ".", "gxtnosuchuser"]


@pytest.fixture(scope="module")
def pool_accounts(accounts):
    acc.create_group("gxtchk", 47166)
    made = []
    try:
        for i, name in enumerate(POOL):
            made.append(acc.create_user(name, 47167 + i, "gxtchk"))
        yield made
    finally:
        acc.kill_uid_processes({a.uid for a in made})
        for a in made:
            acc.remove_user(a.name)
        acc.remove_group("gxtchk")


@pytest.fixture(scope="module")
def check_proxies(pkis, run_dir):
    d = run_dir / "check-proxies"
    d.mkdir()
    return {dn: pkis.pki.proxy(pkis.pki.user(dn), d / f"{i}.pem") for i, dn in enumerate(IDENTITIES)}


def _explain(gx, proxy):
    tool = gx.prefix / "sbin" / "glexec-check"
    r = subprocess.run([str(tool), "explain", "--json", "--proxy", str(proxy), "--caller", "gxtpilot",
                        "--config", str(inst.config_path(gx.prefix))], capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r
    return json.loads(r.stdout)


line = st.tuples(st.sampled_from(SUBJECTS), st.lists(st.sampled_from(MAPPINGS), min_size=1, max_size=2))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line, min_size=0, max_size=5), order=st.sampled_from([["local", "pool"], ["pool", "local"]]),
       calls=st.lists(st.sampled_from(IDENTITIES), min_size=3, max_size=5), catch_all=st.booleans())
def test_explain_predicts_the_real_call(gx, pool_accounts, check_proxies, lines, order, calls, catch_all):
    d = gx.prefix / "var" / "lib" / "glexec-py" / "check-gridmapdir"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o755)
    for name in POOL:
        (d / name).touch(mode=0o644)
    if catch_all:          # every identity maps somewhere: leases, reuse, exhaustion (3 > 2 entries)
        lines = [*lines, (f"{BASE}/*", [".gxtchk"])]
    gx.gridmap([(s, " ".join(m)) for s, m in lines])
    gx.config(mapping={"gridmapdir": str(d), "max_leases_per_caller": 0, "order": order})
    try:
        for dn in calls:
            exp = _explain(gx, check_proxies[dn])
            r = gx.run(["/usr/bin/id", "-un"], proxy=gx.file("p.pem", check_proxies[dn].read_bytes(), mode=0o600))
            verdict = exp["verdict"]
            if verdict["decision"] == "grant":
                gx.assert_granted(r)
                assert r.stdout.decode().strip() == exp["account"]["name"], (exp, r)
                lease = exp.get("lease")
                if lease:
                    assert r.grants[0]["lease"]["name"] == lease["lease"], (exp, r)
                    assert r.grants[0]["lease"]["reused"] == (lease["status"] == "existing lease"), (exp, r)
            else:
                gx.assert_refused(r, verdict["exit"], verdict["reason"])
    finally:
        shutil.rmtree(d, ignore_errors=True)
