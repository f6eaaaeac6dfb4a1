"""The job side's rules, without effects: which archive members an unpack admits and where
they go, the caps, and which declared outputs a collection matches.

Pure: no os, no file system, no clock.  The effects are in ``apply.py``.

Rules an archive must follow (every break refuses the WHOLE archive; what was already
written by this run is removed again):

* Names: bytes, kept as given (non-UTF-8 names are fine).  "." components and a leading
  "./" are dropped; an absolute name, a ".." component, a NUL, an empty name or component
  refuses.  A component is at most ``Caps.max_component`` bytes, a path at most
  ``max_path`` bytes and ``max_depth`` components.
* Types: regular files (GNU sparse ones too, written densely), directories, symlinks and
  hardlinks only.  Devices, FIFOs, sockets and unknown types refuse.
* Modes: files ``mode & 0o755 | 0o600``, directories ``mode & 0o755 | 0o700`` (set-id and
  sticky bits dropped, the owner can always write and clean up).  Owners in the archive are
  ignored: everything belongs to whoever runs the unpack.
* Duplicates: a name may appear once; a directory may be repeated (a no-op).  A name that
  already exists in the job directory (e.g. from an earlier archive) refuses, except an
  existing real directory, which is entered.  Files are created O_EXCL, so case-colliding
  names are two files on a case-sensitive directory and refuse on a case-folding one.
* Symlinks: the target must be relative, free of NUL, and of the form ``../``*k followed by
  components without ".." where k is at most the depth of the link's directory: it then
  names a place inside the job directory whatever the other links are (a ".." after a
  component that may itself be a link could climb out, so it is refused).  Members are never
  written through a link: every path is walked without following symlinks.
* Hardlinks: only to a regular file extracted earlier by the same archive.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

KIND_FILE, KIND_DIR, KIND_SYMLINK, KIND_HARDLINK = "file", "dir", "symlink", "hardlink"

FILE_MODE_MASK, FILE_MODE_FORCE = 0o755, 0o600
DIR_MODE_MASK, DIR_MODE_FORCE = 0o755, 0o700


class Refused(Exception):
    """The archive (or output request) breaks a rule; str() is the one-line reason."""


@dataclass(frozen=True)
class Caps:
    max_total_bytes: int = 16 << 30     # bytes written into the job directory
    max_members: int = 200_000
    max_member_bytes: int = 8 << 30
    max_ratio: int = 200                # bytes produced / compressed bytes read (gzip -1 of zeros: 229)
    ratio_grace: int = 8 << 20          # produced below this is never a bomb
    max_path: int = 4096
    max_component: int = 255
    max_depth: int = 64
    max_meta_bytes: int = 1 << 20       # one member's headers (PAX, GNU long names) together
    max_decoder_memory: int = 40 << 20  # xz/zstd window


@dataclass(slots=True)        # not frozen: frozen dataclasses cost ~1 us each to build (hot path)
class Member:
    """One archive member as the parser saw it (names are raw bytes)."""
    name: bytes
    kind: str          # KIND_* or anything else (refused)
    mode: int = 0o644
    size: int = 0      # bytes the member expands to (sparse: the real size)
    link: bytes = b""  # symlink target / hardlink source


@dataclass(slots=True)
class Action:
    """What to do for an admitted member: ``parts`` is the normalised path."""
    kind: str
    parts: tuple
    mode: int
    size: int = 0
    link: bytes = b""
    link_parts: tuple = ()   # hardlink source, normalised


def split_name(name: bytes, caps: Caps) -> tuple:
    """Normalise an archive name to its components, or raise Refused."""
    if not isinstance(name, bytes) or not name:
        raise Refused("empty member name")
    if b"\0" in name:
        raise Refused("member name contains a NUL byte")
    if name.startswith(b"/"):
        raise Refused(f"absolute member name {_show(name)}")
    if len(name) > caps.max_path:
        raise Refused(f"member name longer than {caps.max_path} bytes")
    raw = name.split(b"/")
    if (len(name) <= caps.max_component and len(raw) <= caps.max_depth
            and b"" not in raw and b"." not in raw and b".." not in raw):
        return tuple(raw)            # the common case, checked by C loops: nothing to drop
    parts = []
    for p in raw:
        if p in (b"", b"."):
            continue
        if p == b"..":
            raise Refused(f"member name with '..': {_show(name)}")
        if len(p) > caps.max_component:
            raise Refused(f"member name component longer than {caps.max_component} bytes")
        parts.append(p)
    if len(parts) > caps.max_depth:
        raise Refused(f"member name deeper than {caps.max_depth} components")
    return tuple(parts)


def symlink_stays_inside(link_dir_depth: int, target: bytes) -> bool:
    """True if a link ``target`` written in a directory ``link_dir_depth`` levels below the
    job directory can only name something inside it (see the module rules)."""
    if not target or b"\0" in target or target.startswith(b"/"):
        return False
    ups, seen_name = 0, False
    for p in target.split(b"/"):
        if p in (b"", b"."):
            continue
        if p == b"..":
            if seen_name:
                return False
            ups += 1
        else:
            seen_name = True
    return ups <= link_dir_depth


def file_mode(mode: int) -> int:
    return (mode & FILE_MODE_MASK) | FILE_MODE_FORCE


def dir_mode(mode: int) -> int:
    return (mode & DIR_MODE_MASK) | DIR_MODE_FORCE


@dataclass
class Ledger:
    """The running state of one unpack: admits members one by one, keeps the caps."""
    caps: Caps = field(default_factory=Caps)
    members: int = 0
    declared_bytes: int = 0
    seen: dict = field(default_factory=dict)       # parts -> kind
    regular: set = field(default_factory=set)      # parts of files extracted by this run

    def admit(self, m: Member) -> Action | None:
        """The action for member ``m`` (None: nothing to do), or raise Refused."""
        caps, seen = self.caps, self.seen
        self.members += 1
        if self.members > caps.max_members:
            raise Refused(f"more than {caps.max_members} members")
        parts = split_name(m.name, caps)
        if m.kind not in (KIND_FILE, KIND_DIR, KIND_SYMLINK, KIND_HARDLINK):
            raise Refused(f"member {_show(m.name)} is a {m.kind}: only files, directories and links")
        kind = m.kind
        if not parts:
            if kind == KIND_DIR:
                return None          # "./": the job directory itself, left as it is
            raise Refused(f"member {_show(m.name)} names the job directory itself")
        before = seen.get(parts)
        if before is not None:
            if before == KIND_DIR and kind == KIND_DIR:
                return None
            raise Refused(f"duplicate member name {_show(m.name)}")
        for i in range(1, len(parts)):
            if seen.get(parts[:i], KIND_DIR) != KIND_DIR:
                raise Refused(f"member {_show(m.name)} lies under a non-directory member")
        seen[parts] = kind
        if kind == KIND_DIR:
            return Action(KIND_DIR, parts, dir_mode(m.mode))
        if kind == KIND_SYMLINK:
            if not symlink_stays_inside(len(parts) - 1, m.link):
                raise Refused(f"symlink {_show(m.name)} points outside the job directory")
            return Action(KIND_SYMLINK, parts, 0o777, link=m.link)
        if kind == KIND_HARDLINK:
            src = split_name(m.link, caps)
            if src not in self.regular:
                raise Refused(f"hardlink {_show(m.name)} to something that is not a file of this archive")
            return Action(KIND_HARDLINK, parts, 0, link=m.link, link_parts=src)
        size = m.size
        if size < 0 or size > caps.max_member_bytes:
            raise Refused(f"member {_show(m.name)} larger than {caps.max_member_bytes} bytes")
        self.declared_bytes += size
        if self.declared_bytes > caps.max_total_bytes:
            raise Refused(f"archive expands to more than {caps.max_total_bytes} bytes")
        self.regular.add(parts)
        return Action(KIND_FILE, parts, file_mode(m.mode), size)


def check_ratio(produced: int, consumed: int, caps: Caps) -> None:
    """Raise Refused if ``produced`` bytes from ``consumed`` compressed bytes is a bomb."""
    if produced > caps.ratio_grace and produced > caps.max_ratio * max(consumed, 1):
        raise Refused(f"compression ratio above {caps.max_ratio}:1 (a bomb?)")


# --- outputs -----------------------------------------------------------------------------

def split_pattern(pattern: bytes) -> tuple:
    """A declared output (name or glob, relative to the job directory) as components."""
    if not pattern or b"\0" in pattern or pattern.startswith(b"/"):
        raise Refused(f"output {_show(pattern)}: must be a relative name")
    parts = tuple(p for p in pattern.split(b"/") if p not in (b"", b"."))
    if not parts or b".." in parts:
        raise Refused(f"output {_show(pattern)}: must name something inside the job directory")
    return parts


_MAGIC = re.compile(rb"[*?\[]")


def is_glob(component: bytes) -> bool:
    return _MAGIC.search(component) is not None


def component_matches(pattern: bytes, name: bytes) -> bool:
    """Shell-like: no hidden names unless the pattern starts with '.' itself."""
    if not is_glob(pattern):
        return pattern == name
    if name.startswith(b".") and not pattern.startswith(b"."):
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _show(name: bytes) -> str:
    return repr(name[:200])[2:-1] if isinstance(name, bytes) else repr(name)


# --- the job directory (glexec-job run) ----------------------------------------------------

JOB_DIR_PREFIX = "glexec-job."
JOB_TMP = b".tmp"                 # the payload's TMPDIR
JOB_PROXY_DIR = b".proxy"         # the target's proxy: .proxy/x509up (X509_USER_PROXY)
JOB_PROXY_NAME = b"x509up"
# The first bytes the payload's stderr carries: written by ``inner exec`` (as the target,
# after glexec granted), removed by the pilot; without it the payload never started.
STARTED_MARKER = b"\0glexec-job: payload started\n"


# --- the job: configuration, limits, status ------------------------------------------------

# job: keys of glexec.yaml -> (kind, default).  Limits are the site's ceilings: a pilot may
# ask for less (glexec-job run --wall-time ...), never more; 0 = no limit.
CONFIG_KEYS = (
    ("scratch_root", "abspath", "/tmp"),
    ("python", "abspath", "/usr/bin/python3"),
    ("wall_time", "seconds", 7 * 86400),
    ("cpu_time", "seconds", 0),
    ("max_output_bytes", "bytes", 1 << 30),
    ("max_disk_bytes", "bytes", 0),
    ("max_input_bytes", "bytes", 16 << 30),
    ("max_collect_bytes", "bytes", 4 << 30),
    ("grace", "seconds", 30),
    ("disk_check_interval", "seconds", 60),
    ("heartbeat", "seconds", 30),
)
LIMITS = ("wall_time", "cpu_time", "max_output_bytes", "max_disk_bytes")
MAX_SECONDS, MAX_BYTES = 10 * 365 * 86400, 1 << 50


@dataclass(frozen=True)
class JobConfig:
    scratch_root: str
    python: str
    wall_time: int
    cpu_time: int
    max_output_bytes: int
    max_disk_bytes: int
    max_input_bytes: int
    max_collect_bytes: int
    grace: int
    disk_check_interval: int
    heartbeat: int


def parse_section(text, filename):
    """The optional ``job:`` section of glexec.yaml -> JobConfig (every key has a default);
    ``ConfigError(file, line, what)`` for an unknown key, a wrong type or a relative path."""
    from glexec_tools.common import section

    def walk(main, c, node):
        seen = c.entries(node, {k for k, _, _ in CONFIG_KEYS})
        values = {}
        for key, kind, default in CONFIG_KEYS:
            if key not in seen:
                values[key] = default
            elif kind == "abspath":
                values[key] = c.abspath(seen[key], key)
                if "/../" in values[key] + "/" or "/./" in values[key] + "/":
                    raise c.err(seen[key], f"'job.{key}' must be a plain absolute path")
            else:
                values[key] = c.integer(seen[key], key, 0, MAX_SECONDS if kind == "seconds" else MAX_BYTES)
        if values["heartbeat"] == 0 or values["disk_check_interval"] == 0:
            raise c.err(seen.get("heartbeat", seen.get("disk_check_interval")),
                        "'job.heartbeat' and 'job.disk_check_interval' must be at least 1 second")
        return JobConfig(**values)
    return section.load(text, filename, "job", walk)


def effective_limits(site: JobConfig, asked: dict) -> dict:
    """The job's limits: what the pilot asked (None: not asked) where it is within the
    site's ceiling, else the ceiling.  Refused if the pilot asks for more than the site
    allows, or for "no limit" (0) where the site has one."""
    out = {}
    for key in LIMITS:
        ceiling, want = getattr(site, key), asked.get(key)
        if want is None:
            out[key] = ceiling
        elif want < 0 or (ceiling and (want == 0 or want > ceiling)):
            raise Refused(f"{key.replace('_', '-')} {want} is above the site's limit {ceiling} (glexec.yaml job.{key})")
        else:
            out[key] = want
    return out


def limit_reached(limits: dict, wall: float, cpu: float, output: int, disk: int):
    """The first limit the job is over ("wall_time", ...), or None.  0 = no limit."""
    for key, used in (("wall_time", wall), ("cpu_time", cpu), ("max_output_bytes", output),
                      ("max_disk_bytes", disk)):
        if limits[key] and used > limits[key]:
            return key
    return None


# What failed, for the pilot: the payload's own result, a limit the watchdog enforced, or
# the infrastructure (glexec refused, an input sandbox refused, a step failed).
KIND_OK, KIND_APPLICATION, KIND_LIMIT, KIND_INFRASTRUCTURE = "ok", "application", "limit", "infrastructure"
EXIT_INFRASTRUCTURE = 75          # EX_TEMPFAIL: the payload did not run (glexec's 201-204 pass on)
GLEXEC_REFUSALS = (201, 202, 203, 204)


def exit_of_wait(status: int) -> int:
    """A wait status -> the shell's exit code: 0-255, or 128+N for a death by signal N."""
    if status & 0x7F == 0:
        return (status >> 8) & 0xFF
    return 128 + (status & 0x7F)


def job_outcome(started: bool, glexec_exit, limit, infra: str | None):
    """(kind, exit code, reason) of a job.  ``glexec_exit``: glexec's exit code for the
    payload call (which is the payload's own once it started) or None if never called;
    ``limit``: the limit that stopped it; ``infra``: why a step before the payload failed."""
    if infra is not None:
        return KIND_INFRASTRUCTURE, EXIT_INFRASTRUCTURE, infra
    if not started:
        code = glexec_exit if glexec_exit in GLEXEC_REFUSALS else EXIT_INFRASTRUCTURE
        return KIND_INFRASTRUCTURE, code, "glexec did not start the payload"
    if limit is not None:
        return KIND_LIMIT, glexec_exit, f"stopped: over {limit}"
    if glexec_exit == 0:
        return KIND_OK, 0, None
    return KIND_APPLICATION, glexec_exit, "the payload failed"


def new_job_id(random_bytes: bytes) -> str:
    return random_bytes.hex()


def valid_job_id(text: str) -> bool:
    return isinstance(text, str) and 8 <= len(text) <= 64 and all(c in "0123456789abcdef" for c in text)


def parse_env_assignments(items) -> list:
    """``NAME=VALUE`` strings -> [(name, value)] bytes; Refused for a name execve cannot
    carry or a repeated one."""
    out, seen = [], set()
    for item in items:
        raw = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else bytes(item)
        name, eq, value = raw.partition(b"=")
        if not eq or not name or b"\0" in raw:
            raise Refused(f"--env {_show(raw)}: must be NAME=VALUE")
        if name in seen:
            raise Refused(f"--env {_show(name)} given twice")
        seen.add(name)
        out.append((name, value))
    return out
