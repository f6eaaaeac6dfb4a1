"""One identity model for every credential kind: what bans, mapping, leases and audit use.

    kind         "x509" (a proxy chain, with VOMS FQANs if any) or "jwt" (a token)
    issuer       the end-entity certificate's CA (OpenSSL oneline DN) / the token's ``iss``
    subject      the end-entity certificate's DN (oneline, as LCMAPS prints it) / ``sub``
    groups       ordered, first = primary: verified FQANs (canonical full form) / wlcg.groups
    roles        the FQANs' roles (``Role=`` other than NULL), in order; () for tokens
    not_before, not_after   when the credential as presented is valid (unix seconds)
    fingerprint  SHA-256 of the end-entity certificate / of the token
    canonical    x509 only: the canonical DN (core.dn.canonical) parsed from the verified
                 end-entity certificate's subject DER -- injective, case kept; None for tokens
    key          the identity key: ("x509", canonical) / ("jwt", issuer, subject) — a token's
                 ``sub`` is never used without its issuer; never a text rendering such as
                 the oneline DN (two certificates can print alike), so bans, lease owners
                 (core.leases.LeaseOwner) and audit records agree on who is who
    mapping_name what a gridmapfile line is matched against: the DN as bytes, with every
                 non-ASCII byte as ``\\xHH`` like OpenSSL's oneline form / b"iss,sub"

The subject and issuer always come from verified data: the end-entity certificate found by
walking the verified chain (never the leaf's string) or the signed token claims.
"""


class Identity:
    __slots__ = ("kind", "issuer", "subject", "groups", "roles", "not_before", "not_after",
                 "fingerprint", "detail", "canonical")

    def __init__(self, kind, issuer, subject, groups, roles, not_before, not_after, fingerprint, detail,
                 canonical=None):
        self.kind, self.issuer, self.subject, self.canonical = kind, issuer, subject, canonical
        self.groups, self.roles = tuple(groups), tuple(roles)
        self.not_before, self.not_after = not_before, not_after
        self.fingerprint, self.detail = fingerprint, detail

    @property
    def key(self):
        return ("jwt", self.issuer, self.subject) if self.kind == "jwt" else ("x509", self.canonical)

    @property
    def mapping_name(self):
        if self.kind == "jwt":
            return f"{self.issuer},{self.subject}".encode("utf-8", "surrogateescape")
        return oneline_bytes(self.subject)

    def to_audit(self):
        return {"kind": self.kind, "issuer": self.issuer, "subject": self.subject, "groups": list(self.groups),
                "roles": list(self.roles), "not_before": self.not_before, "not_after": self.not_after,
                "fingerprint": self.fingerprint, "key": list(self.key)}


def oneline_bytes(subject):
    """The DN as LCMAPS compares it: OpenSSL's oneline form, where every byte >= 0x80
    of the UTF-8 value is written as \\xHH (upper-case hex)."""
    raw = subject.encode("utf-8", "surrogateescape")
    if raw.isascii():
        return raw
    return b"".join(b"\\x%02X" % b if b >= 0x80 else bytes((b,)) for b in raw)


def roles_of(fqans):
    """The roles named in canonical FQANs (``/vo/g/Role=r/Capability=c``), NULL left out."""
    roles = []
    for fqan in fqans:
        for part in fqan.split("/"):
            if part.startswith("Role=") and part != "Role=NULL" and part[5:] not in roles:
                roles.append(part[5:])
    return roles


def from_proxy(chain_identity, chain, fqans):
    """The model for a verified proxy chain (proxychain.Identity + the verified chain's
    certificates, leaf first) and its verified VOMS FQANs.  Raises ``dn.DNError`` if the
    end-entity certificate's subject cannot be parsed into a canonical DN."""
    from glexec_py.core import dn
    certs = chain[:chain_identity.depth + 1]
    canonical = dn.canonical(dn.parse_der_name(certs[-1].subject_der))
    return Identity("x509", chain_identity.issuer, chain_identity.subject, fqans, roles_of(fqans),
                    max(c.not_before for c in certs), min(c.not_after for c in certs),
                    chain_identity.eec_sha256,
                    {"proxy_fingerprint": chain_identity.leaf_sha256, "proxy_kinds": list(chain_identity.kinds)},
                    canonical)


def from_token(token):
    """The model for a verified token (tokens.TokenIdentity)."""
    return Identity("jwt", token.issuer, token.subject, token.groups, (), token.not_before, token.expires,
                    token.fingerprint, token.to_audit())
