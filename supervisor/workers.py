"""Workers: spawn (all or nothing), kill, and the live view of each one for `fac status`."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor import env as sysenv
from supervisor import isolation, repo, roles, worktrees
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.identity import SOCKET_ENV, SOCKET_NAME
from supervisor.model import check_task_size, runtime_spec
from supervisor.runtimes import Launch, Runtime, confined
from supervisor.runtimes import config_dir as runtime_config_dir
from supervisor.runtimes import get as get_runtime
from supervisor.runtimes import prepare as prepare_runtime

if TYPE_CHECKING:
    from supervisor.tmux import PaneInfo

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
RESERVED = {"supervisor", "merge-queue", "main", "factory"}
FAULT_ENV = "FAC_FAULT_INJECT"  # names a spawn step to fail at: exercises rollback in tests


def validate_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise FacError(
            f"invalid worker name {name!r}",
            hint="use 1-40 letters, digits, '-' or '_', starting with a letter or digit",
        )
    if name in RESERVED:
        raise FacError(f"{name!r} is reserved for fac's own windows", hint="pick another worker name")


def generate_name(fac: Factory, role: str) -> str:
    taken = {w.name for w in fac.store.workers()}
    n = 1
    while f"{role}-{n}" in taken or worktrees.branch_exists(fac.root, worktrees.branch_for(f"{role}-{n}")):
        n += 1
    return f"{role}-{n}"


def fac_bin_dir() -> str:
    """The directory holding this fac's `fac` script and Python, put first on panes' PATH."""
    return str(Path(sys.executable).parent)


def pane_path(fac: Factory) -> str:
    """A pane's PATH: the system's environment first (through `.fac/envs/current`: a rebuilt env
    reaches a running pane), then fac's own directory for `fac` itself, then fac's own PATH."""
    return os.pathsep.join([str(sysenv.pane_path(fac)), fac_bin_dir(), os.environ.get("PATH", "")])


def missing_program(fac: Factory, command: str, base_ref: str, worktree: Path) -> str | None:
    """Why `command` cannot start in a pane on a worktree of `base_ref` (its program is not on the
    pane's PATH, or its file or its interpreter's script is not there), or None when it can."""
    from supervisor.runtimes.command import needs

    need = needs(command)
    for word, kind in ((need.program, "program"), (need.script, "script")):
        if word is None:
            continue
        if kind == "program" and "/" not in word:
            if shutil.which(word, path=pane_path(fac)) is None:
                return f"command not found: {word}"
            continue
        path = Path(word).expanduser()
        rel = os.path.normpath(word)
        if not path.is_absolute() and not rel.startswith(".."):
            # in the worktree, which does not exist yet: as `base_ref` has it
            found = [m for m, _sha, p in repo.ls_tree(fac.root, base_ref, rel) if p == rel]
            if not found:
                return (
                    f"{kind} not found: {word} (not committed in {base_ref}, which the worktree starts from)"
                )
            if kind == "program" and found[0] != "100755":
                return f"not executable: {word} (committed without its executable bit)"
            continue
        path = path if path.is_absolute() else worktree / word
        if not path.is_file():
            return f"{kind} not found: {word}"
        if kind == "program" and not os.access(path, os.X_OK):
            return f"not executable: {word}"
    return None


def socket_path(fac: Factory, name: str) -> Path:
    """The worker's channel: the supervisor serves it, `fac` in the pane talks through it."""
    return fac.run_dir(name) / SOCKET_NAME


def pane_env(
    fac: Factory, name: str, role: str, branch: str, context: Path, task: str | None
) -> dict[str, str]:
    env = {
        "FAC_ROOT": str(fac.root),
        "FAC_WORKER": name,
        "FAC_ROLE": role,
        "FAC_BRANCH": branch,
        "FAC_CONTEXT": str(context),
        SOCKET_ENV: str(socket_path(fac, name)),
        "PATH": pane_path(fac),
    }
    if task:
        env["FAC_TASK"] = task
    sock = os.environ.get("FAC_TMUX_SOCKET")
    if sock:
        env["FAC_TMUX_SOCKET"] = sock
    # Agents' commits carry the worker's name unless the environment already sets an identity.
    for var, value in (
        ("GIT_AUTHOR_NAME", f"{name} (fac)"),
        ("GIT_COMMITTER_NAME", f"{name} (fac)"),
        ("GIT_AUTHOR_EMAIL", f"{name}@fac.invalid"),
        ("GIT_COMMITTER_EMAIL", f"{name}@fac.invalid"),
    ):
        env[var] = os.environ.get(var, value)
    return env


def write_context(
    fac: Factory, path: Path, role: roles.Role, task: str | None, worktree: Path, delta: str | None = None
) -> None:
    """The agent's context ($FAC_CONTEXT) within [context] max_chars; `fac context NAME` prints the same."""
    from supervisor import context

    ctx = context.build(fac, worker=path.parent.name, role=role, task=task, delta=delta, worktree=worktree)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ctx.text, encoding="utf-8")


def spawn(
    fac: Factory,
    role_name: str,
    *,
    name: str | None = None,
    task: str | None = None,
    runtime: str | None = None,
    command: str | None = None,
    base: str | None = None,
    delta: str | None = None,
) -> dict[str, Any]:
    """Create branch + worktree + window for a new worker, or nothing at all."""
    from supervisor.tmux import require_tmux

    if task:
        check_task_size(task)  # before anything is created: tmux would refuse it only at the window
    repo.require_git()
    require_tmux()
    role = roles.get(fac.root, role_name)
    if command is not None:
        runtime = "command"
    runtime = runtime or role.runtime
    rt = get_runtime(runtime)
    if name is None:
        name = generate_name(fac, role.name)
    validate_name(name)
    if delta:
        from supervisor import deltas

        delta = deltas.assignable(fac, delta)  # approved (or under way); its canonical id
    if role.max_instances:
        live = [w for w in fac.store.workers() if w.role == role.name and w.state != "stopped"]
        if len(live) >= role.max_instances:
            raise FacError(
                f"role {role.name} allows {role.max_instances} instance(s) and {len(live)} exist",
                hint="kill one (fac kill NAME) or raise max_instances in the role file",
            )
    branch = worktrees.branch_for(name)
    worktree = fac.worktree_path(name)
    context = fac.run_dir(name) / "context.md"
    launch = Launch(name, role.name, worktree, context, task, command, role.prompt, root=fac.root)
    rt.check_available(launch)
    base_ref = base or fac.main
    if runtime == "command" and command:
        # Before anything is created: a program that cannot start would only crash, restart, crash.
        why = missing_program(fac, command, base_ref, worktree)
        if why:
            raise FacError(
                f"cannot start {name}: {why}",
                hint="fix the --cmd (it runs in the worker's worktree, a checkout of "
                f"{base_ref}: commit a script there first, or give its absolute path)",
            )

    undo: list[Callable[[], object]] = []
    store = fac.store
    existing = store.worker(name)
    if existing is not None:
        raise FacError(
            f"worker {name!r} already exists (state {existing.state})",
            hint=f"pick another name, or remove it first with `fac kill {name} --rm`",
        )
    try:
        try:
            with store.tx() as db:
                store.add_worker(
                    db,
                    name=name,
                    role=role.name,
                    runtime=runtime,
                    branch=branch,
                    worktree=str(worktree),
                    state="starting",
                    task=task,
                    delta=delta,
                    command=command,
                )
        except Exception as e:  # sqlite3.IntegrityError: a concurrent spawn took the name
            raise FacError(f"worker {name!r} already exists", hint="pick another name") from e
        undo.append(lambda: _delete_row(fac, name))
        _fault("row")

        if worktree.exists():
            raise FacError(f"{worktree} already exists", hint=f"remove it, or `fac kill {name} --rm`")
        worktrees.add(fac.root, worktree, branch, base_ref, main=fac.main)
        undo.append(lambda: worktrees.remove(fac.root, worktree, branch))
        _fault("worktree")

        write_context(fac, context, role, task, worktree, delta=delta)
        undo.append(lambda: shutil.rmtree(fac.run_dir(name), ignore_errors=True))
        _fault("context")

        notes = prepare_runtime(rt, launch)
        argv, env = pane_command(fac, rt, launch, pane_env(fac, name, role.name, branch, context, task))
        log = str(fac.run_dir(name) / "pane.log")  # the pane's output, kept after its window is gone
        window_id, pane_id = fac.new_window(name, str(worktree), argv, env, log=log)
        undo.append(lambda: fac.tmux.kill_window(window_id))
        _fault("window")

        with store.tx() as db:
            store.update_worker(name, db=db, window_id=window_id, pane_id=pane_id, state="working")
            if delta:
                deltas.start(fac, delta, name, db)
            store.event(
                "spawned",
                name,
                correlation=delta,
                db=db,
                role=role.name,
                runtime=runtime,
                branch=branch,
                base=base_ref,
                window=window_id,
                pane=pane_id,
                task=task,
            )
    except BaseException as e:
        for step in reversed(undo):
            try:
                step()
            except Exception:  # rollback is best effort; keep undoing the rest
                pass
        try:
            store.event("spawn-failed", name, error=str(e))
        except Exception:
            pass
        raise
    return {
        "name": name,
        "role": role.name,
        "runtime": runtime,
        "branch": branch,
        "worktree": str(worktree),
        "window": window_id,
        "pane": pane_id,
        "session": fac.session,
        "config_dir": str(d) if (d := runtime_config_dir(rt, launch)) else None,
        "notes": notes,
    }


def launch_for(fac: Factory, w: Any) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that (re)start a stored worker's agent, exactly as spawn did."""
    try:
        role = roles.get(fac.root, w.role)
        prompt = role.prompt
    except FacError:
        prompt = ""
    context = fac.run_dir(w.name) / "context.md"
    launch = Launch(
        w.name,
        w.role,
        Path(w.worktree),
        context,
        w.task,
        w.command,
        prompt,
        session_id=w.session_id,
        root=fac.root,
    )
    rt = get_runtime(w.runtime)
    return pane_command(fac, rt, launch, pane_env(fac, w.name, w.role, w.branch, context, w.task))


def pane_command(
    fac: Factory, rt: Runtime, launch: Launch, env: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The runtime's argv inside the worker's sandbox (`isolation.wrap`), and the pane's environment."""
    launch = confined(rt, launch)
    argv, extra = isolation.wrap(
        fac,
        launch.worker,
        rt.argv(launch),
        launch.worktree,
        writable=launch.writable,
        readable=launch.readable,
        runtime=rt.name,
    )
    return argv, {**env, **extra}


def restart(fac: Factory, name: str, *, reason: str) -> dict[str, Any] | None:
    """Start a stored worker's agent again in its own worktree, window and branch; None when `fac kill`
    stopped or removed it first (before the restart claimed it, or while its window was being made)."""
    with fac.store.tx() as db:
        claimed = fac.store.update_worker(name, db=db, state="starting", by="liveness")
    if claimed != "starting":
        return None
    w = fac.worker(name)
    if not Path(w.worktree).is_dir():
        raise FacError(
            f"{name}'s worktree {w.worktree} is gone", hint=f"remove the worker: fac kill {name} --rm"
        )
    main = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    if main:
        worktrees.publish_main([Path(w.worktree)], fac.main, main)
    argv, env = launch_for(fac, w)
    panes = {p.window_name: p for p in fac.panes()}
    p = panes.get(name)
    if p is not None:
        fac.tmux.respawn(p.pane_id, w.worktree, argv, env)
        window_id, pane_id = p.window_id, p.pane_id
    else:
        window_id, pane_id = fac.new_window(name, w.worktree, argv, env)
    with fac.store.tx() as db:
        now = fac.store.update_worker(
            name, db=db, window_id=window_id, pane_id=pane_id, restarts=w.restarts + 1, next_restart=None
        )
        # An agent that reports its own start (a hook) stays `starting` until it says it works again;
        # one that cannot is working as soon as its process runs.
        if now is not None and not runtime_spec(w.runtime).reports_start:
            now = fac.store.update_worker(name, db=db, state="working", by="liveness")
        if now not in (None, "stopped"):
            fac.store.event(
                "restarted", name, db=db, reason=reason, restarts=w.restarts + 1, window=window_id
            )
    if now in (None, "stopped"):  # `fac kill` came while the window was made: it must not outlive the worker
        fac.tmux.kill_window(window_id)
        return None
    return {"name": name, "window": window_id, "pane": pane_id, "restarts": w.restarts + 1}


def _delete_row(fac: Factory, name: str) -> None:
    with fac.store.tx() as db:
        fac.store.delete_worker(name, db)


def _fault(step: str) -> None:
    if os.environ.get(FAULT_ENV) == step:
        raise FacError(f"injected failure at spawn step {step!r} ({FAULT_ENV})")


@dataclass(frozen=True)
class WorkerView:
    name: str
    role: str
    runtime: str
    branch: str
    state: str
    process: str  # running, exited N, no window
    window: str | None
    pane: str | None
    worktree: str
    task: str | None
    head: str | None
    updated_at: float
    restarts: int = 0
    question: str | None = None
    delta: str | None = None
    tokens: int = 0
    todo: str | None = None  # waiting-for-human: what its pane shows, and what a human should do

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def views(fac: Factory, panes: dict[str, PaneInfo] | None = None) -> list[WorkerView]:
    """Stored workers joined with what tmux and git say right now (`panes`: tmux's, already asked)."""
    workers = fac.store.workers()
    heads = repo.branch_heads(fac.root, "refs/heads/fac/") if workers else {}
    if workers and panes is None:
        try:
            panes = {p.window_name: p for p in fac.panes()}
        except FacError:
            panes = {}
    panes = panes or {}
    out = []
    for w in workers:
        p = panes.get(w.name)
        if p is None:
            process = "no window"
        elif p.dead and p.dead_signal:
            process = f"killed by signal {p.dead_signal}"
        elif p.dead:
            process = f"exited {p.dead_status}" if p.settled else "exiting"
        else:
            process = "running"
        out.append(
            WorkerView(
                name=w.name,
                role=w.role,
                runtime=w.runtime,
                branch=w.branch,
                state=w.state,
                process=process,
                window=p.window_id if p else None,
                pane=p.pane_id if p else None,
                worktree=w.worktree,
                task=w.task,
                head=worktrees.shown_head(fac.root, Path(w.worktree), w.branch)
                if worktrees.is_agent_repo(Path(w.worktree))
                else heads.get(w.branch),
                updated_at=w.updated_at,
                restarts=w.restarts,
                question=w.question,
                delta=w.delta,
                tokens=w.tokens_in + w.tokens_out,
                todo=_todo(fac, w.name) if w.state == "waiting-for-human" else None,
            )
        )
    return out


def _todo(fac: Factory, name: str) -> str:
    """What the runtime's last notification asked of a human (hooks.notification_state said it)."""
    for e in reversed(fac.store.events(worker=name, limit=20)):
        if e.kind == "hook:notification" and e.payload.get("todo"):
            return str(e.payload["todo"])
    return f"its pane waits for a human: fac attach {name}"


def kill(fac: Factory, name: str, *, rm: bool = False, force: bool = False) -> dict[str, Any]:
    """Stop a worker's window; with `rm` also remove its worktree, branch and row."""
    w = fac.worker(name)
    worktree = Path(w.worktree)
    if rm and not force and worktrees.is_dirty(worktree):
        raise FacError(
            f"{name}'s worktree has uncommitted changes: {worktree}",
            hint=f"commit them, or pass --force to discard them (`fac kill {name} --rm --force`)",
        )
    # Stopped first, then the window: a supervisor pass that sees the window gone must find the
    # worker stopped, or it would call it a crash and start the agent again (model: "liveness").
    if w.state != "stopped":
        with fac.store.tx() as db:
            fac.store.update_worker(name, db=db, state="stopped")
            fac.store.event("stopped", name, db=db)
    killed = _kill_window(fac, w.name, w.window_id)
    result: dict[str, Any] = {"name": name, "window_killed": killed, "removed": False}
    if rm:
        sha = worktrees.remove(fac.root, worktree, w.branch)
        shutil.rmtree(fac.run_dir(name), ignore_errors=True)
        with fac.store.tx() as db:
            fac.store.delete_worker(name, db)
            fac.store.cancel_queued(name, db)
            fac.store.event("removed", name, db=db, branch=w.branch, last_sha=sha)
        result.update(removed=True, branch=w.branch, last_sha=sha)
    return result


def _kill_window(fac: Factory, name: str, window_id: str | None) -> bool:
    try:
        panes = fac.panes()
    except FacError:
        return False
    for p in panes:
        if p.window_name == name or (window_id and p.window_id == window_id):
            fac.tmux.kill_window(p.window_id)
            return True
    return False


@contextmanager
def waiting_for_check(fac: Factory, name: str | None) -> Iterator[None]:
    """While `fac check` runs on a worker's tree the worker shows waiting-for-check; afterwards it
    gets its state back, unless something else (a hook, the queue) changed it in the meantime."""
    w = fac.store.worker(name) if name else None
    if w is not None:
        fac.store.update_worker(w.name, state="waiting-for-check", by="check")
    try:
        yield
    finally:
        if w is not None:
            fac.store.update_worker(w.name, state=w.state, by="check-done")  # unless set meanwhile
