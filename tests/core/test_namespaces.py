"""core.namespaces: IGTF .namespaces / Globus .signing_policy parsing and matching."""
import pytest
from hypothesis import example, given, settings, strategies as st

from glexec_py.core import dn, namespaces as ns
from tests.support import nsoracle

CA_A = "/DC=org/DC=A/CN=A Certification Authority"
CA_AB = "/DC=org/DC=AB/CN=AB Certification Authority"

# As the IGTF distribution writes them (header, continuation lines, comments).
IGTF_NAMESPACES = b"""\
##############################################################################
#NAMESPACES-VERSION: 1.0
#
# @(#)$Id: 0a1b2c3d.namespaces,v 1.1 2025/01/01 00:00:00 pmacvs Exp $
# CA alias    : A-CA
#    subord_of:
#    subjectDN: /DC=org/DC=A/CN=A Certification Authority
#    hash     : 0a1b2c3d
#
TO Issuer "/DC=org/DC=A/CN=A Certification Authority" \\
  PERMIT Subject "/DC=org/DC=A/.*"
#
TO Issuer "/DC=org/DC=A/CN=A Certification Authority" \\
  DENY Subject "/DC=org/DC=A/OU=Robots/.*"   # robots get their own CA
"""

IGTF_SIGNING_POLICY = b"""\
# ca-signing-policy.conf, see ca-signing-policy.doc for more information
#
# This is the configuration file describing the policy for what CAs are
# allowed to sign whoses certificates.
#
access_id_CA      X509         '/DC=org/DC=A/CN=A Certification Authority'
pos_rights        globus        CA:sign
cond_subjects     globus       '"/DC=org/DC=A/*" "/C=NL/O=A Partner/*"'
"""


def verdict(raw_ns, raw_sp, ca, subject):
    policies = (ns.parse_namespaces(raw_ns, "a.namespaces") if raw_ns is not None else None,
                ns.parse_signing_policy(raw_sp, "a.signing_policy") if raw_sp is not None else None)
    return ns.evaluate(policies, ca, subject)


def test_igtf_namespaces_file():
    p = ns.parse_namespaces(IGTF_NAMESPACES, "a.namespaces")
    assert [(r.permit, r.issuer, r.pattern, r.line) for r in p.rules] == [
        (True, CA_A, "/DC=org/DC=A/.*", 10), (False, CA_A, "/DC=org/DC=A/OU=Robots/.*", 13)]
    v = verdict(IGTF_NAMESPACES, None, CA_A, "/DC=org/DC=A/OU=People/CN=Alice")
    assert (v.permitted, v.reason, v.rule.line) == (True, "permit", 10)
    v = verdict(IGTF_NAMESPACES, None, CA_A, "/DC=org/DC=A/OU=Robots/CN=r2d2")
    assert (v.permitted, v.reason, v.rule.line) == (False, "deny", 13)
    assert v.to_audit() == {"file": "a.namespaces", "kind": "namespaces", "decision": "deny", "line": 13,
                            "rule": 'DENY Subject "/DC=org/DC=A/OU=Robots/.*"'}


@pytest.mark.parametrize("subject", ["/DC=org/DC=AB/CN=Mallory", "/DC=org/DC=A", "/DC=org/DC=Ax/CN=x",
                                     "/DC=org/DC=B/DC=A/CN=x", "/DC=com/DC=A/CN=x", "x/DC=org/DC=A/CN=x"])
def test_a_prefix_never_covers_a_sibling(subject):
    v = verdict(IGTF_NAMESPACES, IGTF_SIGNING_POLICY, CA_A, subject)
    assert (v.permitted, v.reason, v.rule) == (False, "no_rule_permits", None)


@pytest.mark.parametrize("subject", ["/DC=org/DC=AB/CN=Mallory", "/DC=org/DC=A", "/DC=org/DC=Ax/CN=x",
                                     "/DC=org/DC=B/DC=A/CN=x", "/C=NL/O=A Partnership/CN=x"])
def test_a_signing_policy_prefix_never_covers_a_sibling(subject):
    # A glob '/DC=org/DC=A/*' is decided by the signing_policy alone here (no .namespaces):
    # its '/' before the '*' is part of the namespace, as in the EACL form above.
    v = verdict(None, IGTF_SIGNING_POLICY, CA_A, subject)
    assert (v.permitted, v.reason, v.policy.kind) == (False, "no_rule_permits", "signing_policy")


def test_rules_only_for_their_issuer():
    # The AB CA's file names CA A: nothing in it speaks about AB, so there is no policy.
    assert verdict(IGTF_NAMESPACES, None, CA_AB, "/DC=org/DC=A/CN=x") is None
    assert verdict(None, IGTF_SIGNING_POLICY, CA_AB, "/DC=org/DC=A/CN=x") is None


def test_self_and_case_and_aliases():
    raw = (b'to issuer self permit subject "/dc=org/dc=a/cn=.*"\n'
           b'TO Issuer SELF PERMIT Subject "/DC=org/DC=A/Email=.*@a.org"\n')
    assert verdict(raw, None, CA_AB, "/DC=ORG/DC=a/CN=Bob").permitted  # SELF: the file's own CA
    assert verdict(raw, None, CA_AB, "/DC=org/DC=A/emailAddress=bob@a.org").permitted
    assert verdict(raw, None, CA_AB, "/DC=org/DC=A/E=bob@a.org").permitted
    assert not verdict(raw, None, CA_AB, "/DC=org/DC=A/emailAddress=bob@b.org").permitted


def test_issuer_compared_case_insensitively_with_aliases():
    raw = b'TO Issuer "/dc=ORG/dc=a/cn=a certification authority" PERMIT Subject ".*"\n'
    assert verdict(raw, None, CA_A, "/CN=x").permitted


def test_deny_wins_whatever_the_order():
    raw = (b'TO Issuer SELF DENY Subject "/DC=org/DC=A/CN=Eve"\n'
           b'TO Issuer SELF PERMIT Subject "/DC=org/DC=A/.*"\n')
    assert verdict(raw, None, CA_A, "/DC=org/DC=A/CN=Eve").reason == "deny"
    assert verdict(raw, None, CA_A, "/DC=org/DC=A/CN=Eve2").reason == "permit"


def test_several_clauses_continuations_and_comments():
    raw = (b'# leading comment\n\n'
           b'TO Issuer "/DC=org/DC=A/CN=A Certification Authority" \\\n'
           b'   PERMIT Subject "/DC=org/DC=A/OU=(People|Hosts)/.*" \\\n'
           b'   DENY   Subject "/DC=org/DC=A/OU=People/CN=[0-9]+"   # numeric CNs are tests\n'
           b'TO Issuer SELF PERMIT Subject "/DC=org/DC=A/CN=literal\\#hash"\n')
    p = ns.parse_namespaces(raw)
    assert [(r.permit, r.line) for r in p.rules] == [(True, 3), (False, 3), (True, 6)]
    assert verdict(raw, None, CA_A, "/DC=org/DC=A/OU=Hosts/CN=h.a.org").permitted
    assert verdict(raw, None, CA_A, "/DC=org/DC=A/OU=People/CN=123").reason == "deny"
    assert not verdict(raw, None, CA_A, "/DC=org/DC=A/OU=Other/CN=x").permitted
    assert verdict(raw, None, CA_A, "/DC=org/DC=A/CN=literal#hash").permitted


def test_regex_metacharacters_are_literal_when_escaped():
    raw = b'TO Issuer SELF PERMIT Subject "/DC=org/DC=a\\.b/CN=.*"\n'
    assert verdict(raw, None, CA_A, "/DC=org/DC=a.b/CN=x").permitted
    assert not verdict(raw, None, CA_A, "/DC=org/DC=aXb/CN=x").permitted


@pytest.mark.parametrize("raw", [
    b'TO Issuer "/C=X/CN=CA" PERMIT Subject "/C=X/.*',            # unterminated string
    b'TO Issuer "/C=X/CN=CA" PERMIT "/C=X/.*"',                   # no Subject keyword
    b'TO Issuer "/C=X/CN=CA" ALLOW Subject "/C=X/.*"',            # unknown verb
    b'TO Issuer "/C=X/CN=CA"',                                    # no condition
    b'TO "/C=X/CN=CA" PERMIT Subject "/C=X/.*"',                  # no Issuer keyword
    b'TO Issuer /C=X/CN=CA PERMIT Subject "/C=X/.*"',             # unquoted issuer
    b'TO Issuer "C=X,CN=CA" PERMIT Subject ".*"',                 # not a one-line DN
    b'TO Issuer SELF PERMIT Subject "/C=X/{2}"',                  # intervals unsupported
    b'TO Issuer SELF PERMIT Subject "*/C=X"',                     # nothing to repeat
    b'TO Issuer SELF PERMIT Subject "/C=X/a**"',                  # quantifier after quantifier
    b'TO Issuer SELF PERMIT Subject "/C=X/[[:alpha:]]"',          # POSIX classes unsupported
    b'TO Issuer SELF PERMIT Subject "/C=X/[abc"',                 # unterminated bracket
    b'TO Issuer SELF PERMIT Subject "/C=X/(a"',                   # unbalanced group
    b'TO Issuer SELF PERMIT Subject "/C=X/\\"',                   # quote escaped: unterminated
    b'TO Issuer SELF PERMIT Subject "/C=X/a$b"',                  # anchor inside
    b'TO Issuer SELF PERMIT Subject "/C=\xc3\xa9/.*"',            # not ASCII
    b'TO Issuer SELF PERMIT Subject "/C=X/\x00"',                 # NUL
    b'#NAMESPACES-VERSION: 2.0\nTO Issuer SELF PERMIT Subject ".*"',
    b'TO Issuer SELF PERMIT Subject ".*" \\',                     # continuation at the end
    b'TO Issuer SELF PERMIT Subject"/C=X/.*"',                    # glued tokens
    b"x" * (ns.MAX_POLICY_FILE + 1),
])
def test_malformed_namespaces(raw):
    with pytest.raises(ns.PolicyError):
        ns.parse_namespaces(raw)


def test_igtf_signing_policy_file():
    p = ns.parse_signing_policy(IGTF_SIGNING_POLICY, "a.signing_policy")
    assert [(r.permit, r.issuer, r.pattern, r.line) for r in p.rules] == [
        (True, CA_A, "/DC=org/DC=A/*", 8), (True, CA_A, "/C=NL/O=A Partner/*", 8)]
    assert verdict(None, IGTF_SIGNING_POLICY, CA_A, "/C=nl/O=A partner/CN=Carol").permitted
    assert not verdict(None, IGTF_SIGNING_POLICY, CA_A, "/C=NL/O=A PartnerX/CN=Carol").permitted
    v = verdict(None, IGTF_SIGNING_POLICY, CA_A, "/DC=org/DC=AB/CN=x")
    assert v.to_audit() == {"file": "a.signing_policy", "kind": "signing_policy", "decision": "no_rule_permits"}


def test_signing_policy_glob_question_mark_and_several_blocks():
    raw = (b"access_id_CA X509 '/C=X/CN=CA One'\npos_rights globus CA:sign\n"
           b"cond_subjects globus '\"/C=X/O=One/CN=??\"'\n\n"
           b"# second CA of the same file\naccess_id_CA X509 '/C=X/CN=CA Two'\n"
           b"pos_rights globus CA:sign\ncond_subjects globus '\"/C=X/O=Two/*\"'\n")
    assert verdict(None, raw, "/C=X/CN=CA One", "/C=X/O=One/CN=ab").permitted
    assert not verdict(None, raw, "/C=X/CN=CA One", "/C=X/O=One/CN=abc").permitted
    assert not verdict(None, raw, "/C=X/CN=CA One", "/C=X/O=Two/CN=ab").permitted
    assert verdict(None, raw, "/C=X/CN=CA Two", "/C=X/O=Two/CN=ab").permitted


@pytest.mark.parametrize("raw", [
    b"access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:sign\n",                 # incomplete
    b"access_id_CA X509 '/C=X/CN=CA'\nneg_rights globus CA:sign\ncond_subjects globus '\"*\"'\n",
    b"access_id_ANYBODY X509 '/C=X/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus '\"*\"'\n",
    b"access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus '/C=X/*'\n",
    b"access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/C=X/*'\n",
    b"access_id_CA X509 '/C=X/CN=CA'\npos_rights globus CA:sign\ncond_subjects globus ''\n",
    b"access_id_CA X509 '/C=X/CN=CA\npos_rights globus CA:sign\ncond_subjects globus '\"*\"'\n",
    b"cond_subjects globus '\"*\"'\n",
])
def test_malformed_signing_policy(raw):
    with pytest.raises(ns.PolicyError):
        ns.parse_signing_policy(raw)


def test_namespaces_preferred_over_signing_policy():
    # The signing_policy would permit /C=NL/O=A Partner/*; the namespaces file decides.
    v = verdict(IGTF_NAMESPACES, IGTF_SIGNING_POLICY, CA_A, "/C=NL/O=A Partner/CN=Carol")
    assert (v.permitted, v.policy.kind) == (False, "namespaces")
    # A namespaces file with no rule for this CA leaves the decision to the signing_policy.
    other = b'TO Issuer "/C=ZZ/CN=Someone Else" PERMIT Subject ".*"\n'
    v = verdict(other, IGTF_SIGNING_POLICY, CA_A, "/C=NL/O=A Partner/CN=Carol")
    assert (v.permitted, v.policy.kind) == (True, "signing_policy")


def test_ambiguous_subjects_are_never_matched_as_text():
    # O="A/CN=x" prints like two RDNs; a value with '+' like a multi-valued RDN; a literal
    # backslash like OpenSSL's \xHH escapes (dn.oneline renders as OpenSSL 3 does).
    C, O, CN = "2.5.4.6", "2.5.4.10", "2.5.4.3"
    for value in ("A/CN=x", "A+CN=x", "Andr\\xC3\\xA9", "A\\"):
        name = dn.make_dn([[(C, "NL")], [(O, value)]])
        with pytest.raises(ns.Ambiguous):
            ns.subject_text(dn.oneline(name), lambda: name)
    plain = dn.make_dn([[(C, "NL")], [(O, "A")], [(CN, "Andr\u00e9")]])
    assert ns.subject_text(dn.oneline(plain), lambda: plain) == "/C=NL/O=A/CN=Andr\\xC3\\xA9"
    multi = dn.make_dn([[(C, "NL")], [(O, "A"), (CN, "x")]])          # '+' as a separator is fine
    assert ns.subject_text(dn.oneline(multi), lambda: pytest.fail("no backslash: not parsed")) == "/C=NL/O=A+CN=x"


# -- properties ---------------------------------------------------------------------------

_chars = st.sampled_from(nsoracle.ALPHABET)
_glob_tokens = st.lists(st.one_of(_chars.map(lambda c: ("lit", c)), st.just(("any",)), st.just(("star",))),
                        max_size=8)
_ere_tokens = st.lists(st.one_of(
    _chars.map(lambda c: ("lit", c)), st.just(("any",)), st.just(("star",)),
    st.tuples(st.just("class"), st.text(nsoracle.CLASS_CHARS, min_size=1, max_size=3), st.booleans()),
    _chars.map(lambda c: ("opt", c)), _chars.map(lambda c: ("plus", c))), max_size=8)
_subjects = st.text(nsoracle.ALPHABET + "AbC", max_size=12)


@settings(max_examples=400, deadline=None)
@given(_ere_tokens, _subjects)
def test_ere_matcher_agrees_with_the_oracle(tokens, subject):
    rx = ns.regex_from_ere(nsoracle.render_ere(tokens))
    assert bool(rx.fullmatch(ns.normalise(subject))) == nsoracle.matches(tokens, subject)


@settings(max_examples=400, deadline=None)
@given(_glob_tokens, _subjects)
def test_glob_matcher_agrees_with_the_oracle(tokens, subject):
    rx = ns.regex_from_glob(nsoracle.render_glob(tokens))
    assert bool(rx.fullmatch(ns.normalise(subject))) == nsoracle.matches(tokens, subject)


_label = st.text("abcdefxyz0123-", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(_label, _label, _label)
def test_namespace_of_one_label_never_covers_another(a, b, cn):
    raw = f'TO Issuer SELF PERMIT Subject "/DC=org/DC={a}/.*"\n'.encode()
    got = verdict(raw, None, CA_A, f"/DC=org/DC={b}/CN={cn}").permitted
    assert got == (a.lower() == b.lower())


_eacl_words = st.sampled_from([b"TO", b"to", b"Issuer", b"SELF", b"PERMIT", b"DENY", b"Subject", b"#", b"\\\n",
                                b"\n", b" ", b'"/DC=org/DC=A/CN=A CA"', b'"/DC=org/DC=A/.*"', b'"(a|b)*[^x]?"',
                                b"access_id_CA", b"X509", b"pos_rights", b"globus", b"CA:sign", b"cond_subjects",
                                b"'/DC=org/DC=A/CN=A CA'", b"'\"/DC=org/*\" \"?\"'", b"'"])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.lists(_eacl_words, max_size=30).map(b" ".join)))
@example(b'TO Issuer SELF PERMIT Subject "/DC=org/DC=A/.*" DENY Subject "/dc=org/dc=a/ou=robots/.*"')
@example(b"access_id_CA X509 '/DC=org/DC=A/CN=A CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/DC=org/*\"'")
def test_policy_file_oracles(raw):
    """The fuzz target's oracles (tests/support/nsoracle.check_file), bounded."""
    nsoracle.check_file(raw)


def _ere_text():
    atom = st.one_of(st.sampled_from(list("aBc/=1 x") + [".", "\\.", "\\*", "[aB1]", "[^x]", "[a-c]"]))

    def extend(inner):
        group = inner.map(lambda t: f"({t})")
        alt = st.tuples(inner, inner).map(lambda t: f"{t[0]}|{t[1]}")
        quant = st.tuples(st.one_of(atom, group), st.sampled_from(["*", "+", "?"])).map("".join)
        return st.lists(st.one_of(atom, group, quant, alt), min_size=1, max_size=4).map("".join)

    return st.recursive(atom, extend, max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(_ere_text(), st.text("aAbBc/=1 x.*", max_size=10))
def test_ere_matcher_agrees_with_python_re(pattern, subject):
    """Differential against the re module (groups and alternation, which the token oracle
    does not model); both on lower-cased text."""
    import re
    assert bool(ns.regex_from_ere(pattern).fullmatch(ns.normalise(subject))) == \
        bool(re.fullmatch(pattern.lower(), subject.lower()))
