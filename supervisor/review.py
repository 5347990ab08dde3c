"""`fac llm-review`: the built-in judgment check. A model reviews the change against its delta and the
rules of the roles that made it, and answers pass or fail with the review as feedback.

Without an API key it reports "skipped: no API key" and passes, unless the check is `required`
(FAC_CHECK_REQUIRED=1), which makes a skipped review a failure.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from supervisor import config as configmod
from supervisor import identity, repo
from supervisor.factory import find_root
from supervisor.store import Store

DIFF_MAX = 60_000
SYSTEM = (
    "You review changes for a software factory. Judge the diff against the delta (the requested change) "
    "and the rules of the role that wrote it. Fail a change that breaks a rule, misses a MUST of the delta, "
    "weakens tests, or is plainly wrong; pass it otherwise. Answer with one JSON object and nothing else: "
    '{"verdict": "pass" or "fail", "review": "short, precise findings with file and line"}'
)


@dataclass(frozen=True)
class Review:
    ok: bool
    text: str


def gather(workdir: Path, root: Path, main: str) -> dict[str, str]:
    """The diff under review, the deltas it names and the rules of the roles that made it."""
    base = repo.merge_base(workdir, main, "HEAD") or main
    # A diff or log git cannot make is an error, not an empty change that passes unreviewed.
    diff = repo.git(workdir, "diff", *repo.DIFF_OPTIONS, base)
    if len(diff) > DIFF_MAX:
        diff = diff[:DIFF_MAX] + f"\n... (diff cut at {DIFF_MAX} characters)"
    log = repo.git(workdir, "log", f"{base}..HEAD", "--format=%B")
    workers = sorted(set(re.findall(r"^Fac-Worker: (\S+)", log, re.M)))
    deltas = sorted(set(re.findall(r"^Fac-Delta: (\S+)", log, re.M)))
    me = identity.caller().worker
    if not workers and me:
        workers = [me]
    rules = []
    role_names = set()
    try:
        store = Store.open(root)
        for w in workers:
            row = store.worker(w)
            if row:
                role_names.add(row.role)
                if row.delta:
                    deltas.append(row.delta)
    except Exception:  # a review without the store still reviews the diff
        pass
    for role in sorted(role_names or {"worker"}):
        text = repo.show_file(root, main, f"roles/{role}.md")
        if text:
            rules.append(f"## role {role}\n{text}")
    delta_texts = []
    for d in sorted(set(deltas)):
        for path in sorted((root / "specs" / "deltas").glob("*.md")):
            body = path.read_text(encoding="utf-8", errors="replace")
            if d in path.name or re.search(rf"^id\s*=\s*\"?{re.escape(d)}\"?\s*$", body, re.M):
                delta_texts.append(f"## {path.name}\n{body}")
    return {"diff": diff, "rules": "\n\n".join(rules), "deltas": "\n\n".join(delta_texts)}


def api_key() -> str | None:
    return os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN") or None


def review(material: dict[str, str], *, model: str, base_url: str | None) -> Review:
    import anthropic

    key = api_key()
    if os.environ.get("ANTHROPIC_API_KEY"):
        client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=3)
    else:
        client = anthropic.Anthropic(auth_token=key, base_url=base_url, max_retries=3)
    prompt = (
        f"# Delta\n{material['deltas'] or '(no delta: judge against the role rules)'}\n\n"
        f"# Role rules\n{material['rules']}\n\n# Diff\n```diff\n{material['diff']}\n```"
    )
    msg = client.messages.create(
        model=model, max_tokens=1500, system=SYSTEM, messages=[{"role": "user", "content": prompt}]
    )
    text = "".join(getattr(b, "text", "") for b in msg.content)
    m = re.search(r"\{.*\}", text, re.S)
    try:
        data = json.loads(m.group(0)) if m else {}
    except json.JSONDecodeError:
        data = {}
    verdict = str(data.get("verdict", "")).lower()
    if verdict not in ("pass", "fail"):
        return Review(False, f"the reviewer's answer was not a verdict: {text[:500]}")
    return Review(verdict == "pass", str(data.get("review", "")).strip() or verdict)


def main(workdir: Path) -> int:
    """Run as a check: print the review, exit 0 on pass (or an allowed skip), 1 on fail."""
    required = os.environ.get("FAC_CHECK_REQUIRED") == "1"
    if not api_key():
        print(
            "skipped: no API key (set ANTHROPIC_API_KEY)"
            + (" and this check is required" if required else "")
        )
        return 1 if required else 0
    root = find_root(workdir)
    cfg = configmod.load(root)
    agents = cfg.raw.get("agents", {}) if isinstance(cfg.raw.get("agents"), dict) else {}
    model = os.environ.get("ANTHROPIC_MODEL") or agents.get("model") or "claude-sonnet-4-6"
    base_url = os.environ.get("ANTHROPIC_BASE_URL") or agents.get("base_url")
    material = gather(workdir, root, cfg.main)
    if not material["diff"].strip():
        print("nothing to review: the change is empty")
        return 0
    try:
        result = review(material, model=model, base_url=base_url)
    except Exception as e:  # the API is down or refused: say so; block only a required review
        print(f"skipped: the review could not run: {type(e).__name__}: {e}")
        return 1 if required else 0
    print(("PASS: " if result.ok else "FAIL: ") + result.text)
    return 0 if result.ok else 1
