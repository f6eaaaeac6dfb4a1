#!/usr/bin/python3
"""Golden decision cases for ``glexec-check explain``: each ``golden/<case>.yaml`` is a site
(gridmapfile, order, bans, pools, existing leases) and a request; ``golden/<case>.json`` is
the explanation it must produce (paths under the case's scratch directory shown as
``$SITE``).  Each case file starts with a comment naming the policy rule it documents.

    tests/check/golden.py            compare every case, print the diffs, exit 1 on any
    tests/check/golden.py --regen    rewrite the .json files, printing every diff it makes

A site is built in a fresh root-owned directory (the engine's trust rules apply to the files
the explanation reads) with accounts from passwd/group files (``--passwd/--group``)."""
import difflib
import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import redirect_stdout
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for p in (str(REPO), str(REPO / "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)

HERE = Path(__file__).resolve().parent / "golden"
BASE = "/var/lib/glexec-py-tests"

PASSWD = """\
alice:x:5001:5001::/home/alice:/bin/sh
bob:x:5003:5003::/home/bob:/bin/sh
atlprd:x:5002:7001::/home/atlprd:/bin/sh
lowuid:x:500:500::/home/lowuid:/bin/sh
wheelie:x:5010:5010::/home/wheelie:/bin/sh
gxp001:x:6001:6000::/home/gxp001:/bin/sh
gxp002:x:6002:6000::/home/gxp002:/bin/sh
gxp003:x:6003:6000::/home/gxp003:/bin/sh
lowp001:x:900:6000::/home/lowp001:/bin/sh
"""
GROUP = """\
alice:x:5001:
bob:x:5003:
lowuid:x:500:
wheelie:x:5010:
sudo:x:27:wheelie
gxp:x:6000:
atlas:x:7000:
atlasprod:x:7001:
cms:x:7100:
"""
GRIDMAP = """\
"/DC=org/DC=example/CN=Alice" alice
"/DC=org/DC=example/CN=Atlas Production" atlprd
"/atlas/Role=production/Capability=NULL" atlprd
"/DC=org/DC=example/*" .gxp
"""


def build_site(case, root):
    """Write the case's site under ``root``: config, gridmapfile, groupmapfile, ban files,
    passwd/group, gridmapdir with pool entries (``pools: {name: count}``, default one
    ``gxp001``) and leases made by the real lease store."""
    site = case.get("site", {})
    os.chmod(root, 0o755)
    (root / "ca").mkdir(mode=0o755)
    (root / "state").mkdir(mode=0o700)
    (root / "log").mkdir(mode=0o755)
    gmd = root / "gridmapdir"
    gmd.mkdir(mode=0o755)
    (root / "passwd").write_text(PASSWD + site.get("passwd", ""))
    (root / "group").write_text(GROUP + site.get("group", ""))
    (root / "grid-mapfile").write_text(site.get("gridmapfile", GRIDMAP))
    mapping = {"gridmapfile": str(root / "grid-mapfile"), "gridmapdir": str(gmd)}
    mapping.update(site.get("mapping", {}))
    if "groupmapfile" in site:
        (root / "groupmapfile").write_text(site["groupmapfile"])
        mapping["groupmapfile"] = str(root / "groupmapfile")
    bans = dict(site.get("bans", {}))
    for kind, text in site.get("ban_files", {}).items():
        path = root / f"ban-{kind}"
        if text is not None:           # None: configured but missing (a broken source)
            path.write_text(text)
        bans.setdefault(f"{kind}_files", []).append(str(path))
    cfg = {"callers": {"users": ["pilot"]},
           "credentials": {"ca_dir": str(root / "ca"), "namespace_policy": "ignore"},
           "mapping": mapping, "audit": {"file": str(root / "log" / "audit.jsonl"), "syslog": False},
           "pam": {"enabled": False}, "bans": bans, "state_dir": str(root / "state")}
    (root / "glexec.yaml").write_text(json.dumps(cfg, indent=1))   # JSON is YAML
    # Readdir order is the file system's (hash order), so each leased entry is created just
    # before its lease is made (it is then the only free one) and the rest afterwards; a
    # case that shows "would lease" keeps one free entry, so it reads the same everywhere.
    for lease in site.get("leases", ()):
        (gmd / lease["account"]).touch(mode=0o644)
        _make_lease(gmd, lease)
    for pool, n in site.get("pools", {"gxp": 1}).items():
        for i in range(1, n + 1):
            entry = gmd / f"{pool}{i:03d}"
            if not entry.exists():
                entry.touch(mode=0o644)


def _make_lease(gmd, lease):
    """A lease made the way the engine makes one (GridmapDir.acquire with the owner)."""
    from glexec_py.core import dn, identity, mapping
    from glexec_py.effects.gridmapdir import GridmapDir
    ident = identity.Identity("x509", "", lease["dn"], (), (), 0, 0, "", {},
                              dn.canonical(dn.parse_slash(lease["dn"])))
    key = mapping.lease_key(ident)
    with GridmapDir(str(gmd), sync="none") as store:
        got = store.acquire(key, lease.get("pool", "gxp"), mapcount=lease.get("mapcount", 0),
                            owner=mapping.lease_owner(ident, key))
    assert got[0].decode() == lease["account"], (got, lease)


def argv_of(case, root):
    req = case["request"]
    argv = ["explain", "--json", "--config", str(root / "glexec.yaml"),
            "--passwd", str(root / "passwd"), "--group", str(root / "group")]
    if "dn" in req:
        argv += ["--dn", req["dn"]]
    for f in req.get("fqans", ()):
        argv += ["--fqan", f]
    if "issuer" in req:
        argv += ["--issuer", req["issuer"]]
    if "mapcount" in req:
        argv += ["--mapcount", str(req["mapcount"])]
    return argv


def run_case(path):
    """(exit code, the explanation's JSON text with the site dir as $SITE)."""
    import yaml
    from glexec_tools.check import cli
    case = yaml.safe_load(Path(path).read_text())
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="check-golden-", dir=BASE))
    try:
        build_site(case, root)
        out = io.StringIO()
        with redirect_stdout(out):
            code = cli.main(argv_of(case, root))
        text = out.getvalue().replace(str(root), "$SITE")
    finally:
        shutil.rmtree(root)
    doc = json.loads(text)
    doc["exit"] = code
    return code, json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def cases():
    return sorted(HERE.glob("*.yaml"))


def diff(path, got):
    want_path = path.with_suffix(".json")
    want = want_path.read_text() if want_path.exists() else ""
    return "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                        str(want_path), "explain output"))


def main(argv):
    regen = "--regen" in argv
    bad = 0
    for path in cases():
        _code, got = run_case(path)
        d = diff(path, got)
        if d:
            bad += 1
            sys.stdout.write(d)
            if regen:
                path.with_suffix(".json").write_text(got)
                sys.stdout.write(f"rewrote {path.with_suffix('.json').name}\n")
    sys.stdout.write(f"{len(cases())} cases, {bad} differ{' (rewritten)' if regen and bad else ''}\n")
    return 1 if bad and not regen else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
