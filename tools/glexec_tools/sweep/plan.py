"""glexec-sweep planner: which files of unused pool accounts go, and why.  Pure.

No I/O here: the configuration arrives as text, the entries as the walker reports them
(relative path bytes + lstat fields), and every answer is a ``Decision(action, reason)``.
The walker (``glexec_tools.sweep.apply``) does what the decisions say and nothing else.

Semantics (reference/batch.md section 9, security.md 2.9 and case 36):

* Age: a non-directory is *old* when every time named by the rule's ``age_by`` (letters
  ``a`` atime, ``m`` mtime, ``c`` ctime; default ``amc``) is older than ``now - age``.
  Users can backdate atime/mtime with touch(1) but not ctime, so the default needs all
  three.  Directories use ``dir_age_by`` (default ``m``): their atime changes with our own
  readdir and their ctime with our own unlinks.  The age of a directory is judged on its
  lstat *before* the walk descends, so a directory emptied by this run is removed in the
  same run if it was old before (tmpreaper keeps it until the next run; for an account
  that is no longer in use that only delays the "no files" mark).
* Only entries whose owner is one of the swept uids are ever removed.  Excluded paths
  (exact, with everything below), excluded name patterns (``fnmatch`` on the name, or on
  the absolute path when the pattern holds a ``/``), ``lost+found`` at a root, mount
  points and entries on another device are spared; excluded/mounted directories are not
  descended.
* Non-directories with the sticky bit are spared (systemd-tmpfiles' opt-out marker).
* Types: regular files, symlinks (the link, never the target) and empty directories by
  default; ``fifo``, ``socket``, ``chardev``, ``blockdev`` only when listed in ``types``.
* ``age: 0`` with ``age_by: ""`` means "regardless of age" (used for /dev/shm and the
  POSIX message-queue file system of an account that is no longer in use).

Config validation refuses: no roots, a root of ``/`` or empty, a relative root or one
with ``.``/``..``/``//`` components, duplicate or nested roots, an empty pool, a pool
that contains uid 0 or a uid below ``min_uid``, unknown keys, wrong types.
"""

import fnmatch
import stat as _st
from operator import itemgetter as _itemgetter

__all__ = ["Rule", "SweepConfig", "Decision", "ConfigProblem", "parse_section", "validate",
           "parse_age", "Planner", "Entry", "ENTRY_FIELDS", "TYPE_NAMES", "resolve_pool", "plan_ipc",
           "account_verdict", "parse_sysvipc"]

# --- configuration -------------------------------------------------------------------

TYPE_NAMES = ("file", "symlink", "dir", "fifo", "socket", "chardev", "blockdev")
_TYPE_OF_FMT = {_st.S_IFREG: "file", _st.S_IFLNK: "symlink", _st.S_IFDIR: "dir",
                _st.S_IFIFO: "fifo", _st.S_IFSOCK: "socket", _st.S_IFCHR: "chardev",
                _st.S_IFBLK: "blockdev"}
DEFAULT_TYPES = frozenset(("file", "symlink", "dir"))
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_ID = 0xFFFFFFFE


class ConfigProblem(Exception):
    """A configuration the sweeper refuses; ``line`` is 0 when not known."""

    def __init__(self, line, what):
        super().__init__(what)
        self.line = line
        self.what = what


class Rule:
    """One directory to sweep.  ``root``: absolute path bytes; ``age``: seconds;
    ``age_by``/``dir_age_by``: frozensets of "a", "m", "c"; ``types``: frozenset of
    TYPE_NAMES; ``exclude``: absolute path bytes; ``patterns``: bytes fnmatch patterns;
    ``remove_dirs``: remove empty old directories; ``max_depth``: levels below the root
    (0 = only the root's own entries)."""

    __slots__ = ("root", "age", "age_by", "dir_age_by", "types", "exclude", "patterns",
                 "remove_dirs", "max_depth", "kind")

    def __init__(self, root, age, age_by=frozenset("amc"), dir_age_by=frozenset("m"),
                 types=DEFAULT_TYPES, exclude=(), patterns=(), remove_dirs=True,
                 max_depth=64, kind="dir"):
        self.root = _b(root)
        self.age = age
        self.age_by = frozenset(age_by)
        self.dir_age_by = frozenset(dir_age_by)
        self.types = frozenset(types)
        self.exclude = tuple(_b(x) for x in exclude)
        self.patterns = tuple(_b(x) for x in patterns)
        self.remove_dirs = remove_dirs
        self.max_depth = max_depth
        self.kind = kind      # "dir" (configured root), "devshm", "mqueue"

    def as_dict(self):
        return {"root": self.root, "age": self.age, "age_by": "".join(sorted(self.age_by)),
                "dir_age_by": "".join(sorted(self.dir_age_by)), "types": sorted(self.types),
                "exclude": list(self.exclude), "exclude_patterns": list(self.patterns),
                "remove_dirs": self.remove_dirs, "max_depth": self.max_depth, "kind": self.kind}


class SweepConfig:
    """The validated ``sweep:`` section of glexec.yaml with the shared values (schema:
    docs/man/glexec-sweep.8).  ``pool`` None: the pools the gridmapfile names."""

    __slots__ = ("state_dir", "audit_file", "gridmapdir", "gridmapfile", "pool", "min_uid", "rules",
                 "max_runtime", "max_removals", "sysv_ipc", "mqueue_dir", "devshm_dir",
                 "as_owner", "sweep_draining", "lock_file", "workers", "lease_db")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.pop(k))
        if kw:
            raise TypeError(f"unexpected {sorted(kw)}")


def _b(x):
    if isinstance(x, str):
        return x.encode("utf-8", "surrogateescape")
    return bytes(x)


def parse_age(v):
    """Seconds from an int (seconds) or a string like ``90``, ``30m``, ``12h``, ``10d``,
    ``2w``, ``1d12h``.  None if invalid."""
    if type(v) is int:
        return v if v >= 0 else None
    if not isinstance(v, str) or not v or not v.isascii():
        return None
    total, num = 0, ""
    for ch in v:
        if ch.isdigit():
            num += ch
        elif ch in _UNITS and num:
            total += int(num) * _UNITS[ch]
            num = ""
        else:
            return None
    if num:
        total += int(num)
    return total if len(v) <= 32 else None


def _bad_root(p):
    """Why an absolute root path bytes is refused, or None."""
    if not p:
        return "empty root"
    if not p.startswith(b"/"):
        return "root must be an absolute path"
    if p.rstrip(b"/") == b"":
        return "root '/' is refused"
    if b"\0" in p:
        return "root contains a NUL byte"
    parts = p.split(b"/")[1:]
    if p.endswith(b"/") or any(c in (b"", b".", b"..") for c in parts):
        return "root must be a normalised path (no '.', '..', '//' or trailing '/')"
    return None


def _letters(v, what, line):
    if not isinstance(v, str) or any(c not in "amc" for c in v) or len(set(v)) != len(v):
        raise ConfigProblem(line, f"'{what}' must be a subset of the letters 'amc', not {v!r}")
    return frozenset(v)


_TOP_KEYS = {"state_dir", "audit_file", "gridmapdir", "pool", "min_uid", "roots",
             "max_runtime", "max_removals", "sysv_ipc", "mqueue_dir", "devshm_dir",
             "as_owner", "sweep_draining", "lock_file", "workers"}
_ROOT_KEYS = {"path", "age", "age_by", "dir_age_by", "types", "exclude", "exclude_patterns",
              "remove_dirs", "max_depth"}


# glexec.yaml's own values, set once for every tool (common.section.SHARED_KEYS)
_SHARED_KEYS = {"state_dir", "audit_file", "gridmapdir", "min_uid"}
DEFAULT_ROOTS = ({"path": "/tmp", "age": "10d"}, {"path": "/var/tmp", "age": "10d"})


def parse_section(text, filename):
    """The ``sweep:`` section of glexec.yaml ``text`` (optional; every key has a default:
    ``roots`` /tmp and /var/tmp at 10 days, ``pool`` the gridmapfile's pools) ->
    SweepConfig; ``ConfigError(file, line, what)`` on any problem in the file.  Strict
    YAML (no anchors, aliases, tags, duplicate or non-scalar keys); state_dir, audit file,
    gridmapdir and min_uid are glexec.yaml's own."""
    from glexec_tools.common import section

    def walk(main, c, node):
        entries = c.entries(node, _TOP_KEYS - _SHARED_KEYS)
        doc = {k: c.plain(v) for k, v in entries.items()}
        lines = {(k,): v.start_mark.line + 1 for k, v in entries.items()}
        derived = "pool" not in doc
        doc.setdefault("roots", [dict(r) for r in DEFAULT_ROOTS])
        doc.update(state_dir=main.state_dir, audit_file=main.audit.file,
                   gridmapdir=main.mapping.gridmapdir, min_uid=main.mapping.min_uid)
        try:
            cfg = validate(doc, lines, derived_pool=derived)
        except ConfigProblem as e:
            where = e.line or (node.start_mark.line + 1 if node is not None else None)
            raise c.err(where, f"'sweep': {e.what}") from None
        cfg.gridmapfile = main.mapping.gridmapfile
        from glexec_tools.common.leasestore import lease_db_settings
        cfg.lease_db = lease_db_settings(main)
        return cfg
    return section.load(text, filename, "sweep", walk)


def validate(doc, lines=None, *, derived_pool=False):
    """A parsed YAML document (plain dict/list/str/int/bool) -> SweepConfig, or
    ConfigProblem.  ``lines``: optional {key path tuple: line number} for messages.
    Pool entries are kept as given (names, uids, ``"lo-hi"`` ranges): resolve them with
    ``resolve_pool`` once the account database is read."""
    lines = lines or {}

    def ln(*path):
        return lines.get(path, 0)

    if not isinstance(doc, dict):
        raise ConfigProblem(1, "the configuration must be a mapping")
    for k in doc:
        if k not in _TOP_KEYS:
            raise ConfigProblem(ln(k), f"unknown key {k!r}")

    def get(key, kind, default, *, required=False):
        if key not in doc:
            if required:
                raise ConfigProblem(1, f"missing required key {key!r}")
            return default
        v = doc[key]
        if kind == "abspath":
            if not isinstance(v, str) or not v.startswith("/") or "\0" in v:
                raise ConfigProblem(ln(key), f"{key!r} must be an absolute path")
        elif kind == "optpath":
            if v is None or v == "":
                return ""
            if not isinstance(v, str) or not v.startswith("/") or "\0" in v:
                raise ConfigProblem(ln(key), f"{key!r} must be an absolute path or empty")
        elif kind == "bool":
            if type(v) is not bool:
                raise ConfigProblem(ln(key), f"{key!r} must be true or false")
        elif isinstance(kind, tuple):
            lo, hi = kind
            if type(v) is not int or not lo <= v <= hi:
                raise ConfigProblem(ln(key), f"{key!r} must be an integer between {lo} and {hi}")
        elif kind == "choice":
            if v not in ("required", "preferred", "never"):
                raise ConfigProblem(ln(key), f"{key!r} must be 'required', 'preferred' or 'never'")
        return v

    state_dir = get("state_dir", "abspath", None, required=True)
    min_uid = get("min_uid", (1, MAX_ID), 1000)
    pool = None if derived_pool else doc.get("pool")
    if derived_pool:
        pass                                    # the gridmapfile's pools, resolved at run time
    elif not isinstance(pool, list) or not pool:
        raise ConfigProblem(ln("pool"), "'pool' must be a non-empty list of account names, "
                                        "uids or uid ranges 'low-high'")
    for item in pool or ():
        problem = _pool_item_problem(item, min_uid)
        if problem:
            raise ConfigProblem(ln("pool"), problem)
    roots = doc.get("roots")
    if not isinstance(roots, list) or not roots:
        raise ConfigProblem(ln("roots"), "'roots' must be a non-empty list of directories")
    rules = [_rule(r, i, ln) for i, r in enumerate(roots)]
    seen = []
    for r in rules:
        for other in seen:
            if r.root == other or r.root.startswith(other + b"/") or other.startswith(r.root + b"/"):
                raise ConfigProblem(ln("roots"), f"roots overlap: {other!r} and {r.root!r}")
        seen.append(r.root)
    # Swept unless set to "" (an explicit opt-out, named in every record as not swept).
    mq = get("mqueue_dir", "optpath", "/dev/mqueue")
    shm = get("devshm_dir", "optpath", "/dev/shm")
    for extra in (mq, shm):
        if extra and _bad_root(_b(extra)):
            raise ConfigProblem(0, f"{extra!r}: {_bad_root(_b(extra))}")
    return SweepConfig(
        state_dir=state_dir,
        audit_file=get("audit_file", "optpath", ""),
        gridmapdir=get("gridmapdir", "optpath", ""),
        gridmapfile=doc.get("gridmapfile", ""),
        pool=None if pool is None else tuple(pool), min_uid=min_uid, rules=tuple(rules),
        max_runtime=get("max_runtime", (1, 86400), 3000),
        max_removals=get("max_removals", (1, 10**9), 5_000_000),
        sysv_ipc=get("sysv_ipc", "bool", True),
        mqueue_dir=mq, devshm_dir=shm,
        as_owner=get("as_owner", "choice", "preferred"),
        sweep_draining=get("sweep_draining", "bool", True),
        lock_file=get("lock_file", "optpath", ""),
        workers=get("workers", (0, 64), 0), lease_db=None)


def _pool_item_problem(item, min_uid):
    if type(item) is int:
        if item == 0:
            return "uid 0 (root) can never be in the pool"
        if not min_uid <= item <= MAX_ID:
            return f"pool uid {item} is below min_uid {min_uid} (system accounts are never swept)"
        return None
    if not isinstance(item, str) or not item:
        return f"pool entries must be account names, uids or 'low-high' ranges, not {item!r}"
    lo, dash, hi = item.partition("-")
    if dash and lo.isdigit() and hi.isdigit() and lo.isascii() and hi.isascii():
        lo, hi = int(lo), int(hi)
        if lo > hi:
            return f"pool range {item!r} is empty"
        if lo == 0:
            return "uid 0 (root) can never be in the pool"
        if lo < min_uid or hi > MAX_ID:
            return f"pool range {item!r} reaches below min_uid {min_uid}"
        if hi - lo > 1_000_000:
            return f"pool range {item!r} is implausibly large"
        return None
    if item.startswith("."):                    # a pool: every account prefix + digits
        if len(item) > 1 and "." not in item[1:] and not any(
                ord(c) < 0x21 or c in ":/" or ord(c) == 0x7f for c in item):
            return None
        return f"invalid pool account prefix {item!r}"
    if item == "root" or any(ord(c) < 0x21 or c in ":/" or ord(c) == 0x7f for c in item):
        return f"invalid pool account name {item!r}"
    return None


def resolve_pool(pool, lookup_name, min_uid, prefix_accounts=lambda prefix: {}):
    """{uid: name-or-None} for the pool entries; ``lookup_name(name) -> uid or None``,
    ``prefix_accounts(prefix) -> {uid: name}`` of the accounts named prefix + digits (a
    ".prefix" entry).  Refuses (ConfigProblem) an unknown name, a pool without accounts,
    uid 0, a uid below min_uid, an empty result."""
    out = {}
    for item in pool:
        if type(item) is int:
            out[item] = None
            continue
        if item.startswith("."):
            found = prefix_accounts(item[1:])
            if not found:
                raise ConfigProblem(0, f"pool {item!r} has no accounts")
            for u, name in found.items():
                out[u] = name
            continue
        lo, dash, hi = item.partition("-")
        if dash and lo.isdigit() and hi.isdigit():
            for u in range(int(lo), int(hi) + 1):
                out.setdefault(u, None)
            continue
        uid = lookup_name(item)
        if uid is None:
            raise ConfigProblem(0, f"pool account {item!r} does not exist")
        out[uid] = item
    if not out:
        raise ConfigProblem(0, "the pool is empty")
    bad = [u for u in out if u == 0 or u < min_uid]
    if bad:
        raise ConfigProblem(0, f"pool resolves to uid {bad[0]}: uid 0 and uids below min_uid "
                               f"{min_uid} are never swept")
    return out


def _rule(r, i, ln):
    if not isinstance(r, dict):
        raise ConfigProblem(ln("roots"), f"roots[{i}] must be a mapping with 'path' and 'age'")
    for k in r:
        if k not in _ROOT_KEYS:
            raise ConfigProblem(ln("roots"), f"unknown key {k!r} in roots[{i}]")
    path = r.get("path")
    if not isinstance(path, str):
        raise ConfigProblem(ln("roots"), f"roots[{i}].path must be a string (an absolute path)")
    problem = _bad_root(_b(path))
    if problem:
        raise ConfigProblem(ln("roots"), f"roots[{i}].path {path!r}: {problem}")
    if "age" not in r:
        raise ConfigProblem(ln("roots"), f"roots[{i}]: missing 'age' (e.g. 10d)")
    age = parse_age(r["age"])
    if age is None:
        raise ConfigProblem(ln("roots"), f"roots[{i}].age must be seconds or like 12h, 10d, 2w")
    age_by = _letters(r.get("age_by", "amc"), f"roots[{i}].age_by", ln("roots"))
    dir_age_by = _letters(r.get("dir_age_by", "m"), f"roots[{i}].dir_age_by", ln("roots"))
    if not age_by and age:
        raise ConfigProblem(ln("roots"), f"roots[{i}]: empty age_by needs age 0")
    types = r.get("types", sorted(DEFAULT_TYPES))
    if not isinstance(types, list) or not types or any(t not in TYPE_NAMES for t in types):
        raise ConfigProblem(ln("roots"), f"roots[{i}].types must be a list of {', '.join(TYPE_NAMES)}")
    exclude = r.get("exclude", [])
    if not isinstance(exclude, list) or any(
            not isinstance(x, str) or _bad_root(_b(x)) for x in exclude):
        raise ConfigProblem(ln("roots"), f"roots[{i}].exclude must be a list of normalised absolute paths")
    patterns = r.get("exclude_patterns", [])
    if not isinstance(patterns, list) or any(not isinstance(x, str) or not x or "\0" in x for x in patterns):
        raise ConfigProblem(ln("roots"), f"roots[{i}].exclude_patterns must be a list of non-empty strings")
    remove_dirs = r.get("remove_dirs", True)
    if type(remove_dirs) is not bool:
        raise ConfigProblem(ln("roots"), f"roots[{i}].remove_dirs must be true or false")
    max_depth = r.get("max_depth", 64)
    if type(max_depth) is not int or not 0 <= max_depth <= 4096:
        raise ConfigProblem(ln("roots"), f"roots[{i}].max_depth must be an integer 0..4096")
    return Rule(path, age, age_by, dir_age_by, types, exclude, patterns, remove_dirs, max_depth)


# --- decisions ------------------------------------------------------------------------

class Decision:
    """``action``: "remove" (unlink a non-directory), "descend" (walk into a directory;
    ``rmdir`` says whether to remove it when it is empty afterwards), "keep" (owned by a
    swept uid but spared: counts against the "no files" mark), "skip" (not ours or not to
    be looked at; does not count).  ``reason`` is a short stable phrase."""

    __slots__ = ("action", "reason", "rmdir")

    def __init__(self, action, reason, rmdir=False):
        self.action = action
        self.reason = reason
        self.rmdir = rmdir

    def __repr__(self):
        return f"Decision({self.action!r}, {self.reason!r}{', rmdir=True' if self.rmdir else ''})"

    def __eq__(self, other):
        return isinstance(other, Decision) and (self.action, self.reason, self.rmdir) == (
            other.action, other.reason, other.rmdir)


def _why_young(letters, st, cutoff):
    young = []
    if "a" in letters and st.st_atime >= cutoff:
        young.append("atime")
    if "m" in letters and st.st_mtime >= cutoff:
        young.append("mtime")
    if "c" in letters and st.st_ctime >= cutoff:
        young.append("ctime")
    return young


ENTRY_FIELDS = ("st_ino", "st_dev", "st_size", "st_atime", "st_mtime", "st_ctime", "st_mode",
                "st_uid", "st_gid")


class Entry(tuple):
    """The lstat fields of one directory entry as the walker's scanner reports them: a tuple
    whose first nine fields are ENTRY_FIELDS (more may follow), read like an
    ``os.stat_result`` (``st_mode``, ``st_uid`` ...)."""

    __slots__ = ()


for _i, _f in enumerate(ENTRY_FIELDS):
    setattr(Entry, _f, property(_itemgetter(_i), doc=f"field {_i}: {_f}"))
del _i, _f


class Planner:
    """Decisions for one rule at one instant.

    ``Planner(rule, uids, now, root_dev, mounts=())``: ``uids`` the swept uids (pool accounts
    that are not in use); ``root_dev`` the root directory's st_dev; ``mounts`` relative
    path bytes of mount points below the root (from mountinfo: catches bind mounts of the
    same file system, whose st_dev is the same).

    ``decide(rel, st, depth)``: ``rel`` the path below the root (bytes, no leading '/'),
    ``st`` an lstat result (st_mode, st_uid, st_dev, st_atime, st_mtime, st_ctime),
    ``depth`` 0 for the root's own entries.
    """

    __slots__ = ("rule", "uids", "now", "cutoff", "root_dev", "mounts", "excl", "pats_name",
                 "pats_path", "_file_ok", "_dir_ok", "_cache", "_plain", "_by_a", "_by_m", "_by_c")

    def __init__(self, rule, uids, now, root_dev, mounts=()):
        self.rule = rule
        self.uids = frozenset(uids)
        self.now = now
        self.cutoff = now - rule.age
        self.root_dev = root_dev
        self.mounts = frozenset(mounts)
        root = rule.root
        self.excl = set()
        for x in rule.exclude:
            if x == root:
                self.excl.add(b"")
            elif x.startswith(root + b"/"):
                self.excl.add(x[len(root) + 1:])
        self.pats_name = tuple(p for p in rule.patterns if b"/" not in p)
        self.pats_path = tuple(p for p in rule.patterns if b"/" in p)
        self._cache = {}        # (action, reason, rmdir) -> shared Decision (they are immutable)
        self._file_ok = "old by " + "+".join(
            {"a": "atime", "m": "mtime", "c": "ctime"}[c] for c in "amc" if c in rule.age_by) \
            if rule.age_by else "account not in use (any age)"
        self._dir_ok = None
        self._plain = not self.excl and not rule.patterns and "file" in rule.types
        self._by_a, self._by_m, self._by_c = ("a" in rule.age_by), ("m" in rule.age_by), ("c" in rule.age_by)

    def _d(self, action, reason, rmdir=False):
        key = (action, reason, rmdir)
        d = self._cache.get(key)
        if d is None:
            d = self._cache[key] = Decision(action, reason, rmdir)
        return d

    def _excluded(self, rel, name):
        if rel in self.excl:
            return "excluded path"
        for p in self.pats_name:
            if fnmatch.fnmatchcase(name, p):
                return "excluded pattern"
        if self.pats_path:
            full = self.rule.root + b"/" + rel
            for p in self.pats_path:
                if fnmatch.fnmatchcase(full, p):
                    return "excluded pattern"
        return None

    def _file_age(self, a, m, c):
        """The answer for a plain regular file of a swept uid (no sticky bit, on the root's
        device, not a mount point, no excludes): its age alone decides."""
        cut = self.cutoff
        if (self._by_a and a >= cut) or (self._by_m and m >= cut) or (self._by_c and c >= cut):
            young = [w for w, on, t in (("atime", self._by_a, a), ("mtime", self._by_m, m),
                                        ("ctime", self._by_c, c)) if on and t >= cut]
            return self._d("keep", "young by " + "+".join(young))
        return self._d("remove", self._file_ok)

    def decide(self, rel, st, depth):
        mode = st.st_mode
        if (mode & 0o171000) == 0o100000 and self._plain and st.st_uid in self.uids \
                and st.st_dev == self.root_dev and rel not in self.mounts:
            return self._file_age(st.st_atime, st.st_mtime, st.st_ctime)
        return self._decide(rel, st, depth)

    def decide_entries(self, prefix, depth, records, names):
        """``[decide(rel, Entry(r), depth) for r, name in zip(records, names)]`` with ``rel``
        = ``prefix + b"/" + name`` (or ``name`` when ``prefix`` is empty): one directory's
        entries at once, as the walker's scanner reports them (``records``: tuples whose
        first nine fields are ENTRY_FIELDS).  The same answers as ``decide``, computed
        without building an Entry for the common plain regular file."""
        out = []
        add = out.append
        plain, uids, dev, mounts = self._plain, self.uids, self.root_dev, self.mounts
        cut, by_a, by_m, by_c = self.cutoff, self._by_a, self._by_m, self._by_c
        old = self._d("remove", self._file_ok)       # what _file_age answers for an old file
        sep = prefix + b"/" if prefix else b""
        for r, name in zip(records, names):
            if plain and (r[6] & 0o171000) == 0o100000 and r[7] in uids and r[1] == dev \
                    and (not mounts or sep + name not in mounts):
                if (by_a and r[3] >= cut) or (by_m and r[4] >= cut) or (by_c and r[5] >= cut):
                    add(self._file_age(r[3], r[4], r[5]))
                else:
                    add(old)
            else:
                add(self._decide(sep + name, Entry(r), depth))
        return out

    def _decide(self, rel, st, depth):
        mode = st.st_mode
        fmt = _st.S_IFMT(mode)
        kind = _TYPE_OF_FMT.get(fmt, "unknown")
        name = rel.rpartition(b"/")[2]
        if st.st_dev != self.root_dev:
            return self._d("skip", "other file system (mount point)")
        if rel in self.mounts:
            return self._d("skip", "mount point")
        if depth == 0 and name == b"lost+found" and kind == "dir":
            return self._d("skip", "lost+found")
        why = self._excluded(rel, name) if (self.excl or self.rule.patterns) else None
        if why:
            return self._d("skip" if st.st_uid not in self.uids else "keep", why)
        ours = st.st_uid in self.uids
        if kind == "dir":
            if depth >= self.rule.max_depth:
                return self._d("keep" if ours else "skip", "deeper than max_depth")
            if not ours:
                return self._d("descend", "directory of another owner")
            if not self.rule.remove_dirs or "dir" not in self.rule.types:
                return self._d("descend", "directory (dirs not removed by this rule)")
            young = _why_young(self.rule.dir_age_by, st, self.cutoff)
            if young:
                return self._d("descend", "directory young by " + "+".join(young))
            return self._d("descend", "old directory: remove if empty", rmdir=True)
        if not ours:
            return self._d("skip", "other owner")
        if kind not in self.rule.types:
            return self._d("keep", f"type {kind} not selected")
        if mode & _st.S_ISVTX:
            return self._d("keep", "sticky bit (opt-out)")
        young = _why_young(self.rule.age_by, st, self.cutoff)
        if young:
            return self._d("keep", "young by " + "+".join(young))
        if self.rule.age_by:
            return self._d("remove", "old by " + "+".join(
                {"a": "atime", "m": "mtime", "c": "ctime"}[c] for c in "amc" if c in self.rule.age_by))
        return self._d("remove", "account not in use (any age)")

    def recheck(self, before, now_st):
        """Right before an unlink: the fresh lstat must still be the same kind of object (type
        and inode), owned by the same swept uid, on the root's device and without the sticky
        bit; returns a reason to abort or None.  csrc/sweepwalk.c (gx_sweep_recheck) applies
        exactly these checks in this order (tests/sweep compare the two)."""
        if now_st.st_uid != before.st_uid or now_st.st_uid not in self.uids:
            return "owner changed"
        if now_st.st_dev != self.root_dev:
            return "device changed"
        if _st.S_IFMT(now_st.st_mode) != _st.S_IFMT(before.st_mode) or now_st.st_ino != before.st_ino:
            return "replaced"
        if now_st.st_mode & _st.S_ISVTX and not _st.S_ISDIR(now_st.st_mode):
            return "sticky bit (opt-out)"
        return None


# --- accounts and IPC -----------------------------------------------------------------

def account_verdict(uid, name, *, leases, processes, draining, sweep_draining):
    """Whether an account may be swept: (ok, reason).  ``leases``: names of accounts with a
    complete lease; ``draining``: names whose lease is marked draining; ``processes``:
    uids that own a process (real, effective, saved or fs uid)."""
    if uid == 0:
        return False, "root"
    if uid in processes:
        return False, "has processes"
    if name is not None and name in leases:
        if name in draining and sweep_draining:
            return True, "lease draining"
        return False, "active lease"
    return True, "no lease, no processes"


def parse_sysvipc(kind, text):
    """Rows of /proc/sysvipc/{shm,msg,sem} -> [(id, uid, cuid)].  Columns are found by the
    header line (kernels have added columns).  ValueError for a header without those
    columns or a row that does not parse: an object we cannot read is never "none"."""
    lines = text.splitlines()
    if not lines:
        return []
    head = lines[0].split()
    idcol = {"shm": "shmid", "msg": "msqid", "sem": "semid"}[kind]
    try:
        ci, cu, cc = head.index(idcol), head.index("uid"), head.index("cuid")
    except ValueError:
        raise ValueError(f"/proc/sysvipc/{kind}: unknown header {lines[0][:80]!r}") from None
    out = []
    for n, line in enumerate(lines[1:], 2):
        f = line.split()
        if not f:
            continue
        try:
            out.append((int(f[ci]), int(f[cu]), int(f[cc])))
        except (IndexError, ValueError):
            raise ValueError(f"/proc/sysvipc/{kind}: line {n} does not parse") from None
    return out


def plan_ipc(objects, uids):
    """[(kind, id, uid, cuid)] -> [(kind, id, reason)] of the objects to remove: owner or
    creator is a swept uid."""
    out = []
    for kind, ident, uid, cuid in objects:
        if uid in uids:
            out.append((kind, ident, "owned by the account"))
        elif cuid in uids:
            out.append((kind, ident, "created by the account"))
    return out
