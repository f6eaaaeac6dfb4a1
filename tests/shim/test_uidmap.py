"""uid_map_is_initial (csrc/shim_userns.c), the shim's user-namespace rule, against the
independent Python oracle of tests/support/shim_harness.py. The C function reads input
that ends at a PROT_NONE page, so a read past the end fails the test (SIGSEGV)."""
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from tests.support.shim_harness import UID_MAP_MAX, UidMap, uidmap_oracle

KERNEL_INITIAL = b"%10u %10u %10u\n" % (0, 0, 4294967295)   # the kernel's own format


@pytest.fixture(scope="module")
def uidmap(tmp_path_factory):
    return UidMap(tmp_path_factory.mktemp("uidmap"))


def test_real_initial_map_accepted(uidmap):
    with open("/proc/self/uid_map", "rb") as f:
        real = f.read()
    assert real == KERNEL_INITIAL          # the tests run in the initial namespace
    assert uidmap.is_initial(real) and uidmap_oracle(real)


@pytest.mark.parametrize("args", [["-U", "-r"], ["-U"], ["-U", "--map-user=0", "--map-group=0"]])
def test_real_user_namespace_maps_refused(uidmap, args):
    """What the kernel really shows inside new user namespaces (mapped and unmapped)."""
    got = subprocess.run(["unshare", *args, "cat", "/proc/self/uid_map"], capture_output=True)
    if got.returncode:
        pytest.skip(f"unshare {args} unavailable: {got.stderr!r}")
    assert not uidmap.is_initial(got.stdout) and not uidmap_oracle(got.stdout)


ACCEPT = [KERNEL_INITIAL, b"0 0 4294967295\n", b"0\t0\t4294967295\n", b" 0 0 4294967295 \t\n",
          b" " * (UID_MAP_MAX - 16) + b"0 0 4294967295\n"]          # 254 bytes: the longest
REFUSE = [b"", b"\n", b"0 0 4294967295", b"0 0 4294967295\n\n", b"0 0 4294967295\n0 0 1\n",
          b"\n0 0 4294967295\n", b"0 0 4294967295\0\n", b"0 0\0 4294967295\n",
          b"0\0 0 4294967295\n", b"00 0 4294967295\n", b"+0 0 4294967295\n", b"0 -0 4294967295\n",
          b"0 0 04294967295\n", b"0 0 4294967296\n", b"0 0 1\n", b"0x0 0 4294967295\n",
          b"0 0 4294967295 0\n", b"0 4294967295\n", b"0 0 4294967295\r\n", b"0\v0 4294967295\n",
          b" " * (UID_MAP_MAX - 15) + b"0 0 4294967295\n",          # 255 bytes: maybe cut short
          b"0 0 4294967295\n" + b" " * 300]


@pytest.mark.parametrize("data", ACCEPT)
def test_accepted(uidmap, data):
    assert uidmap_oracle(data) and uidmap.is_initial(data)


@pytest.mark.parametrize("data", REFUSE)
def test_refused(uidmap, data):
    """NUL bytes (b"...\\0\\n") were accepted by the strtok version: it stopped at the NUL."""
    assert not uidmap_oracle(data) and not uidmap.is_initial(data)


TOKENS = st.sampled_from([b"0", b"00", b"+0", b"-0", b"1", b"4294967295", b"4294967296", b" ",
                          b"  ", b"\t", b"\n", b"\0", b"\r", b"\v", b"x", b"         "])


def _spliced(args):
    line, at, cut, ins = args          # a valid map with bytes replaced/inserted anywhere
    return line[:at] + ins + line[at + cut:]


INSERT = st.one_of(st.lists(st.sampled_from([b"\0", b" ", b"\t", b"\n", b"\r", b"0", b"5", b"+"]),
                            min_size=1, max_size=2).map(b"".join), st.binary(max_size=3))
VALID = st.sampled_from([KERNEL_INITIAL, b"0 0 4294967295\n"])
SPLICED = VALID.flatmap(lambda line: st.tuples(st.just(line), st.integers(0, len(line)),
                                               st.integers(0, 2), INSERT))


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.lists(TOKENS, max_size=12).map(b"".join), st.binary(max_size=300),
                 st.integers(0, 300).map(lambda k: b" " * k + b"0 0 4294967295\n"),
                 SPLICED.map(_spliced)))
def test_matches_oracle(uidmap, data):
    assert uidmap.is_initial(data) == uidmap_oracle(data), data
