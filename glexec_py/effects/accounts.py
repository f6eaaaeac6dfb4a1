"""Account facts from the name service (passwd/group)."""
import grp
import os
import pwd

from glexec_py.errors import SystemFault


class Account:
    __slots__ = ("name", "uid", "gid", "group", "groups", "group_names", "home")

    def __init__(self, name, uid, gid, group, groups, group_names, home):
        self.name, self.uid, self.gid, self.group = name, uid, gid, group
        self.groups, self.group_names, self.home = groups, group_names, home


def _group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def caller_names(facts):
    """Runs as: any user (name service lookups). (user name, primary group name,
    names of all the caller's groups) for the caller's real ids."""
    try:
        user = pwd.getpwuid(facts.ruid).pw_name
    except KeyError:
        user = str(facts.ruid)
    primary = _group_name(facts.rgid)
    names = [primary] + [_group_name(g) for g in facts.groups if g != facts.rgid]
    return user, primary, tuple(names)


def lookup_target(name, mapping_cfg):
    """Runs as: any user (name service lookups).

    The mapped account, refused (SystemFault, a site configuration fault) when it does not
    exist, is root, has a uid outside [min_uid, max_uid], or has a forbidden primary or
    supplementary group."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise SystemFault("target_unsafe", "glexec: mapped account does not exist", account=name) from None
    from glexec_py.core.mapping import account_refusal
    gids = sorted(set(os.getgrouplist(name, pw.pw_gid)))
    names = tuple(_group_name(g) for g in gids)
    refusal = account_refusal(name, pw.pw_uid, pw.pw_gid, gids, names, mapping_cfg)
    if refusal is not None:
        raise SystemFault("target_unsafe", refusal[0], **refusal[1])
    return Account(name, pw.pw_uid, pw.pw_gid, _group_name(pw.pw_gid), tuple(gids), names, pw.pw_dir)


def lookup_voms_group(name, mapping_cfg):
    """Runs as: any user (name service lookups).

    The gid of a group name from the groupmapfile (bytes), for LCMAPS voms_localgroup:
    a group that does not exist fails the mapping (SystemFault ``group_missing``, a site
    configuration fault, as the plugin fails); a group with gid 0 or in
    ``forbidden_groups`` (by the name given or by the gid's own name) is refused with the
    same rule as an account's groups (SystemFault ``target_unsafe``)."""
    from glexec_py.core.mapping import voms_group_name_problem, voms_group_privileged
    raw = bytes(name)
    problem = voms_group_name_problem(raw)
    if problem:
        raise SystemFault("groupmap_invalid", problem, group=raw)
    text = raw.decode("ascii")
    try:
        gid = grp.getgrnam(text).gr_gid
    except KeyError:
        raise SystemFault("group_missing", "glexec: a VOMS group of the groupmapfile does not exist",
                          group=text) from None
    if voms_group_privileged(text, gid, _group_name(gid), mapping_cfg):
        raise SystemFault("target_unsafe", "glexec: a VOMS group of the groupmapfile is privileged",
                          group=text, gid=gid)
    return gid


def voms_group_names(gids):
    """The names LCMAPS voms_poolaccount writes into a lease (``getgrgid`` of each gid)."""
    return tuple(_group_name(g) for g in gids)


def with_voms_groups(account, primary_gid, secondary_gids):
    """``account`` with its primary gid and supplementary groups replaced by the VOMS
    groups (LCMAPS voms_poolaccount's default ``--use-voms-gid``: nothing from the
    account).  ``groups`` = the primary gid then the secondary gids, duplicates removed."""
    gids = []
    for g in (primary_gid, *secondary_gids):
        if g not in gids:
            gids.append(g)
    names = tuple(_group_name(g) for g in gids)
    return Account(account.name, account.uid, primary_gid, names[0], tuple(gids), names, account.home)
