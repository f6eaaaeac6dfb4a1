"""``glexec-backmap --timeline``: an answer drawn as a self-contained SVG.  Pure.

One row per (host, account): a bar per holding, coloured by the holder's DN, hatched when
it is uncertain (its start or end not recorded, a stepped clock, a broken chain), and the
regions the records cannot vouch for (gaps, damage, chain breaks) shaded red over the rows
of their host.  Every bar and region carries its facts as ``data-*`` attributes and a
``<title>`` (a tooltip in a browser), so the picture can also be checked by a program.
No scripts, fonts, styles or images from elsewhere.
"""
from glexec_tools.backmap.plan import FOREVER, NEVER, format_time

WIDTH, LEFT, RIGHT, TOP, ROW, BAR = 1100, 230, 20, 70, 30, 18
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31")


def _text(value):
    """Printable (``cli.escape``: no controls, bidi overrides or separators) and XML-safe."""
    from glexec_tools.backmap.cli import escape
    return (escape(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _period(answer, period):
    if period is not None and period[0] != period[1]:
        return period
    times = [t for m in answer.matches for t in (m.lo, m.hi) if NEVER < t < FOREVER]
    times += [t for t in (period or ())]
    lo, hi = answer.coverage
    if not times:
        times = [t for t in (lo, hi) if t is not None] or [0]
    t1, t2 = min(times), max(times)
    if t1 == t2:
        t1, t2 = t1 - 3_600_000_000, t2 + 3_600_000_000
    pad = (t2 - t1) // 20
    return t1 - pad, t2 + pad


def render_svg(answer, period=None):
    """The answer (``plan.Answer``) over ``period`` ((t1, t2) µs, or None: the span of what
    matched) as SVG text."""
    t1, t2 = _period(answer, period)
    span = max(t2 - t1, 1)
    plot = WIDTH - LEFT - RIGHT

    def x(t):
        return LEFT + plot * (min(max(t, t1), t2) - t1) / span

    rows = sorted({(m.host or "", m.account or f"uid {m.uid}") for m in answer.matches})
    row_of = {r: i for i, r in enumerate(rows)}
    dns = sorted({m.identity.dn for m in answer.matches if m.identity is not None})
    colour = {dn: PALETTE[i % len(PALETTE)] for i, dn in enumerate(dns)}
    height = TOP + ROW * max(len(rows), 1) + 60 + 18 * len(dns)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
           '<defs><pattern id="uncertain" width="8" height="8" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="8" height="8" fill="#ffffff"/>'
           '<rect width="4" height="8" fill="#999999"/></pattern></defs>',
           f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>']
    q = " ".join(f"{k}={v}" for k, v in answer.question.items() if v is not None)
    out.append(f'<text x="10" y="20" font-size="14" font-weight="bold">{_text(answer.status.upper())}: '
               f'{_text(q)}</text>')
    out.append(f'<text x="10" y="38">{_text(answer.why)}</text>')
    bottom = TOP + ROW * max(len(rows), 1)
    for i in range(7):                                            # the time axis
        t = t1 + span * i // 6
        out.append(f'<line x1="{x(t):.1f}" y1="{TOP - 8}" x2="{x(t):.1f}" y2="{bottom}" '
                   f'stroke="#dddddd"/><text x="{x(t):.1f}" y="{TOP - 12}" text-anchor="middle" '
                   f'font-size="10">{format_time(t)[:19]}Z</text>')
    for (host, account), i in row_of.items():
        out.append(f'<text x="{LEFT - 6}" y="{TOP + ROW * i + ROW / 2 + 4:.1f}" text-anchor="end">'
                   f'{_text(account)} @ {_text(host)}</text>')
    for f in answer.flags:                                        # unreliable regions
        ys = [i for (h, _a), i in row_of.items() if f.host is None or h == f.host] or [0]
        y0, y1 = TOP + ROW * min(ys), TOP + ROW * (max(ys) + 1)
        out.append(f'<rect class="flag" data-kind="{_text(f.kind)}" data-host="{_text(f.host)}" '
                   f'data-from="{format_time(f.lo)}" data-to="{format_time(f.hi)}" '
                   f'x="{x(f.lo):.1f}" y="{y0}" width="{max(x(f.hi) - x(f.lo), 2):.1f}" '
                   f'height="{y1 - y0}" fill="#d62728" fill-opacity="0.25">'
                   f'<title>{_text(f.kind)}: {_text(f.why)}</title></rect>')
    for m in answer.matches:                                      # holdings
        i = row_of[(m.host or "", m.account or f"uid {m.uid}")]
        dn = m.identity.dn if m.identity is not None else None
        fill = colour.get(dn, "#7f7f7f")
        y = TOP + ROW * i + (ROW - BAR) / 2
        x0, x1 = x(m.lo), x(m.hi)
        out.append(f'<rect class="occupation" data-host="{_text(m.host)}" '
                   f'data-account="{_text(m.account)}" data-uid="{m.uid}" data-dn="{_text(dn)}" '
                   f'data-start="{format_time(m.start) or "unknown"}" '
                   f'data-end="{format_time(m.end) or "unknown"}" '
                   f'data-certain="{str(m.certain).lower()}" x="{x0:.1f}" y="{y:.1f}" '
                   f'width="{max(x1 - x0, 2):.1f}" height="{BAR}" fill="{fill}" '
                   f'stroke="{fill}" stroke-width="1.5"'
                   + ('' if m.certain else ' fill-opacity="0.45" stroke-dasharray="4 2"')
                   + f'><title>{_text(dn)} on {_text(m.account)} @ {_text(m.host)}: '
                   f'{format_time(m.start) or "start unknown"} .. {format_time(m.end) or "end unknown"}'
                   f'{"" if m.certain else " (uncertain: " + _text(m.why()) + ")"}</title></rect>')
        if not m.certain:
            out.append(f'<rect x="{x0:.1f}" y="{y + BAR - 4:.1f}" width="{max(x1 - x0, 2):.1f}" '
                       f'height="4" fill="url(#uncertain)"/>')
    for k, dn in enumerate(dns):                                  # legend
        y = bottom + 30 + 18 * k
        out.append(f'<rect x="{LEFT}" y="{y - 10}" width="12" height="12" fill="{colour[dn]}"/>'
                   f'<text class="holder" x="{LEFT + 18}" y="{y}">{_text(dn)}</text>')
    out.append(f'<text x="10" y="{bottom + 30}" font-size="10">hatched, dashed: uncertain; '
               f'red: records unreliable</text>')
    out.append("</svg>\n")
    return "\n".join(out)
