"""Turn a benchmark suite result into target verdicts, a Markdown report and a PNG chart.

Pure functions, no measurement: ``evaluate`` checks the targets, ``markdown`` renders the report
(targets first), ``chart`` draws one figure of four panels. A section missing from the result (the
quick profile skips some) shows as "not measured", and its targets get ``met`` None. Targets against
the issue-18 reference server (``reference``) divide by its ``target_variant``.

    .venv/bin/python bench/report.py RESULT.json   # writes RESULT.md and RESULT.png, prints the markdown
"""

from __future__ import annotations

import json
import operator
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

Row = dict[str, Any]
BACKENDS = ("sqlite", "postgresql")
ALGS = ("ES256", "EdDSA", "RS256")
ENDPOINTS = ("bare", "starlette", "protected", "protected_nofeed", "me", "refresh", "login")
FEED_SETUPS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 3))
FEED_P99_MS = 2000  # docs/design.md: a resource server refuses an ended session's token with p99 under 2 s
CONNS = (1, 16, 64)
NOT_MEASURED = "not measured"
X = "\N{MULTIPLICATION SIGN}"
COLORS = {"none": "tab:gray", "sqlite": "tab:blue", "postgresql": "tab:orange", "reference": "tab:cyan"}
OPS: dict[str, Callable[[float, float], bool]] = {"≥": operator.ge, "≤": operator.le, "=": operator.eq}
KEYS = {"conns": "connections", "req/s": "req_s", "p50 ms": "p50_ms", "p99 ms": "p99_ms", "non-2xx": "non_2xx"}
STORAGE_DETAIL = (
    "{session_bytes_before} → {session_bytes_after} bytes after {refreshes:,} refreshes; audit +{audit_rows_added:,} "
    "rows of {audit_bytes_per_event:.0f} bytes each, bounded by KEYTURN_AUDIT_RETENTION"
)
LABEL_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1}
UNITS = ("/s", " ms", " bytes", " errors")
# issue 18: refresh on each backend ÷ the reference server's refresh at 64 connections, must (stretch goal)
REFERENCE_REFRESH = (("sqlite", 1.0, 2.0), ("postgresql", 0.6, 1.2))


def _http(result: Row, backend: str, endpoint: str, conns: int = 64) -> Row | None:
    want = (backend, endpoint, conns)
    return next((r for r in result.get("http") or [] if (r["backend"], r["endpoint"], r["connections"]) == want), None)


def _reference(result: Row, endpoint: str, conns: int = 64, variant: str | None = None) -> Row | None:
    """A row of the reference server, of ``variant`` (default: the one the targets divide by)."""
    ref = result.get("reference") or {}
    want = (variant or ref.get("target_variant"), endpoint, conns)
    return next((r for r in ref.get("rows") or [] if (r["variant"], r["endpoint"], r["connections"]) == want), None)


def _reference_targets(result: Row) -> list[Row]:
    """keyturn ÷ the reference server at 64 connections (issue 18): refresh on each backend, and
    ``GET /v1/auth/me`` on SQLite against the reference's protected route."""
    ref = result.get("reference") or {}
    variant = ref.get("target_variant")
    others = [v for v in ref.get("variants") or {} if v != variant]
    targets = []
    pairs: list[tuple[str, str, str, float, float | None]]
    pairs = [(b, "refresh", "refresh", limit, stretch) for b, limit, stretch in REFERENCE_REFRESH]
    pairs.append(("sqlite", "me", "protected", 1.0, None))
    for backend, ours, theirs, limit, stretch in pairs:
        mine, base = _http(result, backend, ours), _reference(result, theirs)
        detail = ""
        if mine and base:
            detail = f"{_rate(mine['req_s'])} ÷ {_rate(base['req_s'])} req/s (reference: {variant} variant"
            for v in others:
                if other := _reference(result, theirs, variant=v):
                    detail += f"; ÷ {v} {_rate(other['req_s'])} req/s: {_num(_div(mine['req_s'], other['req_s']))}"
            detail += ")"
        name = f"{ours} {backend} ÷ reference {theirs} @64"
        targets.append(
            _target(name, _div(_get(mine, "req_s"), _get(base, "req_s")), "≥", limit, detail, stretch=stretch)
        )
    return targets


def _get(row: Row | None, key: str) -> float | None:
    return row[key] if row else None


def _ceiling(result: Row, conns: int = 64) -> float | None:
    return _get(_http(result, "none", "bare", conns), "req_s")


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _propagation(result: Row, backend: str, instances: int) -> Row | None:
    rows = (result.get("feed") or {}).get("propagation") or []
    return next((r for r in rows if (r["backend"], r["instances"]) == (backend, instances)), None)


def _feed_throughput(result: Row) -> list[Row]:
    """Verification rates with the revocation feed followed and not: in-process (cached), then
    through the Starlette adapter over HTTP at each connection count (``protected`` ÷ ``protected_nofeed``)."""
    rows: list[Row] = list((result.get("feed") or {}).get("throughput") or [])
    for c in CONNS:
        on, off = _http(result, "none", "protected", c), _http(result, "none", "protected_nofeed", c)
        if on and off:
            path = f"Starlette adapter over HTTP @{c}"
            rows.append({"path": path, "off_per_s": off["req_s"], "on_per_s": on["req_s"],
                         "ratio": _div(on["req_s"], off["req_s"])})  # fmt: skip
    return rows


def _feed_targets(result: Row) -> list[Row]:
    """Propagation p99 per setup, no revocation missed, and what following the feed costs."""
    targets = []
    for backend, instances in FEED_SETUPS:
        r = _propagation(result, backend, instances)
        detail = f"p50 {_num(r['p50_ms'], 1)} ms, p90 {_num(r['p90_ms'], 1)}, max {_num(r['max_ms'], 1)}" if r else ""
        detail += f" over {r['logouts']} logouts" if r else ""
        name = f"revocation → refusal p99, {instances}{X} {backend}"
        targets.append(_target(name, _get(r, "p99_ms"), "≤", FEED_P99_MS, detail, " ms"))
    rows = [r for b, n in FEED_SETUPS if (r := _propagation(result, b, n))]
    missed = float(sum(r["missed"] for r in rows)) if rows else None
    detail = f"{sum(r['logouts'] for r in rows)} logouts, not refused within 10 s: {missed:.0f}" if rows else ""
    targets.append(_target("revocations missed", missed, "=", 0, detail, " errors"))
    r = next(iter((result.get("feed") or {}).get("throughput") or []), None)
    detail = f"on {_rate(r['on_per_s'])}/s, off {_rate(r['off_per_s'])}/s, " if r else ""
    detail += f"{r['ended_sessions']} ended sessions held" if r else ""
    targets.append(_target("verify cached: feed on ÷ off", _get(r, "ratio"), "≥", 0.8, detail))
    on, off = _http(result, "none", "protected"), _http(result, "none", "protected_nofeed")
    detail = f"on {_rate(on['req_s'])} req/s, off {_rate(off['req_s'])} req/s" if on and off else ""
    ratio = _div(_get(on, "req_s"), _get(off, "req_s"))
    return [*targets, _target("protected: feed on ÷ off @64", ratio, "≥", 0.85, detail)]


def _rate(v: float | None) -> str:
    """Rates: thousands separators, one decimal below 100 (none for nothing at all)."""
    return "—" if v is None else f"{v:,.0f}" if abs(v) >= 100 or v == 0 else f"{v:.1f}"


def _num(v: float | None, digits: int = 2) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _fmt(v: float | None, unit: str) -> str:
    """A target's value in its unit: "" is a ratio."""
    if v is None:
        return NOT_MEASURED
    return {"/s": _rate(v) + unit, " ms": _num(v, 1) + unit, "": _num(v)}.get(unit, _num(v, 0) + unit)


def _unit(goal: str) -> str:
    must = goal.split(" (")[0]  # "≥ 1 (goal ≥ 2)": the unit of the must
    return next((u for u in UNITS if must.endswith(u)), "")


def _target(
    name: str, measured: float | None, op: str, limit: float, detail: str, unit: str = "", stretch: float | None = None
) -> Row:
    """A verdict: ``met`` is the must (``limit``); a ``stretch`` goal shows beside it, as
    "≥ 1 (goal ≥ 2)", with its own ``stretch_met``."""
    met = None if measured is None else OPS[op](measured, limit)
    goal = f"{op} {limit:,g}{unit}"
    out: Row = {"target": name, "measured": measured, "goal": goal, "met": met, "detail": detail or NOT_MEASURED}
    if stretch is not None:
        out["goal"] += f" (goal {op} {stretch:,g}{unit})"
        out["stretch_met"] = None if measured is None else OPS[op](measured, stretch)
    return out


def evaluate(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One verdict per target: target, measured, goal, met (None when not measured), detail."""
    inproc, growth, http = result.get("inprocess") or {}, result.get("growth") or [], result.get("http") or []
    bare_hash = (inproc.get("password") or {}).get("bare_hash_per_s")
    storage = {r["backend"]: r for r in result.get("one_session") or []}
    verify = {r["alg"]: r for r in inproc.get("verify") or []}
    groups: list[list[Row]] = []  # one list per alg, then per backend; the report shows them interleaved by kind
    for alg in verify or ALGS:
        r, t = verify.get(alg, {}), []
        detail = f"uncached {_rate(r['uncached_per_s'])}/s, bare {_rate(r['bare_per_s'])}/s" if r else ""
        t.append(_target(f"verify {alg}: uncached ÷ bare", r.get("ratio"), "≥", 0.8, detail))
        detail = f"{_num(_div(r['cached_per_s'], r['bare_per_s']), 0)}{X} bare" if r else ""
        groups.append([*t, _target(f"verify {alg}: cached", r.get("cached_per_s"), "≥", 500_000, detail, "/s")])
    targets = [t for kind in zip(*groups, strict=True) for t in kind]
    ceiling = _ceiling(result)
    prot = _http(result, "none", "protected")
    me = ", ".join(f"{b} {_num(_div(r['req_s'], ceiling))}{X}" for b in BACKENDS if (r := _http(result, b, "me")))
    plain = _div(_get(_http(result, "none", "starlette"), "req_s"), ceiling)
    detail = (
        f"{_rate(prot['req_s'])} ÷ {_rate(ceiling)} req/s; plain Starlette route {_num(plain)}{X}; " if prot else ""
    )
    detail += f"GET /v1/auth/me: {me or NOT_MEASURED}" if prot else ""
    targets.append(_target("protected ÷ ceiling @64", _div(_get(prot, "req_s"), ceiling), "≥", 0.6, detail))
    groups = []
    for b in BACKENDS:
        ref, t = _http(result, b, "refresh"), []
        detail = f"{_rate(ref['req_s'])} ÷ {_rate(ceiling)} req/s" if ref else ""
        t.append(_target(f"refresh {b} ÷ ceiling @64", _div(_get(ref, "req_s"), ceiling), "≥", 0.35, detail))
        detail = f"p50 {_num(ref['p50_ms'], 1)} ms" if ref else ""
        t.append(_target(f"refresh {b} p99 @64", _get(ref, "p99_ms"), "≤", 50, detail, " ms"))
        rows = sorted((r for r in growth if r["backend"] == b), key=lambda r: r["sessions"])
        lo, hi = (rows[0], rows[-1]) if len(rows) > 1 else ({}, {})
        detail = f"{_rate(lo['req_s'])} req/s at {lo['sessions']:,} sessions, " if lo else ""
        detail += f"{_rate(hi['req_s'])} at {hi['sessions']:,}" if hi else ""
        t.append(_target(f"refresh {b} flat over sessions", _div(hi.get("req_s"), lo.get("req_s")), "≥", 0.85, detail))
        s = storage.get(b, {})
        grown = s["session_bytes_after"] - s["session_bytes_before"] if s else None
        detail = STORAGE_DETAIL.format(**s) if s else ""
        t.append(_target(f"session {b}: growth over refreshes", grown, "=", 0, detail, " bytes"))
        login = _http(result, b, "login")
        hashes = f"{_rate(bare_hash)}/s" if bare_hash else NOT_MEASURED
        detail = f"{_rate(login['req_s'])} req/s ÷ bare argon2id {hashes}" if login else ""
        t.append(_target(f"login {b} ÷ bare hash @64", _div(_get(login, "req_s"), bare_hash), "≥", 0.95, detail))
        groups.append(t)
    targets += [t for kind in zip(*groups, strict=True) for t in kind]
    targets += _reference_targets(result)
    targets += _feed_targets(result)
    reference = (result.get("reference") or {}).get("rows") or []
    extra = [*(result.get("limits") or []), *(result.get("workers") or [])]
    rows = [*http, *reference, *(result.get("scale") or {}).get("rows", []), *growth, *extra]
    errors = sum(r.get("non_2xx", 0) + r.get("socket_errors", 0) for r in rows)
    checked = [*http, *reference, *extra]
    unverified = [r for r in checked if r["endpoint"] == "refresh" and r.get("verified") is not True]
    bad = [r for r in checked if r["non_2xx"] + r.get("socket_errors", 0)] + unverified
    detail = f"{errors} non-2xx/socket errors in {len(rows)} rows (http, reference, scale, growth, limits, workers), "
    detail += f"{len(unverified)} unverified"
    detail += "; rows: " + ", ".join(_row_name(r) for r in bad) if bad else ""
    measured = float(errors + len(unverified)) if rows else None
    return [*targets, _target("no errors", measured, "=", 0, detail if rows else "", " errors")]


def _row_name(r: Row) -> str:
    variant = f" {r['variant']}" if "variant" in r else ""
    return f"{r['backend']}{variant} {r['endpoint']} @{r['connections']}"


def _cell(key: str, v: Any) -> str:
    """A table cell, formatted by its key: rates (…_s), milliseconds (…_ms), ratios, counts."""
    if v is None or isinstance(v, str):
        return v or "—"
    if key.endswith("_ms"):
        return _num(v, 1)
    if key.endswith("_s"):
        return _rate(v)
    return _num(v, 2 if key in ("ratio", "x") or key.endswith(("_ratio", "_cores")) else 0)


def _section(heading: str, rows: list[Row] | None, cols: str) -> list[str]:
    """A heading and a table of the rows, or "not measured". cols: "header: key | header | …" (key from KEYS)."""
    if not rows:
        return [heading, "", f"_{NOT_MEASURED}_", ""]
    pairs = [(h, k or KEYS.get(h, h)) for h, _, k in (c.partition(": ") for c in cols.split(" | "))]
    lines = [heading, "", "| " + " | ".join(h for h, _ in pairs) + " |", "|" + "---|" * len(pairs)]
    return [*lines, *("| " + " | ".join(_cell(k, r.get(k)) for _, k in pairs) + " |" for r in rows), ""]


def markdown(result: dict[str, Any]) -> str:
    """The report: header, targets table, then one section per part of the suite."""
    m, inproc, scale = result.get("machine") or {}, result.get("inprocess") or {}, result.get("scale") or {}
    pw, p = inproc.get("password") or {}, (inproc.get("password") or {}).get("params") or {}
    met = {True: "✅", False: "❌", None: "—"}
    targets = [{**t, "measured": _fmt(t["measured"], _unit(t["goal"])), "met": met[t["met"]]} for t in evaluate(result)]
    http = [{**r, "x": _div(r["req_s"], _ceiling(result, r["connections"]))} for r in result.get("http") or []]
    for r in http:
        r["errors"] = r["non_2xx"] + r.get("socket_errors", 0)
    out = [
        f"# keyturn benchmark, {result.get('date', '?')}",
        "",
        f"Profile **{result.get('profile', '?')}**, {_num(result.get('seconds'), 0)} s. "
        f"Machine: {m.get('cpus', '?')} CPUs, {m.get('cpu_model', '?')}, Python {m.get('python', '?')}, "
        f"kernel {m.get('kernel', '?')}.  ",
        f"Stack: {result.get('stack', '?')}.  ",
        "Versions: " + (", ".join(f"{k} {v}" for k, v in (result.get("versions") or {}).items()) or "?"),
        "",
        *_section("## Targets", targets, "target | goal | measured | met | detail"),
        "## In-process",
        "",
        *_section(
            "### Verify",
            inproc.get("verify"),
            "alg | bare/s: bare_per_s | uncached/s: uncached_per_s | ratio | cached/s: cached_per_s",
        ),
        *_section(
            "### Issue", inproc.get("issue"), "alg | bare sign/s: bare_sign_per_s | issue/s: issue_per_s | ratio"
        ),
        f"Password, argon2id t={p.get('time_cost')} m={p.get('memory_cost')} KiB p={p.get('parallelism')}: "
        f"bare hash {_rate(pw['bare_hash_per_s'])}/s, keyturn hash {_rate(pw['hash_per_s'])}/s "
        f"(ratio {_num(pw['ratio'])}), verify {_rate(pw['verify_per_s'])}/s."
        if pw
        else f"Password: _{NOT_MEASURED}_",
        "",
        "## HTTP",
        "",
        f"{X} ceiling = req/s ÷ bare ASGI req/s at the same connection count; non-2xx includes socket errors.",
        "",
    ]
    for b in ("none", *BACKENDS):
        cols = f"endpoint | conns | req/s | {X} ceiling: x | p50 ms | p99 ms | non-2xx: errors"
        out += _section(f"### Backend {b}", [r for r in http if r["backend"] == b], cols)
    out += _reference_section(result)
    out += _feed_sections(result)
    cols = "instances | conns | req/s | p50 ms | p99 ms | non-2xx"
    out += _section("## Scale: refresh on one PostgreSQL, one instance vs two", scale.get("rows"), cols)
    if scale:
        out += [f"Two instances ÷ one at 64 connections: {_num(scale.get('ratio_64'))}.", ""]
    cols = "backend | endpoint | conns | req/s | 429/s: limited_s | answered/s: answered_s | p50 ms | p99 ms | non-2xx"
    out += _section(LIMITS_HEADING, result.get("limits"), cols)
    if result.get("limits"):
        out += [LIMITS_NOTE, ""]
    cols = "backend | workers | req/s | server cores: server_cores | req/s per core: req_s_per_core"
    cols += " | 2 ÷ 1 req/s: req_s_ratio | 2 ÷ 1 per core: req_s_per_core_ratio | p99 ms | non-2xx"
    out += _section(
        "## Refresh with `--workers 2` against one worker, @64, nothing pinned", result.get("workers"), cols
    )
    cols = (
        "backend | sessions | req/s | p99 ms | non-2xx | bytes/session: session_bytes_per_session | db bytes: db_bytes"
    )
    out += _section("## Refresh vs stored sessions", result.get("growth"), cols)
    cols = "backend | refreshes | bytes before: session_bytes_before | bytes after: session_bytes_after"
    cols += " | audit rows added: audit_rows_added | audit bytes/event: audit_bytes_per_event"
    out += _section("## One session's storage", result.get("one_session"), cols)
    return "\n".join(out)


LIMITS_HEADING = "## With the rate limits at their defaults, @64"
LIMITS_NOTE = (
    "The HTTP rows set every limit out of the load's reach; here none is set (bench/limits.py), on SQLite "
    "and PostgreSQL alike. req/s counts 200s, 429/s the answers a limit refused (above all the instance's "
    "ceiling, 2,000 requests a second by default); any other non-2xx is an error. Refresh rotates 16,000 "
    "chains per second of the run over the 64 connections (a 429 drops its chain), so neither the chains run "
    "out nor a session nears its 60 a minute; every chain is checked in the database."
)


def _reference_section(result: Row) -> list[str]:
    """The issue-18 reference server's rows, each next to keyturn's matching route on SQLite."""
    ref = result.get("reference") or {}
    heading = "## Reference server (issue 18: express-seed)"
    if not ref.get("rows"):
        return _section(heading, None, "")
    ours = {"protected": "me", "refresh": "refresh"}
    rows = []
    for r in ref["rows"]:
        mine = _http(result, "sqlite", ours.get(r["endpoint"], ""), r["connections"])
        verified = {True: "yes", False: "no"}.get(r.get("verified"))
        rows.append({**r, "errors": r["non_2xx"] + r.get("socket_errors", 0), "verified": verified,
                     "x": _div(_get(mine, "req_s"), r["req_s"])})  # fmt: skip
    variants = "; ".join(f"`{name}`: {how}" for name, how in (ref.get("variants") or {}).items())
    intro = [
        f"{ref.get('server', '?')}. Variants: {variants}. The targets divide by `{ref.get('target_variant')}`. "
        "Loaded like keyturn (wrk -t1 pinned to the other core, the same connection counts and durations; refresh "
        "with chained rotation, every answer checked, a reused token answering 403); a fresh server per connection "
        "count. keyturn sqlite ÷: `GET /v1/auth/me` ÷ protected, refresh ÷ refresh, at the same connection count.",
        "",
    ]
    cols = "variant | endpoint | conns | req/s | p50 ms | p99 ms | non-2xx: errors | verified | keyturn sqlite ÷: x"
    table = _section(heading, rows, cols)
    return [*table[:2], *intro, *table[2:]]


def _feed_sections(result: Row) -> list[str]:
    """The revocation feed: propagation per setup, and verification rates with the feed on and off."""
    out = [
        "## Revocation feed",
        "",
        "From a logout's answer to the first refusal by a verifier following the feed in the benchmark's "
        "process (checked every 0.5 ms), logouts at random moments; keyturn servers not pinned; "
        "`KEYTURN_REVOCATION_POLL` 200 ms. With three instances the logout is on the first and the "
        "verifier follows the second.",
        "",
    ]
    rows = (result.get("feed") or {}).get("propagation")
    out += _section(
        "### Propagation", rows, "setup | logouts | p50 ms | p90 ms: p90_ms | p99 ms | max ms: max_ms | missed"
    )
    cols = "path | feed off/s: off_per_s | feed on/s: on_per_s | on ÷ off: ratio | ended sessions held: ended_sessions"
    return out + _section("### Verification with the feed on and off", _feed_throughput(result) or None, cols)


def _missing(ax: Axes, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, NOT_MEASURED, ha="center", va="center", fontsize=14, color="gray", transform=ax.transAxes)
    ax.set_axis_off()


def _panel_http(ax: Axes, result: Row) -> None:
    ceiling = _ceiling(result)
    bars = [
        ("bare ceiling", "none", "bare"),
        ("plain Starlette", "none", "starlette"),
        ("protected", "none", "protected"),
        ("protected, no feed", "none", "protected_nofeed"),
    ]
    found = [(label, b, r) for label, b, e in bars if (r := _http(result, b, e))]
    variant = (result.get("reference") or {}).get("target_variant")
    found += [(f"{e} · reference ({variant})", "reference", r) for e in ("protected", "refresh")
              if (r := _reference(result, e))]  # fmt: skip
    bars = [(f"{e} · {b}", b, e) for b in BACKENDS for e in ("me", "refresh", "login")]
    found += [(label, b, r) for label, b, e in bars if (r := _http(result, b, e))]
    if not found:
        return _missing(ax, "HTTP req/s at 64 connections")
    ax.barh(range(len(found)), [r["req_s"] for *_, r in found], color=[COLORS[b] for _, b, _ in found])
    ax.set_yticks(range(len(found)), [label for label, *_ in found])
    ax.invert_yaxis()
    top = max(r["req_s"] for *_, r in found) or 1
    left = min([top / 20, *(r["req_s"] / 2 for *_, r in found if r["req_s"] > 0)])  # a zero rate has no log
    for i, (*_, r) in enumerate(found):
        ratio = _div(r["req_s"], ceiling)
        label = "" if ratio is None else f" ({ratio:.2f}{X})" if ratio >= 0.01 else f" (<0.01{X})"
        ax.text(max(r["req_s"], left) * 1.1, i, _rate(r["req_s"]) + label, va="center", fontsize=8, bbox=LABEL_BOX)
    for k, style, what in ((0.6, "--", "protected"), (0.35, ":", "refresh")):
        if ceiling:
            ax.axvline(k * ceiling, color="red", linestyle=style, linewidth=1, label=f"{what} goal {k}{X} ceiling")
    ax.set(xscale="log", xlabel="requests per second (log scale)", title=f"HTTP req/s at 64 connections ({X} ceiling)")
    ax.set_xlim(left, top * 8)  # room for the labels
    ax.minorticks_off()
    ax.legend(loc="lower right", fontsize=8)


def _panel_verify(ax: Axes, result: Row) -> None:
    title = "In-process verification: uncached ÷ bare signature check"
    if not (rows := (result.get("inprocess") or {}).get("verify")):
        return _missing(ax, title)
    ratios = [r["ratio"] for r in rows]
    ax.bar(range(len(rows)), ratios, width=0.6, color=["tab:green" if q >= 0.8 else "tab:red" for q in ratios])
    ax.axhline(0.8, color="red", linestyle="--", linewidth=1, label="goal 0.8")
    ax.set_xticks(range(len(rows)), [r["alg"] for r in rows])
    for i, r in enumerate(rows):
        text = f"{r['ratio']:.2f}\n{_rate(r['uncached_per_s'])} of {_rate(r['bare_per_s'])}/s"
        text += f"\ncached {_rate(r['cached_per_s'])}/s"
        ax.text(i, r["ratio"] / 2, text, ha="center", va="center", fontsize=8, bbox=LABEL_BOX)
    ax.set(ylim=(0, max(1.1, *ratios) * 1.1), ylabel="uncached ÷ bare", title=title)
    ax.legend(loc="upper right", fontsize=8)


def _panel_growth(ax: Axes, result: Row) -> None:
    title = "Refresh req/s at 64 connections vs stored sessions"
    if not (growth := result.get("growth")):
        return _missing(ax, title)
    for b in BACKENDS:
        if rows := sorted((r for r in growth if r["backend"] == b), key=lambda r: r["sessions"]):
            ax.plot([r["sessions"] for r in rows], [r["req_s"] for r in rows], "o-", color=COLORS[b], label=b)
            label = f"{b} goal: 0.85{X} at {rows[0]['sessions']:,} sessions"
            ax.axhline(0.85 * rows[0]["req_s"], color=COLORS[b], linestyle=":", linewidth=1, label=label)
    ax.set(xscale="log", ylim=(0, None), xlabel="stored sessions (log scale)", ylabel="req/s", title=title)
    ax.legend(fontsize=8, loc="lower left")


def _panel_p99(ax: Axes, result: Row) -> None:
    title = "p99 latency vs connections"
    if not result.get("http"):
        return _missing(ax, title)
    styles = {"none": "o-", "sqlite": "s--", "postgresql": "^:"}
    colors = dict(
        zip(
            ENDPOINTS,
            ("tab:gray", "tab:olive", "tab:purple", "tab:pink", "tab:green", "tab:blue", "tab:brown"),
            strict=True,
        )
    )
    for b in ("none", *BACKENDS):
        for e in ENDPOINTS:
            if pts := [(c, r["p99_ms"]) for c in CONNS if (r := _http(result, b, e, c))]:
                ax.plot(*zip(*pts, strict=True), styles[b], color=colors[e], label=e if b == "none" else f"{e} · {b}")
    ax.axhline(50, color="red", linestyle="--", linewidth=1, label="refresh goal 50 ms")
    ax.set(xscale="log", yscale="log", xlabel="connections (log scale)", ylabel="p99 ms (log scale)", title=title)
    ax.set_xticks(CONNS, [str(c) for c in CONNS])
    ax.minorticks_off()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), title="endpoint · backend", title_fontsize=7)


def chart(result: dict[str, Any], path: Path) -> None:
    """Write one PNG of four panels: HTTP throughput, in-process verification, growth, p99 latency."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), dpi=100)
    for panel, ax in zip((_panel_http, _panel_verify, _panel_growth, _panel_p99), axes.flat, strict=True):
        panel(ax, result)
    fig.suptitle(f"keyturn benchmark {result.get('date', '')}, {result.get('profile', '?')} profile")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``report.py RESULT.json``: write RESULT.md and RESULT.png next to it, print the markdown."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: report.py RESULT.json", file=sys.stderr)
        return 2
    source = Path(args[0])
    result = json.loads(source.read_text())
    text = markdown(result)
    source.with_suffix(".md").write_text(text + "\n")
    chart(result, source.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
