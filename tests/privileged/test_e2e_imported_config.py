"""glexec-import's output runs the real setuid glexec: an OSG-style glexec.conf + lcmaps.db
(verifyproxy -> localaccount -> glexec tracking) pointing at this prefix's trust dir and
grid-mapfile is imported, installed as the prefix's glexec.yaml (only the test prefix's
PAM service name substituted), and the session's proxies are mapped as LCMAPS's
localaccount would: user1 -> gxttarget1, user2 -> gxttarget2, user3 (no line) refused 203,
a caller outside user_white_list refused 203."""
import os
import sys
from pathlib import Path

from tests.privileged.test_e2e_refuse import SH
from tests.support import install as inst

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

GLEXEC_CONF = """[glexec]
linger                    = yes
user_identity_switch_by   = glexec
use_lcas                  = no
user_white_list           = gxtpilot
preserve_env_variables    = no
create_target_proxy       = yes
log_destination           = syslog
lcmaps_db_file            = {dir}/lcmaps.db
lcmaps_get_account_policy = glexec
"""
LCMAPS_DB = """path = /usr/lib64/lcmaps
gridmapfile = "lcmaps_localaccount.mod" "-gridmap {gridmap}"
verifyproxy = "lcmaps_verify_proxy.mod" "--allow-limited-proxy" " -certdir {certdir}"
glexectracking = "lcmaps_glexec_tracking.mod" "-exec /usr/sbin/glexec_monitor"
glexec:
verifyproxy -> gridmapfile
gridmapfile -> glexectracking
"""


def _import(gx):
    from glexec_tools.importer.cli import main
    d = gx.dir("site", owner="root")
    (d / "glexec.conf").write_text(GLEXEC_CONF.format(dir=d))
    (d / "lcmaps.db").write_text(LCMAPS_DB.format(gridmap=inst.gridmap_path(gx.prefix),
                                                  certdir=inst.trust_dir_path(gx.prefix)))
    out = d / "glexec.yaml"
    code = main(["--glexec-conf", str(d / "glexec.conf"), "--output", str(out),
                 "--state-dir", str(Path(gx.prefix) / "var" / "lib" / "glexec-py"),
                 "--audit-file", str(inst.audit_path(gx.prefix))])
    assert code == 0          # clean: the tracking plugin became audit.monitor_lines
    text = out.read_text()
    assert 'order: ["local"]' in text and 'service: "glexec"' in text
    assert "monitor_lines: true" in text
    return text.replace('service: "glexec"', f'service: "{inst.pam_service(gx.prefix)}"')


def test_imported_config_maps_like_localaccount(gx, capsys):
    inst.write_config_text(gx.prefix, _import(gx))
    capsys.readouterr()
    for which, account in (("user1", "gxttarget1"), ("user2", "gxttarget2")):
        mark = gx.marker(f"who-{which}")
        r = gx.run([SH, "-c", f'id -un > "{mark}"'], proxy=gx.proxy(which))
        gx.assert_granted(r)
        assert mark.read_text().strip() == account, r
    r = gx.run([SH, "-c", "true"], proxy=gx.proxy("user3"))
    gx.assert_refused(r, 203, "no_mapping")
    r = gx.run([SH, "-c", "true"], user="gxtgroupie", proxy=gx.proxy("user1", owner="gxtgroupie"))
    gx.assert_refused(r, 203, "caller_not_allowed")
    assert os.path.exists(inst.audit_path(gx.prefix))
