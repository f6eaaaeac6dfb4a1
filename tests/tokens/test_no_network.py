"""Key headers (jku, x5u, x5c, jwk) are never fetched, never used: a local HTTP server
counts requests (must stay zero), and a fresh interpreter with an audit hook sees no
socket or urllib event while every hostile token is verified."""
import http.server
import json
import os
import subprocess
import threading

import pytest

from glexec_py.errors import CallerError

from .conftest import ISS_A, NOW, issuer, make_policy, sign, verify_token, wlcg_claims

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def server(rsa_b):
    """127.0.0.1 HTTP server serving the attacker's JWKS (rsa_b relabelled as kid rsa-a)."""
    hits = []
    body = json.dumps({"keys": [rsa_b.jwk(kid="rsa-a")]}).encode()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()
    srv.server_close()


def _hostile(url, rsa_a, rsa_b):
    """(token, signed by the real key?) pairs carrying key headers."""
    jwk_b = rsa_b.jwk(kid="rsa-a")
    out = []
    for hdr in ({"jku": url + "/jwks.json"}, {"x5u": url + "/cert.pem"},
                {"jku": url + "/a", "x5u": url + "/b"}, {"jwk": jwk_b}, {"x5c": ["MIIBIjAN"]}):
        out.append((sign(wlcg_claims(), rsa_a, headers=hdr), True))
        out.append((sign(wlcg_claims(), rsa_b, headers=dict(hdr, kid="rsa-a")), False))
        out.append((sign(wlcg_claims(), rsa_b, headers=dict(hdr, kid="attacker")), False))
    return out


def test_refuse_mode_makes_no_request(server, rsa_a, rsa_b, keys_by_issuer):
    url, hits = server
    pol = make_policy(issuer(ISS_A))                      # key_headers: refuse (default)
    for raw, _ in _hostile(url, rsa_a, rsa_b):
        with pytest.raises(CallerError) as ei:
            verify_token(raw, pol, keys_by_issuer, NOW)
        assert ei.value.reason == "token_kid"
    assert hits == []


def test_ignore_mode_uses_local_keys_only(server, rsa_a, rsa_b, keys_by_issuer):
    url, hits = server
    pol = make_policy(issuer(ISS_A, key_headers="ignore"))
    for raw, genuine in _hostile(url, rsa_a, rsa_b):
        if genuine:
            assert verify_token(raw, pol, keys_by_issuer, NOW).kid == "rsa-a"
        else:
            with pytest.raises(CallerError) as ei:
                verify_token(raw, pol, keys_by_issuer, NOW)
            assert ei.value.reason in ("token_signature", "token_kid")
    assert hits == []


def test_server_is_reachable(server):
    """The counter works: a real request is counted."""
    import urllib.request
    url, hits = server
    urllib.request.urlopen(url + "/probe", timeout=5).read()
    assert hits == ["/probe"]


_CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
sys.path.append("/usr/lib/python3/dist-packages")   # as the engine does
events = []
def hook(name, args):
    if name.startswith(("socket.", "urllib.", "http.", "ftplib.", "smtplib.")):
        events.append(name)
sys.addaudithook(hook)
from glexec_py.core import tokens
from glexec_py.effects import native
from glexec_py.errors import CallerError
spec = json.load(sys.stdin)
pol = tokens.TokenPolicy(spec["policy"])
keys = {iss: tokens.parse_key_file(d.encode(), "k", native.check_pubkey) for iss, d in spec["keys"].items()}
results = []
for raw in spec["tokens"]:
    try:
        results.append(tokens.verify_token(raw.encode(), pol, keys, spec["now"], verify=native.verify_jws).subject)
    except CallerError as e:
        results.append(e.reason)
verify_events = list(events)
if spec.get("probe"):
    import urllib.request
    urllib.request.urlopen(spec["probe"], timeout=5).read()
print(json.dumps({"events": verify_events, "probe_events": events[len(verify_events):], "results": results, "jwt": "jwt" in sys.modules}))
"""


@pytest.mark.parametrize("mode", ["refuse", "ignore"])
def test_fresh_process_has_no_socket_event(server, rsa_a, rsa_b, mode):
    url, hits = server
    toks = [raw.decode() for raw, _ in _hostile(url, rsa_a, rsa_b)]
    spec = {"policy": make_policy(issuer(ISS_A, key_headers=mode)).to_plain(),
            "keys": {ISS_A: rsa_a.jwks().decode()}, "tokens": toks, "now": NOW,
            "probe": url + "/probe-after"}   # control: the hook does see a real request
    r = subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-c", _CHILD, REPO],
                       input=json.dumps(spec), capture_output=True, text=True, timeout=60,
                       env={"PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["jwt"] is False            # PyJWT (and its jwks_client) is never loaded
    assert out["events"] == []
    assert "socket.connect" in out["probe_events"]
    assert hits == ["/probe-after"]
    if mode == "refuse":
        assert set(out["results"]) == {"token_kid"}
    else:
        assert "user-1" in out["results"] and "token_signature" in out["results"]
