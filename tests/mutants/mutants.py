"""The security checks that must each have a test that dies without them.

One entry per check: ``id``, ``check`` (what it protects), ``edits`` — a list of
``(file, exact source text, replacement)``; the text must occur exactly once in the file, so
a refactoring that moves it makes ``make mutants`` fail instead of silently testing nothing —
and ``kill``: pytest node ids (from the repository root) of which at least one must FAIL
with the mutation applied (and all pass without it). Prefer fast in-process tests; list a
privileged end-to-end test where only it reaches the check. A C edit rebuilds the shim and
the native module in the mutant's copy; privileged tests install that copy.

To add a check: append an entry, run ``make mutants MUTANTS=<id>``; see tests/mutants/run.py.
"""


P = "tests/privileged/"

MUTANTS = [
    # --- caller -------------------------------------------------------------------------------
    dict(id="caller-whitelist", check="the caller must be listed (engine.check_caller)",
         edits=[("glexec_py/engine.py",
                 '    if not allowed:\n        raise NotAuthorized("caller_not_allowed"',
                 '    if False:\n        raise NotAuthorized("caller_not_allowed"')],
         kill=[P + "test_e2e_refuse.py::test_caller_not_in_whitelist"]),
    dict(id="caller-pool-prefix-digits", check="'.prefix' caller entries match prefix + digits only",
         edits=[("glexec_py/core/authz.py", "and rest.isdigit())", "and True)")],
         kill=["tests/core/test_core_authz.py"]),

    # --- the caller's credential file ---------------------------------------------------------
    dict(id="proxy-no-symlink", check="the proxy is opened with O_NOFOLLOW",
         edits=[("glexec_py/effects/userfiles.py",
                 "fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK",
                 "fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK")],
         kill=[P + "test_credential_file.py::test_symlink_to_the_callers_own_file_is_refused",
               P + "test_e2e_refuse.py::test_proxy_not_a_regular_file[symlink]"]),
    dict(id="proxy-regular-file", check="the proxy must be a regular file",
         edits=[("glexec_py/effects/userfiles.py",
                 "        if not S_ISREG(st.st_mode):\n            raise CallerError(f\"{what}_type\"",
                 "        if False:\n            raise CallerError(f\"{what}_type\"")],
         kill=[P + "test_credential_file.py::test_fifo_is_refused",
               P + "test_e2e_refuse.py::test_proxy_not_a_regular_file[fifo]"]),
    dict(id="proxy-owner", check="the proxy must be owned by the caller",
         edits=[("glexec_py/effects/userfiles.py", "        if st.st_uid != caller.ruid:",
                 "        if False:")],
         kill=[P + "test_credential_file.py::test_root_caller_and_someone_elses_file",
               P + "test_e2e_refuse.py::test_listed_root_caller_cannot_use_another_users_proxy"]),
    dict(id="proxy-mode", check="the proxy's mode must be no wider than 0700",
         edits=[("glexec_py/effects/userfiles.py", "        if st.st_mode & 0o7077:", "        if False:")],
         kill=[P + "test_credential_file.py::test_mode_wider_than_0700_is_refused",
               P + "test_e2e_refuse.py::test_proxy_mode_too_wide[420]"]),
    dict(id="credential-size-cap", check="credentials.max_file_size (fstat size and bounded read)",
         edits=[("glexec_py/effects/userfiles.py", "        if st.st_size > max_size:", "        if False:"),
                ("glexec_py/effects/userfiles.py", "    if len(data) > max_size:", "    if False:")],
         kill=[P + "test_credential_file.py::test_size_cap",
               P + "test_e2e_refuse.py::test_credential_size_cap"]),

    # --- bans -----------------------------------------------------------------------------------
    dict(id="ban-dn-every-depth-core", check="DN bans against every subject of the chain (exact)",
         edits=[("glexec_py/core/bans.py",
                 "        for d in subject_dns:\n            for p in range(1, len(d) + 1):",
                 "        for d in subject_dns[-1:]:\n            for p in range(1, len(d) + 1):")],
         kill=["tests/core/test_bans.py::test_ban_of_a_dn_that_only_a_proxy_has"]),
    dict(id="ban-dn-every-depth-patterns", check="DN ban patterns against every subject of the chain",
         edits=[("glexec_py/core/bans.py",
                 "            for d in subject_dns:\n                for p in range(len(d), 0, -1):",
                 "            for d in subject_dns[-1:]:\n                for p in range(len(d), 0, -1):")],
         kill=["tests/core/test_bans.py::test_ban_of_a_dn_that_only_a_proxy_has"]),
    dict(id="ban-dn-every-depth-engine", check="the engine hands every proxy subject to the ban check",
         edits=[("glexec_py/engine.py", "    certs = call.chain[:call.eec_depth + 1]",
                 "    certs = call.chain[call.eec_depth:call.eec_depth + 1]")],
         kill=[P + "test_e2e_bans.py::test_ban_of_a_dn_only_a_proxy_has"]),
    dict(id="ban-merge-every-source", check="a merged ban list looks up the exact DN entries of every source",
         edits=[("glexec_py/core/bans.py", "        out._dn += tuple((base + o, ix) for o, ix in b._dn)",
                 "        out._dn = tuple((base + o, ix) for o, ix in b._dn)")],
         kill=["tests/core/test_bans.py::test_order_merge_unusable_and_counts",
               "tests/core/test_bans_index.py::test_cached_index_decides_as_the_parsed_file"]),
    dict(id="ban-cache-index-candidates", check="a cached ban index returns every entry of a matching hash",
         edits=[("glexec_py/core/bans.py", "        while i < len(hs) and hs[i] == h:",
                 "        while i < len(hs) and hs[i] == h and not out:")],
         kill=["tests/core/test_bans_index.py::test_cached_entries_with_the_same_avas_in_another_order",
               "tests/core/test_bans_index.py::test_cached_index_decides_as_the_parsed_file"]),

    # --- leases: link counts ------------------------------------------------------------------
    dict(id="lease-post-link-count", check="after link(): lease and entry each linked exactly twice",
         edits=[("glexec_py/effects/gridmapdir.py", "            if lst.st_nlink != 2 or est.st_nlink != 2:",
                 "            if False:")],
         kill=["tests/leases/test_gridmapdir.py::test_post_link_check_backs_off_from_an_entry_a_lockless_mapper_took"]),
    dict(id="lease-overlinked", check="an existing lease linked more than twice is refused",
         edits=[("glexec_py/effects/gridmapdir.py", "            if lst.st_nlink > 2:", "            if False:")],
         kill=["tests/leases/test_gridmapdir.py::test_manual_findings_untouched"]),

    # --- the identity switch and its verification (C: native module) ------------------------
    dict(id="switch-verify-resuid", check="getresuid must equal the target after setresuid",
         edits=[("csrc/identity.c", "    if (r != uid || e != uid || s != uid)", "    if (0)")],
         kill=["tests/native/test_identity.py::test_switch_refuses_when_a_system_call_lies[setresuid-getresuid]",
               P + "test_e2e_switch_faults.py::test_lying_setresuid_never_runs_the_payload"]),
    dict(id="switch-verify-resgid", check="getresgid must equal the target after setresgid",
         edits=[("csrc/identity.c", "    if (rg != gid || eg != gid || sg != gid)", "    if (0)")],
         kill=["tests/native/test_identity.py::test_switch_refuses_when_a_system_call_lies[setresgid-getresgid]"]),
    dict(id="switch-verify-groups", check="the kernel's supplementary groups must equal the plan's",
         edits=[("csrc/identity.c", "    if ((step = groups_match(groups, n, err)) != GX_OK)",
                 "    if ((step = groups_match(groups, n, err)) != GX_OK && 0)")],
         kill=["tests/native/test_identity.py::test_switch_refuses_when_a_system_call_lies[setgroups-getgroups]"]),
    dict(id="switch-verify-setuid0", check="setuid(0) must fail after the switch",
         edits=[("csrc/identity.c", "        if (setuid(0) == 0 || errno != EPERM)", "        if (0)")],
         kill=["tests/native/test_identity.py::test_switch_refuses_when_a_system_call_lies[setuid0-setuid0]"]),
    dict(id="switch-verify-setgid0", check="setgid(0) must fail after the switch",
         edits=[("csrc/identity.c", "        if (setgid(0) == 0 || errno != EPERM)", "        if (0)")],
         kill=["tests/native/test_identity.py::test_switch_refuses_when_a_system_call_lies[setgid0-setgid0]"]),
    dict(id="switch-verify-capabilities", check="no capability left in permitted/effective/inheritable",
         edits=[("csrc/identity.c", "        FAIL(GX_CAPGET, EPERM);", "        (void)0;")],
         kill=["tests/native/test_identity.py::test_switch_to_root_fails_closed_on_capabilities"]),
    dict(id="switch-verify-capget-noop", check="a capget that fills nothing must not read as 'no capabilities'",
         edits=[("csrc/identity.c", "    memset(d, 0xff, sizeof d);", "    memset(d, 0, sizeof d);")],
         kill=["tests/native/test_identity.py::test_switch_refuses_when_a_system_call_lies[capget-capget]"]),
    dict(id="executor-honours-switch-failure", check="the executor never execs after a failed switch",
         edits=[("csrc/spawn.c", "        if (step != GX_OK)\n            return plan->step = GX_SP_IDENTITY",
                 "        if (0)\n            return plan->step = GX_SP_IDENTITY")],
         kill=["tests/native/test_spawn.py::test_lying_setresuid_stops_before_exec",
               "tests/native/test_spawn.py::test_identity_failure_stops_before_exec",
               P + "test_e2e_switch_faults.py::test_lying_setresuid_never_runs_the_payload"]),

    # --- audit -----------------------------------------------------------------------------------
    dict(id="audit-fail-closed", check="no payload unless the grant record was written",
         edits=[("glexec_py/engine.py", '        call.audit("grant")\n',
                 '        try:\n            call.audit("grant")\n        except GlexecError:\n            pass\n')],
         kill=[P + "test_e2e_refuse.py::test_audit_unwritable_nothing_runs"]),
    dict(id="audit-file-link-count", check="the audit file must have exactly one link",
         edits=[("glexec_py/effects/auditlog.py", "st.st_nlink != 1 or st.st_uid != 0",
                 "st.st_nlink < 1 or st.st_uid != 0")],
         kill=[P + "test_audit_chain.py::test_audit_file_with_a_second_link_is_refused"]),
    dict(id="audit-file-owner", check="the audit file must be owned by root",
         edits=[("glexec_py/effects/auditlog.py", "st.st_nlink != 1 or st.st_uid != 0",
                 "st.st_nlink != 1 or st.st_uid < 0")],
         kill=[P + "test_audit_chain.py::test_audit_file_not_owned_by_root_is_refused"]),
    dict(id="audit-file-mode", check="the audit file must be private (0600; log-only: no 'other' bits)",
         edits=[("glexec_py/effects/auditlog.py", "or st.st_mode & (0o077 if privileged else 0o007):",
                 "or False:")],
         kill=[P + "test_audit_chain.py::test_audit_file_readable_or_writable_by_others_is_refused",
               P + "test_audit_chain.py::test_log_only_audit_file_may_be_group_writable_but_not_other"]),

    # --- target proxy ------------------------------------------------------------------------
    dict(id="target-proxy-dir-owner", check="the target proxy's directory: the target's and not writable by others",
         edits=[("glexec_py/effects/userfiles.py",
                 "            if not S_ISDIR(st.st_mode) or not (owned or sticky_root):",
                 "            if not S_ISDIR(st.st_mode):")],
         kill=[P + "test_e2e_grant.py::test_target_proxy_dir_not_owned_by_target_refused"]),

    # Appended after merging other branches (lead): lease identity compare, CA namespaces,
    # PAM refusal, capability clearing, target-proxy destination checks.
]
