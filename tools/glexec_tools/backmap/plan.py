"""Back-mapping semantics: audit records -> occupation intervals -> answers.  Pure.

Who held uid U at time T?  The audit log is the evidence; this module turns its records
into *occupations* and answers questions about them.  It never guesses: every answer has a
``status``:

* ``known``   -- the records prove it (one or more matches, nothing unreliable near T);
* ``unknown`` -- a candidate whose end (or start) is not recorded, or T lies in a region the
  records cannot vouch for (clock step, damaged/missing records, outside the history);
* ``none``    -- T lies inside the retained history, nothing unreliable is near it, and no
  record shows an occupation of U at T.

Semantics (times are integer microseconds since the epoch, UTC, as the engine writes them):

* An occupation with a grant record at S and an end record at E covers **[S, E], inclusive
  at both ends**.  The grant record is written (and fsync'ed) before the payload starts and
  the end record after it was reaped, so the payload's whole life lies inside [S, E]; being
  inclusive errs on the side of naming the holder, never of hiding one.
* A grant without an end (payload still running, ``linger: false``, engine killed) is a
  candidate from S until the next grant of the same uid on the same host, or a reboot
  marker of that host (``event: "boot"`` or a changed ``boot_id``), **exclusive** of that
  cut instant (at the cut the next holder's own interval starts).  Queries in that span say
  ``unknown`` ("end not recorded") and name the candidate; no end is ever invented.
* An end record whose grant is not in the history (older file gone, damaged line) is a
  candidate from the beginning of time until E: ``unknown`` ("start not recorded").
* Occupations are per (host, uid): uids are per machine.  Two identities covering the same
  instant on the same host are both reported (a shared static account); the pool lease
  lifecycle is what makes that impossible for pool accounts.
* Clock step: a record whose time is earlier than its predecessor's in the same series
  (rotated files in order, then the active file) flags [its time, the predecessor's time]
  as unreliable, and every occupation open at that moment becomes uncertain over its whole
  span (its two ends were read off different clocks).  Not a step: both records carry
  ``mono`` (CLOCK_MONOTONIC) from the same host and boot and wall time minus ``mono`` is the
  same in both (within ``REORDER_TOLERANCE``) -- the clock did not move, the record was
  only appended after a later one (older engines read the clock before taking the
  append lock).  Limitation: records without ``mono`` cannot tell a step during a quiet
  period from a wider ambiguous window than the neighbouring records show.
* Damage: a line that is not a complete, parseable record flags [previous good record,
  next good record] of its series for every uid.  If the uid can still be read from the
  damaged bytes, it also becomes an uncertain, open candidate for that uid (a lost grant).
  A file missing from a rotated series flags the time between its neighbours.
* Chain: the engine gives every record ``seq`` and ``prev`` (SHA-256 of the line before;
  ``core.audit.Chain``).  A record that does not chain to its predecessor in the same file
  means records were deleted there or the predecessor was edited: the span from the record
  before the predecessor to this record is flagged ``chain_break`` and the predecessor's
  occupation becomes uncertain.  Files without a chain (log-only mode) are not checked;
  the last line of a file has no successor to vouch for it.
* Outside [first record, last record] of the retained history the answer is ``unknown``.

Second source: pool leases seen in the gridmapdir (``lease_occupation``).  A lease seen at
scan time V whose holder leased (or last used) it at S proves that identity held the
account over [S, V]: pool leases are exclusive, and a release and re-lease in between would
have moved S.  Such an occupation (``kind`` "lease") is a candidate like any other, and it
settles an audit grant of the same identity whose end is not recorded (payload running,
``linger: false``) at the instants it covers.  It carries no caller and no FQANs.

The site index (``records_win``) takes the PostgreSQL lease backend's leases and lease
history the same way (``lease_occupation(..., source="lease_db")``: one per node the lease
was used on, from its creation to its end, or to when it was seen), with two rules of its
own: where the audit records hold an occupation of the same host and uid, the records are
the answer (a lease of the same holder only settles an open grant; a lease of another
identity beside certain records is left out and said so); and an answer that rests on
leases alone says so in its ``why`` ("lease only").  Flagged regions stay "unknown".
"""

__all__ = ["NEVER", "FOREVER", "parse_time", "format_time", "Ref", "Identity", "Caller",
           "Event", "Damaged", "Occupation", "Flag", "Answer", "parse_record",
           "HistoryBuilder", "answer_at", "answer_range", "answer_listing", "build_history",
           "lease_occupation", "settle_running",
           "first_line_fingerprint"]

NEVER = -(1 << 62)        # "since before the history": lower bound of an unknown start
FOREVER = 1 << 62         # "until further notice": upper bound of an unknown end
US = 1_000_000
REORDER_TOLERANCE = 100_000   # us: below ntpd's 128 ms step threshold; covers a preempted
                              # writer between its two clock reads


# -- time ----------------------------------------------------------------------------------

def _days_from_civil(y, m, d):
    """Days since 1970-01-01 (Howard Hinnant's algorithm): exact, no time module."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


_DIGITS = frozenset("0123456789")


def _num(text, i, n):
    """The n ASCII digits at text[i:i+n] as an int, or None."""
    part = text[i:i + n]
    return int(part) if len(part) == n and _DIGITS.issuperset(part) else None


def _fields(text):
    """``YYYY-MM-DD[T ]HH:MM:SS[(.|,)f{1,6}][Z|(+|-)HH[:]MM]`` -> (y, mo, d, h, mi, s, us,
    offset seconds, had "Z"), or None.  Positional parsing, no regular expression (the
    ``re`` import is a third of a query's start-up)."""
    if len(text) < 19 or text[4] != "-" or text[7] != "-" or text[10] not in "T " \
            or text[13] != ":" or text[16] != ":":
        return None
    y, mo, d = _num(text, 0, 4), _num(text, 5, 2), _num(text, 8, 2)
    h, mi, s = _num(text, 11, 2), _num(text, 14, 2), _num(text, 17, 2)
    if None in (y, mo, d, h, mi, s) or not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23
                                            and mi <= 59 and s <= 60):
        return None
    i, us = 19, 0
    if text[i:i + 1] in (".", ","):
        j = i + 1
        while j < len(text) and j - i <= 6 and text[j] in _DIGITS:
            j += 1
        if j == i + 1:
            return None
        us, i = int(text[i + 1:j].ljust(6, "0")), j
    zone = text[i:]
    if zone in ("", "Z"):
        return y, mo, d, h, mi, s, us, 0, zone == "Z"
    if zone[0] not in "+-" or len(zone) not in (5, 6) or (len(zone) == 6 and zone[3] != ":"):
        return None
    zh, zm = _num(zone, 1, 2), _num(zone, len(zone) - 2, 2)
    if zh is None or zm is None:
        return None
    return y, mo, d, h, mi, s, us, (-1 if zone[0] == "-" else 1) * (zh * 3600 + zm * 60), False


_DAY_CACHE = {}


def _engine_form(text):
    """Fast path for exactly ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (every engine record)."""
    day = _DAY_CACHE.get(text[:10])
    if day is None:
        f = _fields(text)
        if f is None or not f[8]:
            return None
        day = _DAY_CACHE[text[:10]] = _days_from_civil(*f[:3]) * 86400
    hms, frac = text[11:19], text[20:26]
    if not (hms[2] == hms[5] == ":" and hms[:2].isdigit() and hms[3:5].isdigit()
            and hms[6:].isdigit() and frac.isdigit() and frac.isascii()):
        return None
    h, mi, sec = int(hms[:2]), int(hms[3:5]), int(hms[6:])
    if h > 23 or mi > 59 or sec > 60:
        return None
    return (day + h * 3600 + mi * 60 + sec) * US + int(frac)


def parse_time(text):
    """ISO 8601 UTC text -> integer microseconds since the epoch; None if malformed.

    Accepts the engine's form ``2026-11-21T22:33:04.123456Z``, whole seconds, and an
    explicit offset (``+02:00``).  Text without a zone is taken as UTC."""
    if type(text) is not str:
        return None
    if len(text) == 27 and text[10] == "T" and text[19] == "." and text[26] == "Z" \
            and text[4] == text[7] == "-":
        return _engine_form(text)
    f = _fields(text)
    if f is None:
        return None
    y, mo, d, h, mi, s, us, offset, _z = f
    return (_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset) * US + us


def _civil_from_days(z):
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


def format_time(us):
    """Microseconds since the epoch -> the engine's ISO form; the bounds read as words."""
    if us is None:
        return None
    if us <= NEVER:
        return "-inf"
    if us >= FOREVER:
        return "+inf"
    seconds, frac = divmod(us, US)
    days, rest = divmod(seconds, 86400)
    y, m, d = _civil_from_days(days)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (y, m, d, rest // 3600, rest // 60 % 60,
                                                    rest % 60, frac)


# -- values --------------------------------------------------------------------------------

class Ref(tuple):
    """Where a record is: (source fingerprint, byte offset, line number) -- stable across
    rotation and compression, because a source is known by its first line's hash."""
    __slots__ = ()

    def __new__(cls, source, offset, line):
        return tuple.__new__(cls, (source, offset, line))

    source = property(lambda self: self[0])
    offset = property(lambda self: self[1])
    line = property(lambda self: self[2])


class Identity(tuple):
    __slots__ = ()

    def __new__(cls, dn, issuer, fqans=()):
        return tuple.__new__(cls, (dn, issuer, tuple(fqans)))

    dn = property(lambda self: self[0])
    issuer = property(lambda self: self[1])
    fqans = property(lambda self: self[2])


_CALLER_FIELDS = ("uid", "gid", "user", "group", "pid", "ppid", "sid", "pgid", "groups")


class Caller(tuple):
    """The pilot that called glexec (the ``caller`` object of the record)."""
    __slots__ = ()

    def __new__(cls, uid=None, gid=None, user=None, group=None, pid=None, ppid=None,
                sid=None, pgid=None, groups=()):
        return tuple.__new__(cls, (uid, gid, user, group, pid, ppid, sid, pgid, tuple(groups)))

    def as_dict(self):
        d = dict(zip(_CALLER_FIELDS, self))
        d["groups"] = list(self[8])
        return d


for _i, _name in enumerate(_CALLER_FIELDS):
    setattr(Caller, _name, property(lambda self, i=_i: self[i]))


class Event:
    """One parsed audit record (only what back-mapping needs)."""
    __slots__ = ("kind", "time", "host", "engine_pid", "uid", "account", "identity",
                 "caller", "payload_pid", "status", "boot_id", "ref", "mono")

    def __init__(self, kind, time, host, engine_pid, uid=None, account=None, identity=None,
                 caller=None, payload_pid=None, status=None, boot_id=None, ref=None, mono=None):
        self.kind, self.time, self.host, self.engine_pid = kind, time, host, engine_pid
        self.uid, self.account, self.identity, self.caller = uid, account, identity, caller
        self.payload_pid, self.status, self.boot_id, self.ref = payload_pid, status, boot_id, ref
        self.mono = mono      # CLOCK_MONOTONIC, integer microseconds, or None

    def clock(self):
        """(host, boot id, wall minus monotonic time) or None: equal offsets mean the wall
        clock did not step between two records."""
        if self.mono is None or self.boot_id is None:
            return None
        return self.host, self.boot_id, self.time - self.mono


class Damaged:
    """A line that is not a usable record; ``uid``/``host`` if they could be read anyway."""
    __slots__ = ("ref", "why", "uid", "host")

    def __init__(self, ref, why, uid=None, host=None):
        self.ref, self.why, self.uid, self.host = ref, why, uid, host


class Occupation:
    """One holding of (host, uid) by an identity.  ``lo``/``hi`` is the inclusive span in
    which it is a candidate; ``certain`` is False when either end is not recorded or
    read off a stepped clock."""
    __slots__ = ("kind", "host", "uid", "account", "identity", "caller", "engine_pid",
                 "start", "end", "cut", "payload_pid", "status", "evidence", "notes",
                 "row_id")

    def __init__(self, kind, host, uid, account, identity, caller, engine_pid, start,
                 end=None, cut=None, payload_pid=None, status=None, evidence=(), notes=(),
                 row_id=None):
        self.kind, self.host, self.uid, self.account = kind, host, uid, account
        self.identity, self.caller, self.engine_pid = identity, caller, engine_pid
        self.start, self.end, self.cut = start, end, cut
        self.payload_pid, self.status = payload_pid, status
        self.evidence, self.notes, self.row_id = list(evidence), list(notes), row_id

    @property
    def lo(self):
        if self.start is None:
            return NEVER
        return self.start if self.end is None else min(self.start, self.end)  # end < start: clock step

    @property
    def hi(self):
        start = NEVER if self.start is None else self.start
        if self.end is not None:
            return max(start, self.end)
        if self.cut is not None:
            return max(self.cut - 1, start)      # the cut instant belongs to the next holder
        return FOREVER

    @property
    def open_only(self):
        """Uncertain only because its end is not recorded (nothing else in doubt)."""
        return (self.kind == "audit" and self.start is not None and self.end is None
                and not self.notes)

    @property
    def certain(self):
        return (self.kind != "damaged" and self.start is not None and self.end is not None
                and "clock_step" not in self.notes and "chain_break" not in self.notes)

    def covers(self, t):
        return self.lo <= t <= self.hi

    def overlaps(self, t1, t2):
        return self.lo <= t2 and self.hi >= t1

    def why(self):
        if self.kind == "lease" and "lease_db" in self.notes:
            return ("pool lease in the site lease database, no audit record of it (held from its "
                    + ("creation to its release)" if "ended" in self.notes
                       else "creation to when it was seen)"))
        if self.kind == "lease":
            return "pool lease in the gridmapdir (held from its creation or last use to when it was seen)"
        if self.kind == "damaged":
            return "a damaged record may be a grant of this uid"
        if "clock_step" in self.notes:
            return "the clock stepped while it was open"
        if "chain_break" in self.notes:
            return "a record of it does not chain to the next record (edited, or records deleted)"
        if self.start is None:
            return "start not recorded (grant not in the retained history)"
        if self.end is None:
            cut = "" if self.cut is None else f", next grant/reboot at {format_time(self.cut)}"
            return "end not recorded (payload running, linger off, or engine killed)" + cut
        return "grant and end recorded"

    def as_dict(self):
        ident = self.identity
        return {
            "kind": self.kind, "host": self.host, "uid": self.uid, "account": self.account,
            "dn": ident.dn if ident else None, "issuer": ident.issuer if ident else None,
            "fqans": list(ident.fqans) if ident else None,
            "caller": self.caller.as_dict() if self.caller else None,
            "engine_pid": self.engine_pid, "payload_pid": self.payload_pid,
            "status": self.status, "start": format_time(self.start),
            "end": format_time(self.end), "end_known": self.end is not None,
            "next_grant_or_reboot": format_time(self.cut),
            "certain": self.certain, "why": self.why(), "notes": list(self.notes),
            "evidence": [list(r) for r in self.evidence],
        }


class Flag:
    """A region [lo, hi] the records cannot vouch for (``host`` None = every host)."""
    __slots__ = ("kind", "host", "lo", "hi", "ref", "why", "row_id", "series")

    def __init__(self, kind, host, lo, hi, ref, why, row_id=None, series=None):
        self.kind, self.host, self.lo, self.hi = kind, host, lo, hi
        self.ref, self.why, self.row_id, self.series = ref, why, row_id, series

    def overlaps(self, t1, t2):
        return self.lo <= t2 and self.hi >= t1

    def as_dict(self):
        return {"kind": self.kind, "host": self.host, "from": format_time(self.lo),
                "to": format_time(self.hi), "why": self.why,
                "evidence": list(self.ref) if self.ref else None}


# -- parsing -------------------------------------------------------------------------------

_SALVAGE = []   # (uid pattern, host pattern), compiled on the first damaged line: ``re``
                # costs a third of a query's start-up and only damaged lines need it


def first_line_fingerprint(line):
    """A source's identity: sha256 of its first complete line (newline included)."""
    import hashlib          # only when a file is read (query start-up time)
    return hashlib.sha256(line).hexdigest()


def _int(v):
    return v if type(v) is int else None


def _str(v):
    return v if type(v) is str else None


def _caller(c):
    if type(c) is not dict:
        return None
    groups = c.get("groups")
    groups = tuple(g for g in groups if type(g) is int) if type(groups) is list else ()
    get = c.get
    return tuple.__new__(Caller, (get("uid"), get("gid"), get("user"), get("group"), get("pid"),
                                  get("ppid"), get("sid"), get("pgid"), groups))


def _identity(rec):
    dn = rec.get("dn")
    if type(dn) is not str:
        return None
    fqans = rec.get("fqans")
    fqans = tuple(f for f in fqans if type(f) is str) if type(fqans) is list else ()
    return tuple.__new__(Identity, (dn, _str(rec.get("issuer")), fqans))


def parse_record(line, ref):
    """One line (bytes, newline included or not) -> Event, or Damaged with the reason."""
    from glexec_py.core.audit import decode_line   # json: only when a line is read
    try:
        rec = decode_line(line)     # non-UTF-8 values come back as surrogateescape str
    except (ValueError, UnicodeDecodeError):
        return _damaged(line, ref, "not a JSON record")
    if type(rec) is not dict:
        return _damaged(line, ref, "not a JSON object")
    t = parse_time(rec.get("time"))
    kind = rec.get("event")
    host = _str(rec.get("host"))
    if t is None or type(kind) is not str or host is None:
        return _damaged(line, ref, "record without time, event or host")
    ev = Event(kind, t, host, _int(rec.get("pid")), boot_id=_str(rec.get("boot_id")), ref=ref)
    mono = rec.get("mono")
    if type(mono) in (int, float) and 0 <= mono < 1e12:
        ev.mono = round(mono * US)
    if kind in ("grant", "end"):
        ev.uid, ev.account = _int(rec.get("uid")), _str(rec.get("account"))
        ev.identity, ev.caller = _identity(rec), _caller(rec.get("caller"))
        if ev.uid is None or ev.engine_pid is None:
            return _damaged(line, ref, f"{kind} record without uid or pid")
        if kind == "end":
            ev.payload_pid, ev.status = _int(rec.get("payload_pid")), _int(rec.get("status"))
    return ev


def _damaged(line, ref, why):
    if not _SALVAGE:
        import re
        _SALVAGE[:] = (re.compile(rb',\s*"uid":\s*(\d{1,10})\s*,\s*"gid"'),   # the target's:
                       re.compile(rb'"host":\s*"([^"\\]{1,255})"'))          # the caller's follows "{"
    uid, host = (p.search(line) for p in _SALVAGE)
    return Damaged(ref, why, int(uid.group(1)) if uid else None,
                   host.group(1).decode("ascii", "replace") if host else None)


# -- building the history ------------------------------------------------------------------

def _same_clock(a, b):
    """Two records' clocks (``Event.clock``) were the same, unstepped wall clock."""
    return (a is not None and b is not None and a[0] == b[0] and a[1] == b[1]
            and abs(a[2] - b[2]) <= REORDER_TOLERANCE)


class HistoryBuilder:
    """Folds records (in log order, per series) into occupations and flags.

    State that outlives one batch (open occupations, a series' last time, a pending damage
    flag) is fetched through the optional callbacks, so an index can resume where it
    stopped; each callback returns objects this builder created earlier (with ``row_id``).
    ``dirty_occupations`` / ``dirty_flags`` list what changed, for the caller to store."""

    def __init__(self, open_by_engine=None, open_by_uid=None, open_by_host=None):
        self._load_engine = open_by_engine or (lambda host, pid: [])
        self._load_uid = open_by_uid or (lambda host, uid: [])
        self._load_host = open_by_host or (lambda host: [])
        self._by_engine = {}     # (host, engine pid) -> open occupations, oldest first
        self._by_uid = {}        # (host, uid) -> open, not yet cut occupations
        self._hosts_loaded = set()
        self._stored = {}        # row_id -> occupation, for loaded ones
        self._boot_ids = {}
        self.series = {}         # series -> {"last": time, "last_good": time, "pending": [Flag]}
        self.dirty_occupations = {}
        self.dirty_flags = []
        self.first_time = None
        self.last_time = None

    def resume_series(self, name, last_time, pending_flags=(), before_last=None, last_occ=None,
                      last_clock=None):
        """Continue a series: its last record's time, pending damage flags, the time of the
        record before the last one and the occupation the last record touched (both for a
        chain break found at the next record), and the last record's ``Event.clock()``."""
        self.series[name] = {"last": last_time, "pending": list(pending_flags),
                             "before_last": before_last, "clock": last_clock,
                             "last_occ": None if last_occ is None else self._canon(last_occ)}

    # dirty bookkeeping
    def _touch(self, occ):
        self.dirty_occupations[id(occ)] = occ

    def take_dirty(self):
        occs, flags = list(self.dirty_occupations.values()), self.dirty_flags
        self.dirty_occupations, self.dirty_flags = {}, []
        return occs, flags

    def _canon(self, occ):
        """One object per stored occupation, however many callbacks returned it."""
        if occ.row_id is None:
            return occ
        return self._stored.setdefault(occ.row_id, occ)

    def _engine_list(self, key):
        lst = self._by_engine.get(key)
        if lst is None:
            lst = self._by_engine[key] = [self._canon(o) for o in self._load_engine(*key)]
        return lst

    def _uid_list(self, key):
        lst = self._by_uid.get(key)
        if lst is None:
            lst = self._by_uid[key] = [self._canon(o) for o in self._load_uid(*key)]
        return lst

    def forget_settled(self, stored=()):
        """After the caller stored ``stored`` (now with row ids): drop map entries that hold
        nothing (bounded memory) and remember the open ones, so that a callback returning
        the stored copy later yields this same object."""
        for d in (self._by_engine, self._by_uid):
            for key in [k for k, v in d.items() if not v]:
                del d[key]
        for occ in stored:
            if occ.row_id is not None:
                self._stored[occ.row_id] = occ
        self._stored = {k: o for k, o in self._stored.items() if o.end is None}

    def feed(self, series, item, chain_break=None):
        """Take the next record of ``series`` (an Event or Damaged).  ``chain_break``: why
        this line does not chain to the one before (``core.audit.Chain``), or None."""
        state = self.series.get(series)
        if state is None:
            state = self.series[series] = {"last": None, "pending": [], "before_last": None,
                                           "last_occ": None, "clock": None}
        if chain_break is not None:
            self._chain_break(series, state, item, chain_break)
        if isinstance(item, Damaged):
            state["last_occ"] = None
            return self._damaged(series, state, item)
        t = item.time
        self.first_time = t if self.first_time is None else min(self.first_time, t)
        self.last_time = t if self.last_time is None else max(self.last_time, t)
        for flag in state["pending"]:          # a damage region ends at the next good record
            flag.hi = max(t, flag.lo)
            self.dirty_flags.append(flag)
        state["pending"] = []
        clock = item.clock()
        if state["last"] is not None and t < state["last"] and not _same_clock(state.get("clock"), clock):
            self._clock_step(series, item, state["last"])
        state["before_last"], state["last"] = state["last"], t   # in either clock era
        state["clock"] = clock
        state["last_occ"] = None
        self._reboot_check(item)
        if item.kind == "grant":
            state["last_occ"] = self._grant(item)
        elif item.kind == "end":
            state["last_occ"] = self._end(item)
        elif item.kind == "boot":
            self._cut_host(item.host, item.time, item.ref, "reboot")

    def _chain_break(self, series, state, item, why):
        """Records were deleted before ``item``, or the record before it was edited: that
        record proves nothing (its occupation becomes uncertain) and the span from the
        record before it to ``item`` is flagged; a damaged ``item`` leaves the flag open
        until the next good record, like damage."""
        lo = state["before_last"] if state["before_last"] is not None else state["last"]
        damaged = isinstance(item, Damaged)
        flag = Flag("chain_break", None, NEVER if lo is None else lo,
                    FOREVER if damaged else max(item.time, NEVER if lo is None else lo),
                    item.ref, f"audit chain broken ({why}): records deleted or edited",
                    series=series)
        self.dirty_flags.append(flag)
        if damaged:
            state["pending"].append(flag)
        occ = state["last_occ"]
        if occ is not None and "chain_break" not in occ.notes:
            occ.notes.append("chain_break")
            self._touch(occ)

    def _clock_step(self, series, ev, before):
        self._load_host_open(ev.host)
        self.dirty_flags.append(Flag("clock_step", ev.host, ev.time, before, ev.ref,
                                     f"clock stepped back from {format_time(before)} to "
                                     f"{format_time(ev.time)}", series=series))
        for lst in list(self._by_engine.values()) + list(self._by_uid.values()):
            for occ in lst:
                if occ.host == ev.host and "clock_step" not in occ.notes:
                    occ.notes.append("clock_step")
                    self._touch(occ)

    def _reboot_check(self, ev):
        if ev.boot_id is None:
            return
        previous = self._boot_ids.get(ev.host)
        self._boot_ids[ev.host] = ev.boot_id
        if previous is not None and previous != ev.boot_id:
            self._cut_host(ev.host, ev.time, ev.ref, "reboot")

    def _load_host_open(self, host):
        """Every stored open occupation of the host, merged into the in-memory maps."""
        if host in self._hosts_loaded:
            return
        self._hosts_loaded.add(host)
        for occ in self._load_host(host):
            occ = self._canon(occ)
            engine = self._engine_list((host, occ.engine_pid))
            if occ not in engine:
                engine.append(occ)
            if occ.cut is None:
                uids = self._uid_list((host, occ.uid))
                if occ not in uids:
                    uids.append(occ)

    def _cut_host(self, host, t, ref, why):
        self._load_host_open(host)
        for (h, uid), lst in self._by_uid.items():
            if h == host:
                self._cut(lst, t, ref)

    def _cut(self, lst, t, ref):
        for occ in lst:
            occ.cut = t
            occ.evidence.append(ref)
            self._touch(occ)
        lst.clear()

    def _grant(self, ev):
        key = (ev.host, ev.uid)
        self._cut(self._uid_list(key), ev.time, ev.ref)
        occ = Occupation("audit", ev.host, ev.uid, ev.account, ev.identity, ev.caller,
                         ev.engine_pid, ev.time, evidence=[ev.ref])
        self._by_uid[key].append(occ)
        self._engine_list((ev.host, ev.engine_pid)).append(occ)
        self._touch(occ)
        return occ

    def _end(self, ev):
        candidates = self._engine_list((ev.host, ev.engine_pid))
        occ = next((o for o in reversed(candidates) if o.uid == ev.uid), None)
        if not candidates:
            self._by_engine.pop((ev.host, ev.engine_pid), None)
        if occ is None:
            occ = Occupation("audit", ev.host, ev.uid, ev.account, ev.identity, ev.caller,
                             ev.engine_pid, None, notes=["orphan_end"])
        else:
            candidates.remove(occ)
            uid_list = self._by_uid.get((ev.host, ev.uid)) or []
            if occ in uid_list:
                uid_list.remove(occ)
            if ev.time < occ.start and "clock_step" not in occ.notes:
                occ.notes.append("clock_step")
        occ.end, occ.payload_pid, occ.status = ev.time, ev.payload_pid, ev.status
        occ.evidence.append(ev.ref)
        self._touch(occ)
        return occ

    def _damaged(self, series, state, item):
        host = item.host
        flag = Flag("damaged", None, state["last"] if state["last"] is not None else NEVER,
                    FOREVER, item.ref, f"damaged record ({item.why})", series=series)
        state["pending"].append(flag)
        self.dirty_flags.append(flag)
        if item.uid is not None and host is not None:
            # Possibly a lost grant: an uncertain candidate until the uid's next grant.
            start = state["last"] if state["last"] is not None else None
            occ = Occupation("damaged", host, item.uid, None, None, None, None, start,
                             evidence=[item.ref], notes=["damaged"])
            self._uid_list((host, item.uid)).append(occ)
            self._touch(occ)

    def flag_region(self, kind, host, lo, hi, ref, why, series=None):
        """A region found outside the records themselves (missing file, untrusted file)."""
        self.dirty_flags.append(Flag(kind, host, lo, hi, ref, why, series=series))


def build_history(series_lines):
    """All in memory: {series: [line bytes, ...]} (log order) -> (occupations, flags,
    coverage).  The reference path for tests; the index does the same incrementally."""
    from glexec_py.core.audit import Chain
    builder = HistoryBuilder()
    occupations, flags = {}, []
    for series, lines in series_lines.items():
        offset, chain = 0, Chain()
        for number, line in enumerate(lines, 1):
            builder.feed(series, parse_record(line, Ref(series, offset, number)),
                         chain.step(line.rstrip(b"\n")))
            offset += len(line)
    occs, flags = builder.take_dirty()
    coverage = (builder.first_time, builder.last_time)
    return occs, _unique(flags), coverage


def _unique(flags):
    seen, out = set(), []
    for f in flags:
        if id(f) not in seen:
            seen.add(id(f))
            out.append(f)
    return out


# -- answers -------------------------------------------------------------------------------

class Answer:
    """``status`` known | unknown | none, ``why`` in words, ``matches`` (occupations),
    ``flags`` (unreliable regions touching the question), ``evidence`` (record refs)."""

    def __init__(self, question, status, why, matches, flags, coverage):
        self.question, self.status, self.why = question, status, why
        self.matches, self.flags, self.coverage = matches, flags, coverage

    @property
    def evidence(self):
        refs = [r for m in self.matches for r in m.evidence]
        refs += [f.ref for f in self.flags if f.ref]
        return refs

    def as_dict(self):
        lo, hi = self.coverage
        return {"question": self.question, "status": self.status, "why": self.why,
                "history": {"from": format_time(lo), "to": format_time(hi)},
                "matches": [m.as_dict() for m in self.matches],
                "flags": [f.as_dict() for f in self.flags]}


def _host_ok(host, wanted):
    return wanted is None or host is None or host == wanted


def answer_range(question, t1, t2, candidates, flags, coverage, host=None, records_win=False):
    """Who held it at any instant in [t1, t2] (an instant query is t1 == t2).
    ``records_win`` (the site index): ``records_first`` decides between audit records and
    leases of the same host and uid."""
    matches = sorted((o for o in candidates if o.overlaps(t1, t2) and _host_ok(o.host, host)),
                     key=lambda o: (o.lo, o.hi))
    touching = [f for f in flags if f.overlaps(t1, t2) and _host_ok(f.host, host)]
    lo, hi = coverage
    when = format_time(t1) if t1 == t2 else f"{format_time(t1)} .. {format_time(t2)}"
    if lo is None or t1 < lo or t2 > hi:
        span = "no records" if lo is None else f"records cover {format_time(lo)} .. {format_time(hi)}"
        return Answer(question, "unknown", f"{when} is outside the audit history ({span})",
                      matches, touching, coverage)
    leases = [m for m in matches if m.kind == "lease" and m.lo <= t1 and t2 <= m.hi]
    uncertain = [m for m in matches if not m.certain and not _held_by_lease(m, leases)]
    overruled = []
    if records_win:
        matches, overruled = records_first(matches)
    if touching:
        kinds = ", ".join(sorted({f.kind for f in touching}))
        return Answer(question, "unknown", f"the records are unreliable at {when} ({kinds})",
                      matches, touching, coverage)
    if uncertain:
        return Answer(question, "unknown", uncertain[0].why(), matches, touching, coverage)
    if not matches:
        return Answer(question, "none", f"no occupation recorded at {when}", matches,
                      touching, coverage)
    holders = _holders(matches)
    if records_win and all(m.kind == "lease" for m in matches):
        why = (f"lease only: {len(matches)} pool lease(s) in the site lease database, "
               "no audit record of them")
    else:
        why = f"{len(matches)} occupation(s) recorded"
    if t1 == t2 and len(holders) > 1:
        why += f"; {len(holders)} identities held it at once (shared account)"
    if overruled:
        why += (f"; the records win over {len(overruled)} lease(s) of another identity "
                "(" + ", ".join(sorted({str(m.identity.dn if m.identity else None)
                                        for m in overruled})) + ")")
    return Answer(question, "known", why, matches, touching, coverage)


def records_first(matches):
    """(kept, overruled): a lease on a host and uid where the records hold an occupation
    is no second holder.  Of the same DN it is left out (the records say it better; it
    already settled their open end); of another DN it is left out only beside records that
    are certain ("overruled") -- beside an open or damaged record it stays, a candidate."""
    records = {}
    for m in matches:
        if m.kind != "lease":
            records.setdefault((m.host, m.uid), []).append(m)
    kept, overruled = [], []
    for m in matches:
        beside = records.get((m.host, m.uid)) if m.kind == "lease" else None
        if not beside:
            kept.append(m)
            continue
        dn = m.identity.dn if m.identity else None
        if any(r.identity is not None and r.identity.dn == dn for r in beside):
            continue
        if all(r.certain for r in beside):
            overruled.append(m)
            continue
        kept.append(m)
    return kept, overruled


def _holders(matches):
    """The distinct holders among ``matches``: (host, identity) of the audit occupations,
    plus a pool lease only when no audit occupation on its host names its DN (a lease
    carries the DN alone, so it is the same holder as that identity's grant, not a
    second one)."""
    holders = {(m.host, m.identity) for m in matches if m.kind != "lease"}
    dns = {(host, ident.dn) for host, ident in holders if ident is not None}
    for m in matches:
        if m.kind == "lease" and (m.host, m.identity.dn if m.identity else None) not in dns:
            holders.add((m.host, m.identity))
    return holders


def _held_by_lease(occ, leases):
    """An open audit grant whose identity a lease shows holding the same uid on the same
    host over the whole question: its missing end does not matter there."""
    return occ.open_only and occ.identity is not None and any(
        lease.uid == occ.uid and lease.host == occ.host and lease.identity is not None
        and lease.identity.dn == occ.identity.dn for lease in leases)


def settle_running(answer, now, host, process_starts, slack=US):
    """``answer`` (an instant question at ``now``, after the index read every audit file
    to its end) settled by the live system: the only candidates are open grants (end not
    recorded, nothing else in doubt) of one DN on ``host``, or that DN's pool leases, no
    region is flagged, and a process of their uid is alive now that started at or after
    the latest grant (``process_starts``: start times of the uid's live processes on
    ``host``, known to ``slack``).  Then the payload is still running: "known".  Anything
    else is returned unchanged.  Being read to the end is what covers (last record, now]:
    a later grant would have been written, and fsync'ed, before its payload started."""
    m = answer.matches
    grants = [o for o in m if o.kind != "lease"]
    if answer.status != "unknown" or answer.flags or not grants or not process_starts:
        return answer
    if any(o.host != host or o.uid != grants[0].uid or o.identity is None for o in m) \
            or len({o.identity.dn for o in m}) != 1 \
            or not all(o.open_only and o.cut is None and o.start <= now for o in grants):
        return answer
    latest = max(o.start for o in grants)
    if not any(start + slack >= latest and start <= now + slack for start in process_starts):
        return answer
    answer.status = "known"
    answer.why = ("payload still running: a live process of the uid started after the "
                  "grant, and no later grant or reboot is recorded (end not recorded yet)")
    return answer


def lease_occupation(host, uid, account, dn, start, seen, source="gridmapdir", ended=False):
    """A pool lease of ``dn`` on ``account`` (uid) seen at ``seen``, held since ``start``
    (its creation when the engine's lease record says so, else the lease file's last use).
    ``source`` "lease_db": from the site's lease database, ``ended``: ``seen`` is its end
    (the lease history), not only when it was seen."""
    ident = None if dn is None else tuple.__new__(Identity, (dn, None, ()))
    notes = ["lease"] if source == "gridmapdir" else ["lease", "lease_db"] + (["ended"] if ended else [])
    return Occupation("lease", host, uid, account, ident, None, None, min(start, seen),
                      end=seen, notes=notes)


def answer_at(question, t, candidates, flags, coverage, host=None, records_win=False):
    return answer_range(question, t, t, candidates, flags, coverage, host, records_win)


def answer_listing(question, matches, flags, coverage):
    """A listing (reverse DN look-up, payload pid): known when something matched; when
    nothing did but damaged records exist, ``unknown`` (one of them may have matched)."""
    matches = sorted(matches, key=lambda o: (o.lo, o.hi))
    damage = [f for f in flags if f.kind in ("damaged", "missing_file", "untrusted_file", "chain_break")]
    if matches:
        uncertain = sum(1 for m in matches if not m.certain)
        why = f"{len(matches)} occupation(s) recorded" + (
            f", {uncertain} with an end or start not recorded" if uncertain else "")
        return Answer(question, "known", why, matches, damage, coverage)
    if damage:
        return Answer(question, "unknown", "nothing matched, but damaged or missing records "
                      "could have", matches, damage, coverage)
    return Answer(question, "none", "nothing matched in the audit history", matches, [],
                  coverage)


# --- the backmap: section of glexec.yaml ------------------------------------------------

class BackmapConfig:
    """Where the back-map reads and keeps its evidence: ``audit_files`` (tuple of paths;
    their rotated .N/.N.gz siblings are read too), ``index`` (the SQLite index),
    ``gridmapdir`` ("" = no lease evidence), ``site`` (libpq conninfo of the site-wide
    index, "" = none), ``answer_from`` ("local" or "site": which one a query asks
    unless ``--site`` says so) and ``lease_db`` (the PostgreSQL lease backend's conninfo
    file with ``mapping.lease_store: postgresql``, else "": the site index's second source)."""

    __slots__ = ("audit_files", "index", "gridmapdir", "site", "answer_from", "lease_db")

    def __init__(self, audit_files, index, gridmapdir, site="", answer_from="local", lease_db=""):
        self.audit_files, self.index, self.gridmapdir = tuple(audit_files), index, gridmapdir
        self.site, self.answer_from, self.lease_db = site, answer_from, lease_db


def defaults(main):
    """The section's values from the engine's configuration alone: glexec's audit file,
    ``<state_dir>/backmap.sqlite``, mapping.gridmapdir, the lease database."""
    lease_db = main.postgresql.conninfo_file if main.mapping.lease_store == "postgresql" else ""
    return BackmapConfig((main.audit.file,), main.state_dir.rstrip("/") + "/backmap.sqlite",
                         main.mapping.gridmapdir, lease_db=lease_db)


def parse_section(text, filename):
    """The optional ``backmap:`` section of glexec.yaml ``text`` -> BackmapConfig;
    ``ConfigError(file, line, what)`` on any problem in the file.  Keys: ``audit_files``
    (absolute paths: other hosts' audit files collected here, say), ``index`` (an absolute
    path), ``site`` (the site index's libpq connection string), ``answer_from``
    (local | site)."""
    from glexec_tools.common import section

    def walk(main, c, node):
        seen = c.entries(node, {"audit_files", "index", "site", "answer_from"})
        cfg = defaults(main)
        if "site" in seen:
            n = seen["site"]
            if not c.scalar(n, "str") or not n.value.strip() or "\n" in n.value or "\0" in n.value:
                raise c.err(n, "'backmap.site' must be a libpq connection string "
                               "(host=... dbname=... user=...)")
            cfg.site = n.value
        if "answer_from" in seen:
            n = seen["answer_from"]
            if not c.scalar(n, "str") or n.value not in ("local", "site"):
                raise c.err(n, "'backmap.answer_from' must be local or site")
            cfg.answer_from = n.value
        if cfg.answer_from == "site" and not cfg.site:
            raise c.err(seen["answer_from"], "'backmap.answer_from: site' needs 'backmap.site'")
        if "index" in seen:
            cfg.index = c.abspath(seen["index"], "index")
        if "audit_files" in seen:
            n = seen["audit_files"]
            if not isinstance(n, c.yaml.SequenceNode) or not n.value:
                raise c.err(n, "'backmap.audit_files' must be a non-empty list of absolute paths")
            cfg.audit_files = tuple(c.abspath(item, "audit_files") for item in n.value)
        return cfg
    return section.load(text, filename, "backmap", walk)


# --- shipped records (the site index) -----------------------------------------------------

class Shipped:
    """One record as the collector received it (``effects.auditlog.ship_message``): the
    sender's ``host``, ``boot_id``, ``chain`` (sha256 of its audit file's first line),
    ``seq``/``prev``/``time`` read from the record, ``sha256`` of the exact ``line``."""
    __slots__ = ("host", "boot_id", "chain", "seq", "prev", "time", "sha256", "line")

    def __init__(self, host, boot_id, chain, seq, prev, time, sha256, line):
        self.host, self.boot_id, self.chain, self.seq = host, boot_id, chain, seq
        self.prev, self.time, self.sha256, self.line = prev, time, sha256, line


_HEX = frozenset("0123456789abcdef")


def _sha_hex(v):
    return type(v) is str and len(v) == 64 and _HEX.issuperset(v)


def parse_shipped(msg, sender=None):
    """A received syslog message body (bytes; rsyslog's MSG, leading space allowed) ->
    Shipped, or the reason (str) it is refused: not the shipped form, the record's bytes
    do not hash to the ``sha256`` the sender wrote (altered in transit), the envelope's
    host is not the ``sender`` host name rsyslog saw or not the record's own ``host`` (one
    node speaking for another).  The record's own fields are not judged here: a damaged
    record that verifies is evidence of damage, which the history builder flags."""
    import json
    import _sha256
    msg = msg.strip()
    at = msg.find(b',"rec":')
    if not msg.startswith(b'{"host":') or at < 0 or not msg.endswith(b"}"):
        return "not a shipped glexec audit record"
    line = msg[at + 7:-1]
    try:
        head = json.loads(msg[:at] + b"}")
    except (ValueError, UnicodeDecodeError):
        return "unreadable envelope"
    host, chain, digest = head.get("host"), head.get("chain"), head.get("sha256")
    if type(host) is not str or not host or not _sha_hex(chain) or not _sha_hex(digest):
        return "envelope without host, chain or sha256"
    if _sha256.sha256(line).hexdigest() != digest:
        return "record altered in transit (sha256 does not match)"
    if sender is not None and sender != host and sender.split(".", 1)[0] != host.split(".", 1)[0]:
        return f"sent by {sender} for another host"
    try:
        rec = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        rec = None
    rec = rec if type(rec) is dict else {}
    if "host" in rec and rec["host"] != host:
        return "record of another host than its envelope"
    seq, prev = rec.get("seq"), rec.get("prev")
    # A record without a usable time is stored all the same: the history builder judges it
    # (damaged), exactly as in the per-node index; refusing it would hide it as a gap.
    t = parse_time(rec.get("time"))
    return Shipped(host, _str(head.get("boot_id")), chain, seq if type(seq) is int else None,
                   prev if type(prev) is str else None, t, digest, line)


def chain_gap(expected, seq):
    """Records ``expected`` .. ``seq - 1`` of a chain were not received: words for it."""
    first, last = expected, seq - 1
    which = f"record {first}" if first == last else f"records {first}..{last}"
    return f"{which} of this host's audit chain not received (lost in transit, or not delivered yet)"
