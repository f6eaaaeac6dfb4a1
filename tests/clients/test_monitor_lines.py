"""The tracking monitor's syslog lines (core/audit.py) and the LCMAPS-style identity line,
read by Gratia's gLExec probe rules (tests/support/gratia_rules.py): the probe gets the
target uid, DN, VO, first FQAN and whole CPU seconds; no control character or newline from
user data reaches a line."""
import string

from hypothesis import given, strategies as st

from glexec_py.core import audit
from tests.support import gratia_rules

PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


def as_logged(ident, message, host="wn042"):
    """What a syslog daemon writes to its file (traditional format) for one message."""
    return f"Dec  5 06:50:01 {host} {ident}: {message}"


def test_gratia_reads_our_lines():
    ident = audit.monitor_ident(4100, 4123)
    lines = audit.monitor_started(47011, "/DC=test/DC=glexec-py/CN=Test User One",
                                  ("testvo", "/DC=test/CN=voms.example"), ["/testvo/Role=NULL/Capability=NULL",
                                                                            "/testvo/prod"])
    lines.append(audit.monitor_terminated(12.97, 3.2))
    assert ident == "glexec.mon[4100#4123]"
    assert lines == ["Started, target uid 47011", 'Used DN: "/DC=test/DC=glexec-py/CN=Test User One"',
                     'Used VO: "testvo" Issuer: "/DC=test/CN=voms.example"',
                     'Used FQAN: "/testvo/Role=NULL/Capability=NULL"', 'Used FQAN: "/testvo/prod"',
                     "Terminated, CPU user 12 system 3"]
    rec = gratia_rules.parse([as_logged(ident, m) for m in lines])[(4100, 4123)]
    assert rec["jobuid"] == 47011 and rec["DN"] == "/DC=test/DC=glexec-py/CN=Test User One"
    assert rec["VO"] == "testvo" and rec["FQAN"] == "/testvo/Role=NULL/Capability=NULL"
    assert (rec["usercpu"], rec["syscpu"]) == (12, 3) and "start" in rec and "end" in rec


@given(st.binary(max_size=80), st.lists(st.binary(max_size=40), max_size=3), st.binary(max_size=20))
def test_hostile_identities_stay_on_one_printable_line(dn, fqans, vo):
    lines = audit.monitor_started(1, dn, (vo, b"/CN=x"), fqans) + [audit.monitor_terminated(0, 0)]
    lines.append(audit.identity_line(dn, fqans, 1, 2, (2, 3), lease=dn))
    for line in lines:
        assert set(line) <= PRINTABLE, line
    rec = gratia_rules.parse([as_logged(audit.monitor_ident(1, 2), m) for m in lines[:-1]])[(1, 2)]
    assert rec["jobuid"] == 1 and (rec["usercpu"], rec["syscpu"]) == (0, 0)
    assert '"' not in rec["DN"].replace('\\"', "")      # quotes inside the DN arrive escaped
    assert rec["DN"].encode() == audit._classic(dn).encode()


def test_identity_line_in_lcmaps_form():
    line = audit.identity_line("/DC=test/CN=Test User One", ["/testvo/Role=NULL/Capability=NULL"], 47011, 47011,
                               (47011, 47101), lease="%2fdc%3dtest%2fcn%3dtest%20user%20one")
    assert line == ("LCMAPS CRED FINAL: DN:\"/DC=test/CN=Test User One\",FQAN:\"/testvo/Role=NULL/Capability=NULL\""
                    "->mapped uid:'47011',pgid:'47011',sgid:'47101' lease:\"%2fdc%3dtest%2fcn%3dtest%20user%20one\"")
    assert audit.identity_line("/CN=a\nb", [], 1, 1, ()) == "LCMAPS CRED FINAL: DN:\"/CN=a\\nb\"->mapped uid:'1',pgid:'1'"
