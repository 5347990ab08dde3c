"""Andon: an agent (or fac on its behalf) pulls the cord and a human answers.

`fac ask` marks the worker needs-human and shows the question in `fac status` and the dashboard;
`fac answer` delivers the answer as a message and puts the worker back to work. fac pulls the cord
itself on a crash loop and after too many red verdicts in a row.
"""

from __future__ import annotations

from supervisor import messages
from supervisor.errors import FacError
from supervisor.factory import Factory


def ask(fac: Factory, worker: str, question: str, *, by: str = "agent") -> None:
    if not question.strip():
        raise FacError("the question is empty", hint='fac ask "what should I decide?"')
    fac.worker(worker)
    with fac.store.tx() as db:
        fac.store.update_worker(worker, db=db, state="needs-human", question=question)
        fac.store.event("andon", worker, db=db, question=question, by=by)


def answer(fac: Factory, worker: str, text: str) -> messages.Delivery:
    w = fac.worker(worker)
    if not w.question:
        raise FacError(f"{worker} has no open question", hint=f'to just talk to it: fac send {worker} "..."')
    body = f"[fac] ANSWER to your question ({w.question.strip()[:200]}):\n{text}"
    with fac.store.tx() as db:
        fac.store.update_worker(worker, db=db, state="working", question=None, red_streak=0, crashes="[]")
        fac.store.event("answered", worker, db=db, question=w.question, answer=text)
        mid = messages.store(fac, db, worker, body, sender="human", kind="answer")
    return messages.deliver(fac, worker, mid)


def questions(fac: Factory) -> list[tuple[str, str]]:
    return [(w.name, w.question) for w in fac.store.workers() if w.question]
