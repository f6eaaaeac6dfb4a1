"""The translation of a gLExec site configuration into one glexec.yaml.  Pure: texts in,
a YAML text and a report out (the CLI reads the files and writes the result).

Inputs: ``glexec.conf`` (INI, section ``[glexec]``), ``lcmaps.db`` (LCMAPS policy
language: variables naming plugins with arguments, policies ``name:`` with rules
``a -> b``, ``a -> b | c``, ``~a -> c``), ``lcas.db`` (``pluginname=...,pluginargs=...``),
and the files they name (ban lists, grid-mapfiles), which are only checked, never copied.
Facts: shared/reference/glexec-interface.md section 6, lcmaps-semantics.md sections 2-7.

How a policy becomes glexec-py's one decision order (``mapping.order``): LCMAPS evaluates
the policy gLExec names (``lcmaps_get_account_policy``; without it, every policy in file
order) as a state machine; glexec-py tries its mapping sources in one order, first match
wins, with global bans and one credential check before.  The planner derives that order
from the policy's "nothing matches" path and then proves it equivalent: it runs the
policy's state machine and the derived order on every combination of "which mapping
plugin finds a line" (and "does the credential carry FQANs / do they map to groups") and
refuses the translation if any combination maps differently.

Every key, module and policy is reported with ``file:line``: translated, not needed (glexec-py
does it itself), or not translated and why.  An ``error`` means no YAML is produced (the
translation would grant what the old configuration refused, or cannot be decided); a
``warning`` means the result differs (always in the stricter direction, or explained).
"""
import json
import re
from dataclasses import dataclass, field

from glexec_py import site_paths
from glexec_tools.importer.policy import (ACCOUNT, CHECK, GROUP, SOURCE_OF, UNSUPPORTED,
                                          UNSUPPORTED_WHY, can_map_from, states_of,
                                          compare, derive_order, module_kind)
from glexec_tools.importer.report import ERROR, INFO, WARNING, Report
from glexec_tools.importer.sources import (DbSyntaxError, parse_glexec_conf, parse_lcmaps_db,
                                           plugin_options, resolve_state)

DEFAULT_GLEXEC_CONF = "/etc/glexec.conf"
# EMI first, then OSG (glexec-interface.md section 6)
DEFAULT_LCMAPS_DBS = ("/etc/lcmaps/lcmaps-glexec.db", "/etc/lcmaps.db")
DEFAULT_LCAS_DBS = ("/etc/lcas/lcas-glexec.db", "/etc/lcas/lcas.db")
GRID_SECURITY = "/etc/grid-security"
DEFAULT_CA_DIR = GRID_SECURITY + "/certificates"
DEFAULT_VOMSDIR = GRID_SECURITY + "/vomsdir"
DEFAULT_GRIDMAPFILE = GRID_SECURITY + "/grid-mapfile"
BAN_FILE_MAX = 4 << 20           # bans.max_file_size's default
MAX_ACCOUNT_PLUGINS = 8          # combinations checked: 2 ** (plugins + 2)


@dataclass
class Plan:
    """The result: ``yaml_text`` (None when an error blocks the translation), the findings,
    and how the policies were read (``policies``: name -> explanation lines)."""
    yaml_text: object
    findings: list
    policies: dict = field(default_factory=dict)

    @property
    def errors(self):
        return [f for f in self.findings if f.level == ERROR]

    @property
    def warnings(self):
        return [f for f in self.findings if f.level == WARNING]

    @property
    def exit_code(self):
        """0 translated cleanly, 1 with warnings or not at all (the report says why)."""
        return 0 if self.yaml_text is not None and not self.errors and not self.warnings else 1

    def to_json(self):
        return {"translated": self.yaml_text is not None, "exit": self.exit_code,
                "errors": len(self.errors), "warnings": len(self.warnings),
                "policies": self.policies, "findings": [f.to_json() for f in self.findings],
                "yaml": self.yaml_text}


# --- the translation ----------------------------------------------------------------------

_BOOL = {"yes": True, "true": True, "on": True, "1": True,
         "no": False, "false": False, "off": False, "0": False}

# glexec.conf keys that glexec-py does not need (it does the thing itself), and why
_NOT_NEEDED = {
    "target_lock_mechanism": "glexec-py writes the target proxy through a temporary file and "
                             "rename in a directory it checks; no lock is needed",
    "lock_mechanism": "deprecated alias of target_lock_mechanism; glexec-py needs no lock",
    "input_lock_mechanism": "glexec-py reads the caller's files once, as the caller, from an "
                            "open descriptor; no lock is needed",
    "log_file": "glexec-py writes its JSON audit log to audit.file (and syslog); the old text "
                "log is not continued",
    "log_file_group": "the audit file is root-owned (0600); no group owner is configured",
    "log_level": "glexec-py logs one audit record per call; there are no levels",
    "silent_logging": "glexec-py never writes to stderr on success",
    "diff_syslog_levels": "glexec-py uses one syslog priority per record kind",
    "pedantic_security_checks": "glexec-py always checks ownership and modes of every file it trusts",
    "backlog_path": "no equivalent (unused by gLExec 0.9 site configurations)",
    "lcas_libdir": "no LCAS plugins are loaded; lcas.db's bans are translated instead",
    "lcas_log_file": "LCAS is not run; decisions are in glexec-py's audit log",
    "lcas_debug_level": "LCAS is not run",
    "lcas_log_level": "LCAS is not run",
    "lcmaps_libdir": "no LCMAPS plugins are loaded; the policy in lcmaps.db is translated instead",
    "lcmaps_log_file": "LCMAPS is not run; decisions are in glexec-py's audit log",
    "lcmaps_debug_level": "LCMAPS is not run",
    "lcmaps_log_level": "LCMAPS is not run",
    "lcmaps_db_file": "read by glexec-import (this translation)",
    "lcas_db_file": "read by glexec-import (this translation)",
}
_FORBIDDEN_ENV = ("HOME", "USER", "LOGNAME", "PATH", "X509_USER_PROXY")


class _Builder:
    """Collects glexec.yaml values (section -> key -> (value, comment))."""

    def __init__(self):
        self.values = {}

    def set(self, section, key, value, comment=""):
        self.values.setdefault(section, {})[key] = (value, comment)

    def get(self, section, key, default=None):
        return self.values.get(section, {}).get(key, (default, ""))[0]


def _schema_has(section, key=None):
    from glexec_py.core import config
    for name, keys in config.SCHEMA:
        if name == section:
            return key is None or any(k == key for k, _, _ in keys)
    return False


def _abs(path, base=GRID_SECURITY):
    """LCMAPS prefixes a relative file option with the grid-security directory (root)."""
    return path if path.startswith("/") else f"{base}/{path}"


def _clip(s, n=80):
    s = "".join(c if c.isprintable() else "?" for c in str(s))
    return s if len(s) <= n else s[:n - 3] + "..."


class Translator:
    def __init__(self, conf_name, conf_text, db_name, db_text, lcas_name, lcas_text, files,
                 state_dir, audit_file):
        self.conf_name, self.conf_text = conf_name, conf_text
        self.db_name, self.db_text = db_name, db_text
        self.lcas_name, self.lcas_text = lcas_name, lcas_text
        self.files = files if files is not None else {}
        self.state_dir, self.audit_file = state_dir, audit_file
        self.r = Report()
        self.out = _Builder()
        self.policies_explained = {}
        self.conf = {}
        self.refs = {}                  # path -> (kind, line) of the files the config names
        self.use_lcas = True
        self.voms_local_gids = True     # voms_localaccount -use_voms_gid
        self.pool_account_gid = False   # voms_poolaccount takes a gid from the account
        self.pool_inst = None
        self.group_line = None

    # -- helpers
    def add(self, *a):
        self.r.add(*a)

    def conf_bool(self, key, default):
        cv = self.conf.get(key)
        if cv is None:
            return default, None
        b = _BOOL.get(cv.value.lower())
        if b is None:
            self.add(self.conf_name, cv.line, key, WARNING, "not_translated",
                     f"{_clip(cv.value)!r} is not yes/no; glexec-py's default ({'yes' if default else 'no'}) is used")
            return default, cv
        return b, cv

    # -- main
    def sorted_findings(self):
        """Findings by file (glexec.conf, lcmaps.db, lcas.db, then the files they name) and
        line; the order of the checks for one line is kept."""
        rank = {self.conf_name: 0, self.db_name: 1, self.lcas_name: 2}
        return sorted(self.r.findings, key=lambda f: (rank.get(f.file, 3), f.file if f.file not in rank
                                                     else "", f.line == 0 and f.file in rank, f.line))

    def run(self):
        plan = self._run()
        plan.findings = self.sorted_findings()
        return plan

    def _run(self):
        if self.conf_text is not None:
            self.conf = parse_glexec_conf(self.conf_text, self.conf_name, self.r)
        self.glexec_conf()
        db = self.lcmaps()
        self.lcas()
        self.check_referenced_files()
        self.finish()
        if db is None or any(f.level == ERROR for f in self.r.findings):
            return Plan(None, self.r.findings, self.policies_explained)
        text = self.emit()
        from glexec_py.core.config import parse_config
        from glexec_py.errors import ConfigError
        try:
            parse_config(text, "glexec.yaml (imported)")
        except ConfigError as e:
            self.add("glexec.yaml (imported)", e.line or 0, "glexec.yaml", ERROR, "refused",
                     f"the translated configuration does not load: {e.what}")
            return Plan(None, self.r.findings, self.policies_explained)
        return Plan(text, self.r.findings, self.policies_explained)

    # -- glexec.conf
    def glexec_conf(self):
        c, name = self.conf, self.conf_name
        handled = set()

        def done(key, *a):
            handled.add(key)
            cv = c.get(key)
            if cv is not None:
                self.add(name, cv.line, key, *a)

        linger, cv = self.conf_bool("linger", True)
        self.out.set("payload", "linger", linger)
        done("linger", INFO, "translated", f"payload.linger: {str(linger).lower()}")

        who = c.get("user_identity_switch_by")
        handled.add("user_identity_switch_by")
        if who is not None:
            if who.value == "glexec":
                self.add(name, who.line, "user_identity_switch_by", INFO, "not_needed",
                         "glexec-py always switches identity itself (as with 'glexec')")
            elif who.value == "lcmaps":
                self.add(name, who.line, "user_identity_switch_by", INFO, "not_needed",
                         "'lcmaps' let the posix_enf plugin switch; glexec-py always switches "
                         "itself to the uid, primary gid and groups the mapping chose; "
                         "posix_enf in lcmaps.db is therefore not needed")
            else:
                self.add(name, who.line, "user_identity_switch_by", WARNING, "not_translated",
                         f"unknown value {_clip(who.value)!r} (gLExec knows glexec|lcmaps); "
                         "glexec-py switches itself")

        self.callers("user_white_list", "users")
        self.callers("group_white_list", "groups")
        self.callers("omission_private_key_white_list", "omission_private_key")
        handled.update(("user_white_list", "group_white_list", "omission_private_key_white_list"))

        self.preserve_env()
        handled.add("preserve_env_variables")

        create, _ = self.conf_bool("create_target_proxy", True)
        self.out.set("target_proxy", "create", create)
        done("create_target_proxy", INFO, "translated", f"target_proxy.create: {str(create).lower()}")

        self.logging()
        handled.update(("log_destination", "syslog_facility"))

        prohibit, cv = self.conf_bool("prohibit_exec_via_symlink", False)
        handled.add("prohibit_exec_via_symlink")
        if cv is not None:
            self.add(name, cv.line, "prohibit_exec_via_symlink", INFO if not prohibit else WARNING,
                     "not_needed" if not prohibit else "not_translated",
                     "glexec-py resolves the command and records both forms in the audit record; "
                     "it does not refuse a symlinked command" if prohibit else
                     "'no' is glexec-py's behaviour")

        for key in ("certdir", "vomsdir"):
            handled.add(key)
        self.use_lcas, _ = self.conf_bool("use_lcas", True)
        done("use_lcas", INFO, "translated",
             "lcas.db is translated (its bans become global bans)" if self.use_lcas
             else "'no': lcas.db is not read")

        handled.update(("lcmaps_get_account_policy", "lcmaps_verify_account_policy",
                        "lcmaps_voms_verification"))
        vpol = c.get("lcmaps_verify_account_policy")
        if vpol is not None:
            self.add(name, vpol.line, "lcmaps_verify_account_policy", INFO, "not_needed",
                     "gLExec's verify mode (GLEXEC_MODE) is not used by any known client and not "
                     "offered by glexec-py; only the get-account policy is translated")

        self.epilogue()
        handled.update(("epilogue", "epilogue_user", "epilogue_group", "epilogue_timeout"))

        for key, cv in c.items():
            if key in handled:
                continue
            why = _NOT_NEEDED.get(key)
            if why is not None:
                level = INFO
                if key == "log_level" and not re.fullmatch(r"\d+", cv.value):
                    level, why = WARNING, (f"{_clip(cv.value)!r} is not a number (gLExec would exit "
                                           "202 'conf value malformed'); " + why)
                self.add(name, cv.line, key, level, "not_needed", why)
            else:
                self.add(name, cv.line, key, WARNING, "not_translated",
                         "not a gLExec 0.9 key (glexec-interface.md section 6); ignored")

    def callers(self, key, target):
        cv = self.conf.get(key)
        if cv is None:
            self.out.set("callers", target, [])
            return
        from glexec_py.core.config import _name_problem
        names, dropped = [], []
        for word in re.split(r"[\s,]+", cv.value):
            if not word:
                continue
            if word == "*":
                dropped.append("'*' (anyone)")
                continue
            base = word[:-1].lstrip(".")
            if word.endswith("*") and base and "*" not in base and not _name_problem(base, key, pool=False):
                word = "." + base
                self.add(self.conf_name, cv.line, key, WARNING, "stricter",
                         f"'{_clip(base)}*' becomes '{_clip(word)}': the pool accounts "
                         f"{_clip(base)}<digits> only")
            if _name_problem(word, key, pool=True):
                dropped.append(repr(_clip(word)))
                continue
            if word not in names:
                names.append(word)
        self.out.set("callers", target, names)
        if dropped:
            self.add(self.conf_name, cv.line, key, WARNING, "stricter",
                     f"not translated: {', '.join(dropped)} -- glexec-py has no wildcards and "
                     "takes only plain names; list the calling accounts (or '.prefix' for pool "
                     "accounts)")
        self.add(self.conf_name, cv.line, key, INFO, "translated",
                 f"callers.{target}: {names}")

    def preserve_env(self):
        key = "preserve_env_variables"
        cv = self.conf.get(key)
        if cv is None:
            self.out.set("payload", "preserve_env", [])
            return
        words = [w for w in re.split(r"[\s,]+", cv.value) if w]
        if [w.lower() for w in words] in (["no"], ["yes"], ["none"], []):
            self.out.set("payload", "preserve_env", [])
            self.add(self.conf_name, cv.line, key, INFO, "translated",
                     f"{_clip(cv.value)!r} is a YAIM template placeholder, not a variable name: "
                     "payload.preserve_env: [] (only GLEXEC_* and what glexec sets survive)")
            return
        keep, refused = [], []
        from glexec_py.core.config import _env_problem
        for w in words:
            problem = _env_problem(w)
            if problem:
                refused.append(f"{w!r}")
            elif w not in keep:
                keep.append(w)
        self.out.set("payload", "preserve_env", keep)
        self.add(self.conf_name, cv.line, key, INFO, "translated", f"payload.preserve_env: {keep}")
        if refused:
            self.add(self.conf_name, cv.line, key, WARNING, "stricter",
                     f"not preserved: {', '.join(refused)} -- not variable names, or never "
                     "preserved by glexec-py (HOME/USER/LOGNAME/PATH/X509_USER_PROXY are set by "
                     "glexec; LD_*/MALLOC_* never pass)")

    def logging(self):
        c, name = self.conf, self.conf_name
        self.out.set("audit", "file", self.audit_file)
        dest = c.get("log_destination")
        syslog = True
        if dest is not None:
            if dest.value == "syslog":
                self.add(name, dest.line, "log_destination", INFO, "translated",
                         "audit.syslog: true (and the JSON audit file)")
            elif dest.value == "file":
                syslog = False
                self.add(name, dest.line, "log_destination", INFO, "translated",
                         f"audit.syslog: false; the records go to audit.file {self.audit_file} (JSON lines)")
            else:
                self.add(name, dest.line, "log_destination", WARNING, "not_translated",
                         f"{_clip(dest.value)!r} is neither syslog nor file (gLExec exits 202 "
                         "'conf value malformed'); syslog is used")
        self.out.set("audit", "syslog", syslog)
        fac = c.get("syslog_facility")
        if fac is not None:
            from glexec_py.core.config import FACILITIES
            value = fac.value.upper()
            if not value.startswith("LOG_"):
                value = "LOG_" + value
            if value in FACILITIES:
                self.out.set("audit", "syslog_facility", value)
                self.add(name, fac.line, "syslog_facility", INFO, "translated",
                         f"audit.syslog_facility: {value}")
            else:
                self.add(name, fac.line, "syslog_facility", WARNING, "not_translated",
                         f"{_clip(fac.value)!r} is not a facility glexec-py knows; LOG_DAEMON is used")

    def epilogue(self):
        """gLExec's epilogue has no equivalent (config.EPILOGUE_REFUSED, docs/epilogue.md):
        a site that set one is told what replaces it."""
        from glexec_py.core.config import EPILOGUE_REFUSED
        c, name = self.conf, self.conf_name
        keys = ("epilogue", "epilogue_user", "epilogue_group", "epilogue_timeout")
        present = [k for k in keys if k in c]
        command = c.get("epilogue")
        for k in present:
            if command is None or not command.value:
                self.add(name, c[k].line, k, INFO, "not_needed", "no epilogue command is set")
            else:
                self.add(name, c[k].line, k, WARNING, "not_translated", EPILOGUE_REFUSED)

    # -- lcmaps.db
    def lcmaps(self):
        if self.db_text is None:
            self.add(self.db_name or "lcmaps.db", 0, "lcmaps.db", ERROR, "refused",
                     "no lcmaps.db: the mapping policy cannot be translated")
            return None
        try:
            db = parse_lcmaps_db(self.db_text)
            instances_of = {}
            for p in db.policies:
                instances_of[p.name] = {s: resolve_state(db, s) for s in states_of(p)}
        except DbSyntaxError as e:
            self.add(self.db_name, e.line, "lcmaps.db", ERROR, "refused",
                     f"syntax error: {e.what} (LCMAPS would fail to initialise: gLExec exit 202)")
            return None
        if db.path is not None:
            self.add(self.db_name, db.path[1], "path", INFO, "not_needed",
                     "no plugins are loaded; the policy is translated")
        if not db.policies:
            self.add(self.db_name, 0, "lcmaps.db", ERROR, "refused", "no policy in the file")
            return None
        chosen = self.choose_policies(db)
        if not chosen:
            return None
        self.policy_semantics(db, chosen, instances_of)
        return db

    def choose_policies(self, db):
        cv = self.conf.get("lcmaps_get_account_policy")
        names = [p.name for p in db.policies]
        if cv is not None and cv.value:
            wanted = [w for w in re.split(r"[\s,:]+", cv.value) if w]
            missing = [w for w in wanted if w not in names]
            if missing:
                self.add(self.conf_name, cv.line, "lcmaps_get_account_policy", ERROR, "refused",
                         f"names policy {', '.join(map(repr, missing))}, which {self.db_name} does "
                         f"not define (it has {', '.join(names)}); LCMAPS would map nobody")
                return []
            chosen = [p for w in wanted for p in db.policies if p.name == w]
            self.add(self.conf_name, cv.line, "lcmaps_get_account_policy", INFO, "translated",
                     f"gLExec asked LCMAPS for policy {', '.join(wanted)} only; that policy is "
                     "translated")
        else:
            chosen = list(db.policies)
            self.add(self.conf_name if self.conf_text is not None else self.db_name, 0,
                     "lcmaps_get_account_policy", INFO, "translated",
                     "not set: LCMAPS tries every policy in file order ("
                     + ", ".join(names) + ") until one maps; they are translated as one order")
        for p in db.policies:
            if p not in chosen:
                self.add(self.db_name, p.line, f"policy {p.name}", INFO, "not_needed",
                         "not the policy gLExec asks for (lcmaps_get_account_policy); not translated")
        return chosen

    def policy_semantics(self, db, chosen, instances_of):
        used = {}
        for p in chosen:
            for s, inst in instances_of[p.name].items():
                used.setdefault(s, inst)
        # one module file with two different argument lists is refused by LCMAPS
        by_module = {}
        for inst in used.values():
            prev = by_module.setdefault(inst.module, inst)
            if prev.args != inst.args:
                self.add(self.db_name, inst.line, inst.state, ERROR, "refused",
                         f"{inst.word} is used with two argument lists (also by "
                         f"{prev.state!r}); LCMAPS refuses to load a plugin twice")
        for inst in used.values():
            kind = module_kind(inst.module)
            if kind == UNSUPPORTED:
                why = UNSUPPORTED_WHY.get(inst.module, "an unknown plugin: what it decides "
                                           "cannot be translated")
                self.add(self.db_name, inst.line or self._rule_line(chosen, inst.state), inst.state,
                         ERROR, "refused", f"{inst.word}: {why}")
        for name, var in db.variables.items():
            if name not in used and not any(v.is_term and v.value == name for v in db.variables.values()):
                self.add(self.db_name, var.line, name, INFO, "not_needed",
                         "defined but not used by the translated policy")
        if any(f.level == ERROR for f in self.r.findings):
            return
        self.plugins(used, chosen)
        accounts = [i for i in used.values() if module_kind(i.module) == ACCOUNT]
        if not accounts:
            self.add(self.db_name, chosen[0].line, f"policy {chosen[0].name}", ERROR, "refused",
                     "no account plugin (localaccount, poolaccount, voms_localaccount, "
                     "voms_poolaccount): the policy maps nobody")
            return
        if len(accounts) > MAX_ACCOUNT_PLUGINS:
            self.add(self.db_name, chosen[0].line, f"policy {chosen[0].name}", ERROR, "refused",
                     "too many account plugins to check")
            return
        order = derive_order(chosen, instances_of)
        grouped = any(module_kind(i.module) == GROUP for i in used.values())
        group_inst = next((i for i in used.values() if module_kind(i.module) == GROUP), None)
        strict_groups = group_inst is not None and any(
            o in ("-mapall",) or (o == "-mapmin" and v not in (None, "0"))
            for o, v in plugin_options(group_inst.args))
        sources = [SOURCE_OF[i.module] for i in accounts]
        mismatches, notes = compare(chosen, instances_of, order, grouped, sources, strict_groups)
        first = chosen[0]
        explanation = [f"policy {p.name} ({self.db_name}:{p.line}): " + "; ".join(
            _rule_text(r) for r in p.rules) for p in chosen]
        explanation.append("glexec-py: global bans, then mapping.order " + str(order)
                           + (" with the VOMS groups of voms_localgroup for voms_* sources" if grouped else ""))
        self.policies_explained[" + ".join(p.name for p in chosen)] = explanation
        if mismatches:
            # a path that maps twice is the clearest explanation
            w, theirs, ours = min(mismatches, key=lambda m: m[1][0] != "conflict")
            self.add(self.db_name, first.line, f"policy {first.name}", ERROR, "refused",
                     f"no single glexec-py order maps like this policy: with {w.describe()}, "
                     f"LCMAPS gives {_outcome_text(theirs)} but order {order} gives "
                     f"{_outcome_text(ours)} ({len(mismatches)} such combinations)")
            return
        self.out.set("mapping", "order", order)
        self.add(self.db_name, first.line, f"policy {first.name}" if len(chosen) == 1
                 else "policies " + ", ".join(p.name for p in chosen), INFO, "translated",
                 f"mapping.order: {order} (checked on every combination of matching sources)")
        for w, theirs, ours in notes:
            if theirs[0] == "mapped" and theirs[2] and not ours[2]:
                self.add(self.db_name, first.line, f"policy {first.name}", WARNING, "differs",
                         f"with {w.describe()}: LCMAPS maps by {theirs[1]} and keeps the VOMS "
                         "group of voms_localgroup as the primary gid; glexec-py uses the "
                         "account's own groups for a non-VOMS source")
                break
        for w, theirs, ours in notes:
            if ours[0] == "denied":
                self.add(self.db_name, group_inst.line, group_inst.state, WARNING, "stricter",
                         f"with {w.describe()}: when -mapmin/-mapall is not met LCMAPS falls "
                         f"through to {theirs[1]}; glexec-py refuses (203)")
                break
        if len(chosen) > 1:
            self.add(self.db_name, chosen[1].line, "policies", INFO, "translated",
                     "several policies are one order in glexec-py: LCMAPS resets the credential "
                     "data and tries the next policy when one fails; the combined order above "
                     "gives the same account in every combination checked")
        self.bans_scope(chosen, instances_of)

    @staticmethod
    def _rule_line(policies, state):
        for p in policies:
            for r in p.rules:
                if state in (r.state, r.on_success, r.on_failure):
                    return r.line
        return 0

    def bans_scope(self, chosen, instances_of):
        """A ban/verify plugin that not every mapping path passes: LCMAPS lets some
        identities around it, glexec-py applies it to all (stricter)."""
        for p in chosen:
            inst = instances_of[p.name]
            for s, i in inst.items():
                if module_kind(i.module) != CHECK:
                    continue
                rule = next((r for r in p.rules if r.state == s), None)
                if rule is not None and rule.on_failure is not None and \
                        can_map_from(p, inst, rule.on_failure):
                    self.add(self.db_name, rule.line, s, WARNING, "stricter",
                             f"in policy {p.name}, failing {i.module} continues at "
                             f"{rule.on_failure!r}; glexec-py applies it to every call and refuses")
            checks = {i.module for i in inst.values() if module_kind(i.module) == CHECK}
            for other in chosen:
                if other is p:
                    continue
                missing = checks - {i.module for i in instances_of[other.name].values()
                                    if module_kind(i.module) == CHECK}
                for m in sorted(missing):
                    if m.startswith("ban_"):
                        self.add(self.db_name, other.line, f"policy {other.name}", WARNING, "stricter",
                                 f"has no {m} (policy {p.name} has): LCMAPS maps a banned identity "
                                 "through it; glexec-py's bans are global")

    def plugins(self, used, chosen):
        seen = set()
        for inst in used.values():
            if inst.module in seen:
                continue
            seen.add(inst.module)
            getattr(self, "plugin_" + inst.module)(inst)
        if "verify_proxy" not in seen:
            self.add(self.db_name, chosen[0].line, f"policy {chosen[0].name}", WARNING, "stricter",
                     "no verify_proxy plugin: LCMAPS mapped without checking the proxy chain; "
                     "glexec-py always verifies it against credentials.ca_dir")
            self.set_ca_dir(None)

    def _opts(self, inst, known):
        """Options of a plugin: ``{name: value}``; unknown ones reported."""
        got = {}
        for opt, value, *_ in plugin_options(inst.args):
            if opt is None:
                self.add(self.db_name, inst.line, f"{inst.state} {value}", WARNING, "not_translated",
                         f"{inst.word}: argument {_clip(value)!r} without an option; ignored")
                continue
            canon = known.get(opt)
            if canon is None:
                self.add(self.db_name, inst.line, f"{inst.state} {opt}", WARNING, "not_translated",
                         f"{inst.word}: unknown option {opt!r} (LCMAPS would refuse to initialise "
                         "the plugin); ignored")
                continue
            got[canon] = value if value is not None else True
        return got

    def _mapfile(self, inst, opts, key="gridmapfile", yaml_key="gridmapfile"):
        path = opts.get(key)
        if path in (None, True):
            path = DEFAULT_GRIDMAPFILE
            self.add(self.db_name, inst.line, f"{inst.state}", INFO, "translated",
                     f"no -{key}: LCMAPS (running as root) reads {path}")
        else:
            path = _abs(path)
        prev = self.out.get("mapping", yaml_key)
        if prev is not None and prev != path:
            self.add(self.db_name, inst.line, f"{inst.state} -{key}", ERROR, "refused",
                     f"{path} differs from {prev} used by another plugin; glexec-py reads one "
                     f"{yaml_key} for every source. Merge them into one file (DN lines and FQAN "
                     "lines do not overlap) and point every plugin at it")
            return None
        self.out.set("mapping", yaml_key, path)
        self.referenced(path, "gridmap", inst)
        return path

    def referenced(self, path, kind, inst_or_line):
        line = inst_or_line if isinstance(inst_or_line, int) else inst_or_line.line
        self.refs.setdefault(path, (kind, line))

    def set_ca_dir(self, certdir):
        conf_dir = self.conf.get("certdir")
        if certdir is None:
            certdir = conf_dir.value if conf_dir is not None and conf_dir.value else DEFAULT_CA_DIR
        if conf_dir is not None and conf_dir.value and conf_dir.value != certdir:
            self.add(self.conf_name, conf_dir.line, "certdir", WARNING, "differs",
                     f"{conf_dir.value} differs from verify_proxy's -certdir {certdir}, which "
                     "LCMAPS used for the decision; that one is used")
        elif conf_dir is not None:
            self.add(self.conf_name, conf_dir.line, "certdir", INFO, "translated",
                     f"credentials.ca_dir: {certdir}")
        self.out.set("credentials", "ca_dir", certdir)
        self.refs[certdir] = ("ca_dir", 0)

    # one method per plugin
    def plugin_verify_proxy(self, inst):
        o = self._opts(inst, {
            "-certdir": "certdir", "-cadir": "certdir", "-capath": "certdir", "--capath": "certdir",
            "--allow-limited-proxy": "allow", "--disallow-limited-proxy": "disallow",
            "--require-limited-proxy": "require", "--discard_private_key_absence": "nokey",
            "--never_discard_private_key_absence": "keyneeded",
            "--only-enforce-lifetime-checks": "lifetime_only", "--max-proxy-level-ttl": "ttl",
            "--max-voms-ttl": "vomsttl"})
        certdir = o.get("certdir")
        self.set_ca_dir(_abs(certdir) if isinstance(certdir, str) else None)
        self.add(self.db_name, inst.line, inst.state, INFO, "translated",
                 f"{inst.word}: every call's chain is verified against credentials.ca_dir "
                 f"{self.out.get('credentials', 'ca_dir')} (CRLs, proxy rules, private key)")
        if o.get("disallow"):
            self.out.set("credentials", "allow_limited_proxy", False)
        if o.get("require"):
            self.out.set("credentials", "require_limited_proxy", True)
        if o.get("nokey"):
            self.add(self.db_name, inst.line, f"{inst.state} --discard_private_key_absence", WARNING,
                     "stricter", "a chain without private key is accepted only from the callers in "
                     "callers.omission_private_key (glexec.conf omission_private_key_white_list), "
                     "not from everyone")
        if o.get("lifetime_only"):
            self.add(self.db_name, inst.line, f"{inst.state} --only-enforce-lifetime-checks", WARNING,
                     "stricter", "glexec-py always verifies the whole chain")
        for opt in ("ttl", "vomsttl"):
            if opt in o:
                self.add(self.db_name, inst.line, f"{inst.state} {opt}", WARNING, "not_translated",
                         "per-level and VOMS lifetime limits are not translated; set "
                         "credentials.max_proxy_lifetime (seconds, every proxy) by hand")

    def _ban(self, inst, kind):
        o = self._opts(inst, {"-banmapfile": "file", "-ban_mapfile": "file", "-gridmapfile": "file",
                              "-gridmap": "file", "-no_wildcard": "nowild"})
        path = o.get("file")
        if not isinstance(path, str):
            self.add(self.db_name, inst.line, inst.state, ERROR, "refused",
                     f"{inst.word} without -banmapfile: the plugin fails, LCMAPS maps nobody "
                     "through this policy")
            return
        path = _abs(path)
        key = "dn_files" if kind == "dn" else "fqan_files"
        files = self.out.get("bans", key) or []
        if path not in files:
            files.append(path)
        self.out.set("bans", key, files)
        self.referenced(path, "ban_" + kind, inst)
        self.add(self.db_name, inst.line, inst.state, INFO, "translated",
                 f"bans.{key}: {path} (global: checked before any mapping)")
        if o.get("nowild"):
            self.add(self.db_name, inst.line, f"{inst.state} -no_wildcard", WARNING, "stricter",
                     "glexec-py reads '*', '?' and '[' in ban files as patterns: a pattern bans more")

    def plugin_ban_dn(self, inst):
        self._ban(inst, "dn")

    def plugin_ban_fqan(self, inst):
        self._ban(inst, "fqan")
        self.need_vomsdir(inst)

    def _pool_opts(self, inst, extra=None):
        known = {"-gridmapfile": "gridmapfile", "-gridmap": "gridmapfile",
                 "-gridmapdir": "gridmapdir", "-override_inconsistency": "override",
                 "-max_mappings_per_credential": "maxmap", "-strict_poolprefix_match": "strict",
                 "-no_wildcard": "nowild", "-disablewildcard": "nowild", "-disablewildcards": "nowild"}
        known.update(extra or {})
        o = self._opts(inst, known)
        self._mapfile(inst, o)
        gmd = o.get("gridmapdir")
        if not isinstance(gmd, str) or not gmd.startswith("/"):
            self.add(self.db_name, inst.line, f"{inst.state} -gridmapdir", ERROR, "refused",
                     f"{inst.word} needs an absolute -gridmapdir (LCMAPS has no default; "
                     "GRIDMAPDIR in the environment is not translated)")
            return o
        prev = self.out.get("mapping", "gridmapdir")
        if prev is not None and prev != gmd:
            self.add(self.db_name, inst.line, f"{inst.state} -gridmapdir", ERROR, "refused",
                     f"{gmd} differs from {prev}; glexec-py has one gridmapdir")
            return o
        self.out.set("mapping", "gridmapdir", gmd)
        if o.get("override"):
            self.add(self.db_name, inst.line, f"{inst.state} -override_inconsistency", WARNING,
                     "stricter", "a lease on an entry of another pool is refused (203 wrong_pool) "
                     "instead of being moved; `glexec-leases` repairs such leases")
        if "maxmap" in o:
            v = o["maxmap"]
            if isinstance(v, str) and re.fullmatch(r"\d{1,4}", v) and 1 <= int(v) <= 9999:
                prev = self.out.get("mapping", "max_mappings_per_credential")
                self.out.set("mapping", "max_mappings_per_credential", max(int(v), prev or 1))
            else:
                self.add(self.db_name, inst.line, f"{inst.state} -max_mappings_per_credential",
                         WARNING, "not_translated", f"{_clip(v)!r} is not 1..9999; the default 1 is used")
        if "strict" in o and str(o["strict"]).lower() in ("no", "false", "0"):
            self.add(self.db_name, inst.line, f"{inst.state} -strict_poolprefix_match", WARNING,
                     "stricter", "pool entries are always <pool><digits> in glexec-py")
        if o.get("nowild"):
            self.add(self.db_name, inst.line, f"{inst.state} -no_wildcard", WARNING, "differs",
                     "glexec-py's pool source always reads wildcard patterns in the grid-mapfile")
        self.add(self.db_name, inst.line, inst.state, INFO, "translated",
                 f"{inst.word}: mapping source '{SOURCE_OF[inst.module]}', leases in {gmd}")
        return o

    def plugin_poolaccount(self, inst):
        self._pool_opts(inst)

    def plugin_voms_poolaccount(self, inst):
        o = self._pool_opts(inst, {
            "-do_not_use_secondary_gids": "nosec", "--do-not-use-secondary-gids": "nosec",
            "--require-primary-gid": "x", "--do-not-require-primary-gid": "x",
            "--use-voms-gid": "x", "--use-account-gid": "acctgid",
            "--add-primary-gid-from-mapped-account": "acctgid",
            "--add-primary-gid-as-secondary-gid-from-mapped-account": "x",
            "--add-secondary-gids-from-mapped-account": "x",
            "-use_voms_gid": "x", "--do-not-add-primary-gid-from-mapped-account": "x",
            "--do-not-add-primary-gid-as-secondary-gid-from-mapped-account": "x",
            "--do-not-add-secondary-gids-from-mapped-account": "x"})
        if o.get("nosec"):
            self.out.set("mapping", "lease_secondary_groups", False)
        self.pool_account_gid, self.pool_inst = bool(o.get("acctgid")), inst
        self.need_vomsdir(inst)

    def plugin_localaccount(self, inst):
        o = self._opts(inst, {"-gridmapfile": "gridmapfile", "-gridmap": "gridmapfile",
                              "-use_passwd_file": "x"})
        self._mapfile(inst, o)
        self.add(self.db_name, inst.line, inst.state, INFO, "translated",
                 f"{inst.word}: mapping source 'local'")

    def plugin_voms_localaccount(self, inst):
        o = self._opts(inst, {"-gridmapfile": "gridmapfile", "-gridmap": "gridmapfile",
                              "-use_voms_gid": "vomsgid", "--use-voms-gid": "vomsgid",
                              "-do_not_use_secondary_gids": "x", "--use-account-gid": "x",
                              "--add-primary-gid-from-mapped-account": "x",
                              "--add-secondary-gids-from-mapped-account": "x"})
        self._mapfile(inst, o)
        self.add(self.db_name, inst.line, inst.state, INFO, "translated",
                 f"{inst.word}: mapping source 'voms_local' (first FQAN with a line)")
        self.voms_local_gids = bool(o.get("vomsgid"))
        self.need_vomsdir(inst)

    def plugin_voms_localgroup(self, inst):
        o = self._opts(inst, {"-groupmapfile": "file", "-groupmap": "file", "-mapall": "all",
                              "-mapmin": "min", "--map-to-secondary-groups": "secondary"})
        path = o.get("file")
        path = _abs(path) if isinstance(path, str) else GRID_SECURITY + "/groupmapfile"
        self.out.set("mapping", "groupmapfile", path)
        self.referenced(path, "gridmap", inst)
        self.group_line = inst.line
        if o.get("all"):
            self.out.set("mapping", "groupmap_all", True)
        if "min" in o:
            v = o["min"]
            if isinstance(v, str) and re.fullmatch(r"\d{1,5}", v) and int(v) <= 65536:
                self.out.set("mapping", "groupmap_min", int(v))
            else:
                self.add(self.db_name, inst.line, f"{inst.state} -mapmin", WARNING, "not_translated",
                         f"{_clip(v)!r} is not a number; 0 is used")
        if o.get("secondary"):
            self.add(self.db_name, inst.line, f"{inst.state} --map-to-secondary-groups", WARNING,
                     "differs", "glexec-py makes the first FQAN's group the primary gid")
        self.add(self.db_name, inst.line, inst.state, INFO, "translated",
                 f"mapping.groupmapfile: {path} (for the voms_* sources)")
        self.need_vomsdir(inst)

    def plugin_posix_enf(self, inst):
        self.add(self.db_name, inst.line, inst.state, INFO, "not_needed",
                 "glexec-py switches to the mapped uid, primary gid and groups itself")

    def plugin_dummy_good(self, inst):
        self.add(self.db_name, inst.line, inst.state, INFO, "not_needed",
                 "always succeeds: only shapes the policy")

    def plugin_dummy_bad(self, inst):
        self.add(self.db_name, inst.line, inst.state, INFO, "not_needed",
                 "always fails: only shapes the policy (a path ending here maps nobody)")

    def plugin_voms(self, inst):
        self.add(self.db_name, inst.line, inst.state, INFO, "not_needed",
                 "lcmaps_voms.mod is a deprecated no-op; FQANs come from credentials.vomsdir")

    def plugin_glexec_tracking(self, inst):
        if _schema_has("audit", "monitor_lines"):
            self.out.set("audit", "monitor_lines", True)
            self.add(self.db_name, inst.line, inst.state, INFO, "translated",
                     "audit.monitor_lines: true (glexec.mon lines for gratia's gLExec probe); "
                     "the process tracking itself is glexec-py's own (linger)")
        else:
            self.add(self.db_name, inst.line, inst.state, WARNING, "not_translated",
                     "translated once glexec.yaml has audit.monitor_lines (glexec.mon lines for "
                     "gratia); this glexec-py has no such key. glexec-py supervises the payload "
                     "itself (linger); no tracking group is allocated")
        o = plugin_options(inst.args)
        if any(opt in ("-min-gid", "-max-gid") for opt, *_ in o):
            self.add(self.db_name, inst.line, f"{inst.state} -min-gid/-max-gid", INFO, "not_needed",
                     "no tracking gid is allocated; a batch system's own tracking groups can be "
                     "kept with payload.keep_caller_groups")

    def need_vomsdir(self, inst):
        if self.out.get("credentials", "vomsdir"):
            return
        cv = self.conf.get("vomsdir")
        path = cv.value if cv is not None and cv.value else DEFAULT_VOMSDIR
        self.out.set("credentials", "vomsdir", path)
        self.add(self.conf_name if cv is not None else self.db_name, cv.line if cv is not None else inst.line,
                 "vomsdir", INFO, "translated",
                 f"credentials.vomsdir: {path} (VOMS attributes are verified, as LCMAPS did)")
        verif = self.conf.get("lcmaps_voms_verification")
        if verif is not None and _BOOL.get(verif.value.lower()) is False:
            self.add(self.conf_name, verif.line, "lcmaps_voms_verification", WARNING, "stricter",
                     "'no' let LCMAPS use unverified VOMS attributes; glexec-py always verifies them")

    def finish_voms_groups(self):
        """The primary group rule of voms_poolaccount/voms_localaccount without (or with)
        voms_localgroup."""
        grouped = bool(self.out.get("mapping", "groupmapfile"))
        order = self.out.get("mapping", "order") or []
        if "voms_pool" in order and not grouped and not self.pool_account_gid and self.pool_inst:
            self.add(self.db_name, self.pool_inst.line, self.pool_inst.state, ERROR, "refused",
                     "voms_poolaccount without voms_localgroup takes no group from the account "
                     "(--use-voms-gid): LCMAPS then returns no primary gid and refuses every such "
                     "mapping, while glexec-py would map with the account's group. Add "
                     "--add-primary-gid-from-mapped-account if that is what you mean")
        if "voms_local" in order and grouped and not self.voms_local_gids:
            self.add(self.db_name, self.group_line or 0, "voms_localaccount", WARNING, "stricter",
                     "without -use_voms_gid LCMAPS adds the account's own groups to the VOMS "
                     "groups; glexec-py gives the payload the VOMS groups only")

    # -- lcas.db
    def lcas(self):
        if not self.use_lcas:
            return
        if self.lcas_text is None:
            if self.lcas_name:
                self.add(self.lcas_name, 0, "lcas.db", INFO, "not_needed", "not given; no LCAS bans")
            return
        base = self.lcas_name.rsplit("/", 1)[0] if "/" in (self.lcas_name or "") else "/etc/lcas"
        for lineno, raw in enumerate(self.lcas_text.split("\n"), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(r'^pluginname\s*=\s*("([^"]*)"|[^,\s]+)\s*(?:,\s*pluginargs\s*=\s*(.*))?$', line)
            if not m:
                self.add(self.lcas_name, lineno, _clip(line), ERROR, "refused",
                         "not a 'pluginname=...,pluginargs=...' line (LCAS would fail: nobody allowed)")
                continue
            word = m.group(2) if m.group(2) is not None else m.group(1)
            args = (m.group(3) or "").strip()
            if len(args) >= 2 and args[0] == args[-1] == '"':
                args = args[1:-1]
            mod = word.rsplit("/", 1)[-1]
            mod = mod[:-4] if mod.endswith(".mod") else mod[:-3] if mod.endswith(".so") else mod
            mod = mod.removeprefix("liblcas_").removeprefix("lcas_")
            if mod == "userban":
                path = args.split()[0] if args.split() else "ban_users.db"
                relative = not path.startswith("/")
                path = f"{base}/{path}" if relative else path
                files = self.out.get("bans", "dn_files") or []
                if path not in files:
                    files.append(path)
                self.out.set("bans", "dn_files", files)
                self.referenced(path, "ban_dn", lineno)
                self.add(self.lcas_name, lineno, word, INFO, "translated",
                         f"bans.dn_files: {path} (a listed DN is refused, 203)"
                         + (" -- a relative name is read from lcas.db's directory [assumed: "
                            "LCAS's own search path is not documented]; check the path" if relative else ""))
            elif mod in ("userallow", "timeslots", "voms", "gacl", "check_executable", "plugin_example"):
                why = {"userallow": "an allow-list of DNs; glexec-py allows whoever the "
                                    "grid-mapfile maps -- dropping it would allow more",
                       "timeslots": "time-of-day restrictions have no glexec-py equivalent",
                       "voms": "an allow-list of VOs/FQANs; dropping it would allow more"}.get(
                    mod, "an authorization plugin glexec-py cannot reproduce")
                self.add(self.lcas_name, lineno, word, ERROR, "refused", why)
            else:
                self.add(self.lcas_name, lineno, word, ERROR, "refused",
                         "unknown LCAS plugin: it may refuse callers glexec-py would allow")

    # -- the files named
    def check_referenced_files(self):
        from glexec_py.core import bans, gridmap
        from glexec_py.errors import ConfigError
        for path, (kind, _line) in self.refs.items():
            if path not in self.files:
                continue
            data = self.files[path]
            if kind == "ca_dir":
                self.check_ca_dir(path, data)
                continue
            if data is None:
                self.add(path, 0, kind, WARNING, "not_translated",
                         "cannot be read here; not checked (glexec-py refuses a missing "
                         "ban file by denying everyone, a missing grid-mapfile with 202)")
                continue
            if kind != "gridmap" and len(data) > BAN_FILE_MAX:
                self.add(path, 0, kind, ERROR, "refused",
                         f"larger than bans.max_file_size ({BAN_FILE_MAX} bytes): glexec-py would "
                         "treat it as a broken ban source and deny everyone")
                continue
            try:
                if kind == "gridmap":
                    gridmap.parse_gridmap(data, path)
                else:
                    bans.load_ban_file(data, path, kind[4:])
            except ConfigError as e:
                self.add(path, e.line or 0, kind, ERROR, "refused",
                         f"glexec-py cannot use this file: {e.what}"
                         + (" (a broken ban source denies everyone)" if kind != "gridmap" else ""))
            else:
                self.add(path, 0, kind, INFO, "translated", "parsed as glexec-py will parse it")

    def check_ca_dir(self, path, names):
        """Under glexec-py's default namespace_policy 'require', a CA without its IGTF
        ``<hash>.namespaces`` or ``<hash>.signing_policy`` issues no usable credential."""
        if names is None:
            self.add(path, 0, "ca_dir", WARNING, "not_translated",
                     "cannot be listed here; not checked (credentials.ca_dir)")
            return
        names = set(names)
        hashes = sorted({n.split(".")[0] for n in names if re.fullmatch(r"[0-9a-f]{8}\.\d+", n)})
        bare = [h for h in hashes if f"{h}.namespaces" not in names and f"{h}.signing_policy" not in names]
        if bare:
            self.add(path, 0, "ca_dir", WARNING, "stricter",
                     f"{len(bare)} CA(s) ({', '.join(bare[:5])}{', ...' if len(bare) > 5 else ''}) "
                     "have neither <hash>.namespaces nor <hash>.signing_policy: under "
                     "credentials.namespace_policy 'require' (the default) their users are refused "
                     "(201). Install the IGTF policy files, or set namespace_policy: optional")
        else:
            self.add(path, 0, "ca_dir", INFO, "translated",
                     "every CA has its namespace policy file (credentials.namespace_policy require)")

    def finish(self):
        """What can only be said once everything is read: group rules of the voms_*
        sources, the lease limit, certdir/vomsdir/lcmaps_voms_verification, defaults."""
        self.finish_voms_groups()
        if self.out.get("mapping", "gridmapdir"):
            self.add(self.db_name, 0, "mapping.max_leases_per_caller", WARNING, "stricter",
                     "one calling account may hold at most 50% of each pool's entries (glexec-py's "
                     "default; LCMAPS has no limit): a site whose single pilot account needs the "
                     "whole pool sets mapping.max_leases_per_caller to 100% or 0")
        verif = self.conf.get("lcmaps_voms_verification")
        if verif is not None and not any(f.item == "lcmaps_voms_verification" for f in self.r.findings):
            off = _BOOL.get(verif.value.lower()) is False
            self.add(self.conf_name, verif.line, "lcmaps_voms_verification", WARNING if off else INFO,
                     "stricter" if off else "not_needed",
                     "glexec-py always verifies VOMS attributes (credentials.vomsdir)")
        for key, yaml_key in (("certdir", "ca_dir"), ("vomsdir", "vomsdir")):
            cv = self.conf.get(key)
            if cv is None or any(f.item == key and f.file == self.conf_name for f in self.r.findings):
                continue
            used = self.out.get("credentials", yaml_key)
            if used:
                self.add(self.conf_name, cv.line, key, INFO, "translated",
                         f"credentials.{yaml_key}: {used}"
                         + (" (the value is empty: LCMAPS's default)" if not cv.value else ""))
            else:
                self.add(self.conf_name, cv.line, key, INFO, "not_needed",
                         "the policy has no VOMS plugin: VOMS attributes are not read "
                         "(credentials.vomsdir: \"\")")
        where = self.db_name or "glexec.yaml"
        self.add(where, 0, "glexec-py defaults", INFO, "stricter",
                 "kept as glexec-py's defaults, stricter than LCMAPS (docs/stricter-than-lcmaps.md): "
                 "credentials.namespace_policy require (IGTF .namespaces/.signing_policy per CA), "
                 "mapping.min_uid 1000, mapping.max_leases_per_caller 50%, PAM account check "
                 "(/etc/pam.d/glexec), bans at every proxy depth")

    # -- output
    def emit(self):
        o = self.out
        if o.get("credentials", "ca_dir") is None:
            self.set_ca_dir(None)
        if o.get("mapping", "gridmapfile") is None:
            o.set("mapping", "gridmapfile", DEFAULT_GRIDMAPFILE)
        o.set("mapping", "min_uid", 1000)
        sources = [n for n in (self.conf_name, self.db_name, self.lcas_name) if n]
        lines = ["# glexec.yaml written by glexec-import from " + ", ".join(_clip(s, 200) for s in sources),
                 "# Review the import report before installing it (glexec-import --dry-run)."]
        for explanation in self.policies_explained.values():
            for e in explanation:
                lines.append("# " + _clip(e, 300))
        order = ("callers", "credentials", "mapping", "audit", "payload", "pam", "target_proxy",
                 "bans", "epilogue")
        for section in order:
            values = o.values.get(section)
            if section == "pam":
                values = {"enabled": (True, ""), "service": ("glexec", "")}
            if not values:
                continue
            lines.append("")
            lines.append(f"{section}:")
            for key, (value, comment) in values.items():
                lines.append(f"  {key}: {_yaml(value)}" + (f"   # {comment}" if comment else ""))
        lines.append("")
        lines.append(f"state_dir: {_yaml(self.state_dir)}")
        return "\n".join(lines) + "\n"


def _yaml(value):
    """A YAML flow value; strings as JSON strings (a subset of YAML's double-quoted form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=True)


def _rule_text(r):
    if r.on_success is None:
        return f"~{r.state} -> {r.on_failure}"
    return f"{r.state} -> {r.on_success}" + (f" | {r.on_failure}" if r.on_failure else "")


def _outcome_text(o):
    if o[0] == "mapped":
        return f"an account from '{o[1]}'" + (" with VOMS groups" if o[2] else "")
    if o[0] == "conflict":
        return "two accounts on one path (" + ", ".join(o[1]) + ")"
    return "no account"


def referenced_defaults(conf_text):
    """(lcmaps.db path, lcas.db path) a glexec.conf names (``lcmaps_db_file``,
    ``lcas_db_file``), else None for each."""
    conf = parse_glexec_conf(conf_text, "glexec.conf", Report())
    get = lambda k: conf[k].value if k in conf and conf[k].value else None  # noqa: E731
    return get("lcmaps_db_file"), get("lcas_db_file")


def uses_lcas(conf_text):
    conf = parse_glexec_conf(conf_text or "", "glexec.conf", Report())
    cv = conf.get("use_lcas")
    return cv is None or _BOOL.get(cv.value.lower(), True)


def referenced_files(conf_name, conf_text, db_name, db_text, lcas_name, lcas_text):
    """The files the configuration names that the planner would like to check
    (grid-mapfiles, ban files): ``{path: kind}``."""
    t = Translator(conf_name, conf_text, db_name, db_text, lcas_name, lcas_text, {},
                   site_paths.STATE_DIR, site_paths.LOG_DIR + "/audit.jsonl")
    t.run()
    return {p: k for p, (k, _) in t.refs.items()}


def translate(conf_name, conf_text, db_name, db_text, lcas_name=None, lcas_text=None, files=None,
              *, state_dir=None, audit_file=None):
    """The plan: glexec.yaml text (or None) and the report.  Texts are ``str`` (None = the
    file was not given); ``files`` maps referenced paths to their bytes (None = unreadable;
    a path not in it is not checked)."""
    t = Translator(conf_name, conf_text, db_name, db_text, lcas_name, lcas_text, files,
                   state_dir or site_paths.STATE_DIR,
                   audit_file or site_paths.LOG_DIR + "/audit.jsonl")
    return t.run()
