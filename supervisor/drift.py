"""Drift (`fac state`): what the specs claim, what main actually does, what is wanted, and the gap.

- current: every statement in specs/current with its observed status on main: pass, fail, or
  unverified (no check, or only skipped tests);
- deltas: the open ones; desired = current - removed + the statements of approved, in-progress and
  merged deltas (a statement with the id of a current one replaces it);
- drift: current statements whose linked checks fail on main.

What main does comes from `observations.py` (linked checks run on main, cached per tree, so `fac
state` on an unchanged main runs nothing).
"""

from __future__ import annotations

from typing import Any

from supervisor import checks, deltas, repo, specs
from supervisor.deltas import DeltaView
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.observations import Observation, link_status, observe
from supervisor.specs import Statement
from supervisor.specs.deltafiles import OPEN
from supervisor.text import table


def statement_status(st: Statement, obs: dict[str, Observation]) -> tuple[str, list[dict[str, str]]]:
    if not st.links:
        return "unverified", []
    evidence = []
    for link in st.links:
        status, detail = link_status(link, obs)
        evidence.append({"link": str(link), "status": status, "detail": detail})
    statuses = {e["status"] for e in evidence}
    overall = "fail" if "fail" in statuses else "unverified" if "unverified" in statuses else "pass"
    return overall, evidence


def desired(
    current: list[Statement], open_deltas: list[DeltaView]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Current statements with the wanted deltas applied, in order; and what they remove."""
    rows: dict[str, dict[str, Any]] = {
        st.id: {
            "id": st.id,
            "keyword": st.keyword,
            "text": st.text,
            "links": [str(x) for x in st.links],
            "origin": "current",
            "change": "unchanged",
        }
        for st in current
    }
    removed = []
    for v in open_deltas:
        for rid in v.delta.removes:
            if rows.pop(rid, None) is not None:
                removed.append({"id": rid, "delta": v.id})
        for st in v.delta.statements:
            change = "changed" if st.id in rows else "added"
            rows[st.id] = {
                "id": st.id,
                "keyword": st.keyword,
                "text": st.text,
                "links": [str(x) for x in st.links],
                "origin": v.id,
                "change": change,
            }
    return list(rows.values()), removed


def build(fac: Factory, ref: str | None = None) -> dict[str, Any]:
    """The whole picture for `fac state`, as plain data."""
    ref = ref or fac.main
    sha = repo.rev_parse(fac.root, ref)
    if sha is None:
        raise FacError(f"{ref!r} is not a commit", hint="pass a branch, tag or sha")
    source = specs.GitSource(fac.root, sha, f"{ref}@{sha[:10]}")
    files = specs.load_current(source)
    current = [st for f in files for st in f.statements]
    views = deltas.views(fac, source=source)
    open_views = [v for v in views if v.status in OPEN]
    wanted = [v for v in open_views if v.status in ("approved", "in-progress", "merged")]
    merged = [v for v in open_views if v.status == "merged"]
    links = {link for st in current for link in st.links} | {
        link for v in merged for link in v.delta.checks()
    }
    obs = observe(fac, sha, links)
    rows = []
    for st in current:
        status, evidence = statement_status(st, obs)
        rows.append({**st.as_dict(), "status": status, "evidence": evidence})
    delta_rows = []
    for v in open_views:
        d = v.as_dict()
        if v.status == "merged":
            d["acceptance_status"] = [
                {"link": str(link), "status": s, "detail": detail}
                for link in v.delta.checks()
                for s, detail in [link_status(link, obs)]
            ]
        delta_rows.append(d)
    want, removed = desired(current, wanted)
    suite = checks.suite_from_rev(fac.root, sha, fac.fac_dir / "suites")
    lint = specs.lint(source, suite)
    drift = [r for r in rows if r["status"] == "fail"]
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("pass", "fail", "unverified")}
    return {
        "ref": ref,
        "sha": sha,
        "tree": repo.tree_of(fac.root, sha),
        "counts": counts,
        "current": rows,
        "deltas": delta_rows,
        "desired": want,
        "removed": removed,
        "drift": [
            {
                "id": r["id"],
                "path": r["path"],
                "line": r["line"],
                "text": r["text"],
                "failed": [e for e in r["evidence"] if e["status"] == "fail"],
            }
            for r in drift
        ],
        "lint": [e.as_dict() for e in lint],
        "ran": sorted(o.check for o in obs.values() if not o.cached and o.ok is not None),
        "ok": not drift,
    }


def render(data: dict[str, Any]) -> str:
    c = data["counts"]
    out = [
        f"current state on {data['ref']} {data['sha'][:10]}: {len(data['current'])} statement(s): "
        f"{c['pass']} pass, {c['fail']} fail, {c['unverified']} unverified"
    ]
    if data["current"]:
        out.append(
            table(
                [
                    [r["status"].upper(), r["id"], f"{r['path']}:{r['line']}", _clip(r["text"])]
                    for r in data["current"]
                ],
                ["STATUS", "ID", "WHERE", "STATEMENT"],
            )
        )
    else:
        out.append("  no statements yet: write specs/current/*.md (see specs/README.md)")
    if data["deltas"]:
        out.append(f"open deltas: {len(data['deltas'])}")
        out.append(
            table(
                [
                    [
                        d["id"],
                        d["status"],
                        d["title"],
                        str(len(d["statements"])),
                        ", ".join(d["acceptance"]) or "-",
                    ]
                    for d in data["deltas"]
                ],
                ["DELTA", "STATUS", "TITLE", "STATEMENTS", "ACCEPTANCE"],
            )
        )
        for d in data["deltas"]:
            for a in d.get("acceptance_status", []):
                if a["status"] != "pass":
                    out.append(f"  delta {d['id']} acceptance {a['link']}: {a['status']} ({a['detail']})")
    else:
        out.append("open deltas: none")
    added = sum(1 for r in data["desired"] if r["change"] == "added")
    changed = sum(1 for r in data["desired"] if r["change"] == "changed")
    out.append(
        f"desired state: {len(data['desired'])} statement(s) ({added} added, {changed} changed, "
        f"{len(data['removed'])} removed by approved or running deltas)"
    )
    if data["lint"]:
        out.append(f"spec lint: {len(data['lint'])} problem(s); see `fac spec lint --ref {data['ref']}`")
    if data["drift"]:
        out.append(f"DRIFT: {len(data['drift'])} statement(s) that {data['ref']} contradicts:")
        for d in data["drift"]:
            out.append(f"  {d['path']}:{d['line']} {{#{d['id']}}} {_clip(d['text'])}")
            for e in d["failed"]:
                out.append(f"    {e['link']}: {e['detail']}")
    else:
        out.append("drift: none")
    return "\n".join(out)


def _clip(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."
