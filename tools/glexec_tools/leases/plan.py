"""glexec-leases planner: which idle leases to drain or release, and whether prune-users
and glexec-sweep confirmed an account idle.  Pure: rows, records and the clock come in as
values.  Also the ``leases:`` section of glexec.yaml (``parse_section``).
"""

DEFAULT_EXPIRE_AFTER = 7 * 86400   # s of idleness (by last use) before expire drains a lease
DEFAULT_GRACE = 60           # s between draining and a confirmation that may count
DEFAULT_SETTLE = 2.0         # s (--force): in-flight grants start their payload meanwhile


class LeasesConfig:
    """The ``leases:`` section with glexec.yaml's shared values: gridmapdir, audit_file,
    state_dir (each "" when unset), expire_after, grace, settle (seconds), pools (tuple of
    names, or None: inferred from the gridmapdir's entries), lease_store ("gridmapdir" or
    "postgresql": mapping.lease_store) and postgresql (glexec.yaml's postgresql section as
    a dict: conninfo_file, connect_timeout, timeout_ms, node)."""

    __slots__ = ("gridmapdir", "audit_file", "state_dir", "expire_after", "grace", "settle",
                 "pools", "lease_store", "postgresql")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.pop(k))
        if kw:
            raise TypeError(f"unexpected {sorted(kw)}")


def default_config():
    """The section's defaults with nothing shared (no configuration file read)."""
    return LeasesConfig(gridmapdir="", audit_file="", state_dir="",
                        expire_after=DEFAULT_EXPIRE_AFTER, grace=DEFAULT_GRACE,
                        settle=DEFAULT_SETTLE, pools=None, lease_store="gridmapdir",
                        postgresql={"conninfo_file": "", "connect_timeout": 2, "timeout_ms": 2000,
                                    "node": ""})


def parse_section(text, filename):
    """The optional ``leases:`` section of glexec.yaml ``text`` -> LeasesConfig;
    ``ConfigError(file, line, what)`` on any problem in the file.  Keys: ``expire_after``
    (a duration: seconds or like 12h, 7d, 1d12h), ``grace``, ``settle`` (seconds),
    ``pools`` (list of pool names)."""
    from glexec_tools.common import section

    def walk(main, c, node):
        seen = c.entries(node, {"expire_after", "grace", "settle", "pools"})
        cfg = default_config()
        cfg.gridmapdir, cfg.audit_file = main.mapping.gridmapdir, main.audit.file
        cfg.state_dir = main.state_dir
        cfg.lease_store = main.mapping.lease_store
        cfg.postgresql = dict(main.postgresql._values)
        if "expire_after" in seen:
            n = seen["expire_after"]
            if c.scalar(n, "int"):
                cfg.expire_after = float(c.integer(n, "expire_after", 1, 10 ** 9))
            else:
                try:
                    cfg.expire_after = parse_duration(n.value if c.scalar(n, "str") else "")
                except ValueError:
                    raise c.err(n, "'leases.expire_after' must be a duration: seconds or like "
                                   "90m, 12h, 7d, 1d12h") from None
                if cfg.expire_after <= 0:
                    raise c.err(n, "'leases.expire_after' must be more than 0")
        if "grace" in seen:
            cfg.grace = float(c.integer(seen["grace"], "grace", 0, 86400))
        if "settle" in seen:
            cfg.settle = float(c.integer(seen["settle"], "settle", 0, 600))
        if "pools" in seen:
            n = seen["pools"]
            if not isinstance(n, c.yaml.SequenceNode) or not n.value:
                raise c.err(n, "'leases.pools' must be a non-empty list of pool names")
            names = []
            for item in n.value:
                v = item.value if c.scalar(item, "str") else None
                if not v or not v.isascii() or not v.replace("_", "a").replace("-", "a").replace(".", "a").isalnum():
                    raise c.err(item, "each entry of 'leases.pools' must be a pool name "
                                      "(letters, digits, '.', '_', '-')")
                names.append(v)
            cfg.pools = tuple(names)
        return cfg
    return section.load(text, filename, "leases", walk)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text):
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` or sums like ``1d12h`` -> seconds."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    if s.isdigit():
        return float(s)
    total, num = 0.0, ""
    for c in s:
        if c.isdigit() or c == ".":
            num += c
        elif c in _UNITS and num:
            total += float(num) * _UNITS[c]
            num = ""
        else:
            raise ValueError(f"bad duration {text!r} (e.g. 3600, 90m, 12h, 30d, 1d12h)")
    if num:
        raise ValueError(f"bad duration {text!r}: number without unit at the end")
    return total


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def confirm(pr, sw, drained_at, grace, current_boot, state_dir=True):
    """Whether prune-users and glexec-sweep confirmed an account idle after it was drained,
    from their state records ``pr`` and ``sw`` (dicts or None; ``state_dir`` False: there
    are none to read).

    prune-users: ``<state_dir>/prune/<account>.json`` with result ``no_processes``, the
    current ``boot_id`` and ``time`` >= drained_at + grace.  glexec-sweep:
    ``<state_dir>/sweep/<account>.json`` with state ``no_files`` and ``swept_at_unix`` >=
    drained_at + grace.  Returns (ok, why, evidence)."""
    ev = {"drained_at": drained_at, "grace": grace}
    if not state_dir:
        return False, "no state_dir: cannot read prune-users/glexec-sweep records", ev
    if drained_at is None:
        return False, "drain time unknown", ev
    need = drained_at + grace
    ev["prune"] = None if pr is None else {k: pr.get(k) for k in ("time", "result", "boot_id")}
    ev["sweep"] = None if sw is None else {k: sw.get(k) for k in ("swept_at_unix", "state")}
    if pr is None:
        return False, "waiting for prune-users (no prune record)", ev
    pt = _num(pr.get("time"))
    if pr.get("result") != "no_processes":
        return False, f"prune-users result {pr.get('result')!r}, not 'no_processes'", ev
    if current_boot and pr.get("boot_id") != current_boot:
        return False, "prune record is from another boot", ev
    if pt is None or pt < need:
        return False, "waiting for prune-users (record older than drain + grace)", ev
    if sw is None:
        return False, "waiting for glexec-sweep (no sweep record)", ev
    st = _num(sw.get("swept_at_unix"))
    if sw.get("state") != "no_files":
        return False, f"glexec-sweep state {sw.get('state')!r}, not 'no_files'", ev
    if st is None or st < need:
        return False, "waiting for glexec-sweep (record older than drain + grace)", ev
    return True, "prune-users: no processes; glexec-sweep: no files (both after the drain)", ev


def plan_expire(rows, now, older_than, busy, *, force, confirm, drained_at):
    """One item per lease idle (by last use) for ``older_than`` s or more: action drain,
    release, wait or skip, with why.  ``busy``: uids with processes; ``confirm(account,
    drained_at) -> (ok, why, evidence)``; ``drained_at(account) -> time or None``."""
    out = []
    for r in rows:
        idle = r["last_use"] is not None and now - r["last_use"] >= older_than
        if not idle:
            continue
        item = {**r, "idle_seconds": round(now - r["last_use"], 3)}
        active = row_uid_busy(r, busy)
        if r["state"] != "draining":
            if active:
                item.update(action="skip", why="account has processes (active)")
            elif force:
                item.update(action="release", why="idle, no processes; --force: drain, "
                            "settle, release without prune/sweep confirmation")
            else:
                item.update(action="drain", why="idle, no processes: drain now; released by a "
                            "later expire run once prune-users and glexec-sweep confirm it")
        else:
            drained = drained_at(r["account"])
            item["drained_at"] = drained
            if active:
                item.update(action="skip", why="draining, account still has processes")
            elif force:
                item.update(action="release", why="draining, no processes; --force: "
                            "release without prune/sweep confirmation")
            else:
                ok, why, ev = confirm(r["account"], drained)
                item["confirmation"] = {"ok": ok, "why": why, **ev}
                item.update(action="release" if ok else "wait", why=why)
        out.append(item)
    return out




def row_uid_busy(row, busy):
    return row["uid"] is not None and row["uid"] in busy


def confirm_nodes(nodes, confirmations, drained_at, grace):
    """The PostgreSQL store's release rule: every node the lease was used on (``nodes``:
    {node: last use}) confirmed both "prune" (no processes) and "sweep" (no files), each
    observed at or after drained_at + grace (``confirmations``: {(node, kind): observed
    at}; all times on the database's clock).  Returns (ok, why, evidence)."""
    ev = {"drained_at": drained_at, "grace": grace, "nodes": {}}
    if drained_at is None:
        return False, "drain time unknown", ev
    need = drained_at + grace
    missing = []
    for node in sorted(nodes):
        got = {k: confirmations.get((node, k)) for k in ("prune", "sweep")}
        ev["nodes"][node] = got
        for kind, t in got.items():
            if t is None or t < need:
                missing.append(f"{node}:{kind}")
    if not nodes:
        return False, "the lease records no node it was used on", ev
    if missing:
        return False, "waiting for confirmations after drain + grace from " + ", ".join(missing), ev
    return True, (f"prune-users and glexec-sweep confirmed on every node the lease was used on "
                  f"({', '.join(sorted(nodes))})"), ev

