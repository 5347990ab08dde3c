"""The system's own development environment: project-container/ on main, built once per hash.

Offline throughout: the package the system needs, `tinydep`, is vendored in project-container/ with a
PEP 517 backend of its own (stdlib only), and pip runs with --no-index.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import git, run_fac, wait_for
from queue_helpers import SUT, commit, entries, events, fac, inbox, run_queue, spawn_worker, submit

from supervisor import env, line, sandbox, workers
from supervisor.factory import Factory

PC = "project-container"

BACKEND = '''"""A PEP 517 backend with nothing but the stdlib: tinydep's wheel, built offline."""
import base64, hashlib, zipfile
from pathlib import Path

DIST = "tinydep-0.1"


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    files = {
        "tinydep/__init__.py": Path("tinydep/__init__.py").read_bytes(),
        f"{DIST}.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: tinydep\\nVersion: 0.1\\n",
        f"{DIST}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
        ),
    }

    def digest(data):
        return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{n},{digest(d)},{len(d)}\\n" for n, d in files.items())
    record += f"{DIST}.dist-info/RECORD,,\\n"
    name = f"{DIST}-py3-none-any.whl"
    with zipfile.ZipFile(Path(wheel_directory) / name, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(f"{DIST}.dist-info/RECORD", record)
    return name
'''

TINYDEP = {
    f"{PC}/tinydep/pyproject.toml": (
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    ),
    f"{PC}/tinydep/backend.py": BACKEND,
    f"{PC}/tinydep/tinydep/__init__.py": "def answer():\n    return 42\n",
    f"{PC}/requirements.txt": "--no-index\n./tinydep\n",
}

# The system's test that needs tinydep, and says which interpreter runs it.
NEEDS_TINYDEP = {
    f"{SUT}/tests/test_tinydep.py": (
        "import sys\n\nimport tinydep\n\n\ndef test_the_answer():\n"
        "    assert '/.fac/envs/' in sys.prefix, sys.prefix  # the system's env, not fac's\n"
        "    assert tinydep.answer() == 42\n"
    )
}


def human_commit(root: Path, changes: dict[str, str], message: str = "human: project-container") -> str:
    """A human's commit on main in the root checkout (project-container/ is theirs)."""
    for rel, text in changes.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if rel.endswith("/setup"):
            path.chmod(0o755)
        git(root, "add", rel)
    git(root, "commit", "-q", "-m", message)
    return git(root, "rev-parse", "HEAD")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")


# --- the decisions, as tables ---


@pytest.mark.parametrize(
    ("wanted", "ready", "failed", "retry", "action"),
    [
        (None, set(), set(), False, "host"),
        ("a", {"a"}, set(), False, "ready"),
        ("a", {"a"}, {"a"}, False, "ready"),
        ("b", {"a"}, set(), False, "build"),
        ("b", {"a"}, {"b"}, False, "failed"),
        ("b", {"a"}, {"b"}, True, "build"),
    ],
)
def test_decide(wanted: str | None, ready: set[str], failed: set[str], retry: bool, action: str) -> None:
    assert env.decide(wanted, ready, failed, retry=retry) == action


@pytest.mark.parametrize(
    ("wanted", "ready", "current", "serves"),
    [
        ("b", {"a", "b"}, "a", "b"),  # main's env is ready: it serves
        ("b", {"a"}, "a", "a"),  # main's is not built yet: the old one serves meanwhile
        ("b", set(), None, None),  # nothing built: fac's own interpreter
        ("b", {"a"}, "gone", None),  # a dangling link serves nothing
        (None, {"a"}, "a", "a"),
    ],
)
def test_serving(wanted: str | None, ready: set[str], current: str | None, serves: str | None) -> None:
    assert env.serving(wanted, ready, current) == serves


@pytest.mark.parametrize(
    ("built", "keep", "pruned"),
    [
        ({"a": 1.0}, {"a"}, []),
        ({"a": 1.0, "b": 2.0}, {"b"}, []),  # the one before stays (a run may still use it)
        ({"a": 1.0, "b": 2.0, "c": 3.0}, {"c"}, ["a"]),
        ({"a": 3.0, "b": 2.0, "c": 1.0}, {"c"}, ["b"]),  # in use wins over newer
        ({"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, {"d"}, ["a", "b"]),
    ],
)
def test_to_prune(built: dict[str, float], keep: set[str], pruned: list[str]) -> None:
    assert env.to_prune(built, keep) == pruned


@pytest.mark.parametrize(
    ("engine", "forced", "containerfile", "kind"),
    [
        ("docker", "", True, "image"),
        ("podman", "container", True, "image"),
        ("docker", "bwrap", True, "venv"),
        ("docker", "none", True, "venv"),
        ("docker", "", False, "venv"),
        (None, "", True, "venv"),
    ],
)
def test_kind_for(engine: str | None, forced: str, containerfile: bool, kind: str) -> None:
    assert env.kind_for(engine, forced, containerfile) == kind


@pytest.mark.parametrize(
    ("text", "wants"),
    [
        ("", False),
        ("# only comments\n\n  # more\n", False),
        ("pytest>=8\n", True),
        ("./tinydep  # local\n", True),
    ],
)
def test_wants_pip(text: str, wants: bool) -> None:
    assert env.wants_pip(text) is wants


# --- the environment, built for real ---


def test_fac_init_writes_requirements_and_an_executable_setup(factory: Path) -> None:
    req = (factory / PC / "requirements.txt").read_text()
    assert req.startswith("#") and not env.wants_pip(req)
    setup = factory / PC / "setup"
    assert os.access(setup, os.X_OK) and setup.read_text().startswith("#!/bin/sh\n#")
    assert git(factory, "ls-files", "-s", f"{PC}/setup").startswith("100755")


def test_the_sample_env_builds_offline_with_fac_s_pytest_and_a_check_runs_in_it(factory: Path) -> None:
    proc = run_fac("env", "build", cwd=factory)
    assert proc.returncode == 0, proc.stderr
    assert "seeded from fac: pytest" in proc.stdout + proc.stderr
    shown = json.loads(run_fac("env", "--json", cwd=factory).stdout)
    assert shown["kind"] == "venv" and shown["hash"] == git(factory, "rev-parse", f"main:{PC}")[:12]
    assert shown["built_by"] and shown["built_at"] and not shown["stale"]
    python = Path(shown["bin"]) / "python"
    # The env's own interpreter, not fac's: its prefix is the env.
    prefix = subprocess.run(
        [python, "-c", "import sys, pytest; print(sys.prefix)"], capture_output=True, text=True
    )
    assert prefix.stdout.strip() == shown["path"]
    check = run_fac("check", cwd=factory)
    assert check.returncode == 0, check.stdout
    assert f"environment: venv {shown['path']}" in check.stdout


def _imports_pytest_from_bytecode(python: Path) -> bool:
    """Whether the env's python, run the way checks run it (no bytecode written), imports pytest's
    modules from cached bytecode rather than compiling them from source."""
    code = "import os, _pytest.config as c; print(bool(c.__cached__) and os.path.exists(c.__cached__))"
    run_env = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
    out = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env={**run_env, "PYTHONDONTWRITEBYTECODE": "1"}
    )
    return out.stdout.strip() == "True"


def test_the_env_is_compiled_at_build_and_an_older_env_once_on_first_use(factory: Path) -> None:
    # Checks never write bytecode, so an env without it would compile pytest in every check.
    fac_ = Factory(factory)
    e = env.ensure(fac_)
    assert e.kind == "venv" and e.path is not None
    python = e.path / "bin" / "python"
    assert _imports_pytest_from_bytecode(python)
    meta_path = next(e.path.glob("*.json"))
    assert json.loads(meta_path.read_text())["bytecode"] is True

    # An env built by an older fac: no bytecode, no mark. The next ensure compiles it, once.
    for cache in e.path.resolve().rglob("__pycache__"):
        for f in cache.iterdir():
            f.unlink()
    meta = json.loads(meta_path.read_text())
    del meta["bytecode"]
    meta_path.write_text(json.dumps(meta))
    assert not _imports_pytest_from_bytecode(python)
    again = env.ensure(fac_)
    assert again.path == e.path and _imports_pytest_from_bytecode(python)
    assert json.loads(meta_path.read_text())["bytecode"] is True


def test_a_package_fac_lacks_is_red_without_requirements_and_green_through_them(factory: Path) -> None:
    w1 = spawn_worker(factory, "w1")
    commit(w1, NEEDS_TINYDEP, "w1: a test that needs tinydep")
    submit("w1")
    run_queue(factory)
    assert entries(factory)["w1"].state == "red"  # main's environment lacks tinydep: a real red
    assert "tinydep" in json.dumps(inbox("w1"))

    # The human gives the system its dependency; the worker resubmits the same head.
    human_commit(factory, TINYDEP)
    git(w1, "merge", "-q", "--no-edit", "main")
    submit("w1")
    mq = run_queue(factory)
    assert entries(factory)["w1"].state == "merged", inbox("w1")[-1]
    assert mq.stats["check_runs"] == 1
    e = env.current(Factory(factory))
    assert e.kind == "venv" and e.hash == git(factory, "rev-parse", f"main:{PC}")[:12]
    proc = run_fac("check", "--stage", "gate", cwd=factory)
    assert proc.returncode == 0, proc.stdout


def test_python_in_a_check_is_the_env_s_and_the_env_is_read_only_in_the_sandbox(factory: Path) -> None:
    if sandbox.detect(factory).kind != "bwrap":
        pytest.skip("bubblewrap does not run here")
    human_commit(factory, TINYDEP)
    e = env.ensure(Factory(factory))
    assert e.path is not None
    poison = e.path / "lib" / "poison.py"
    # A hostile check: tries to plant code in the shared env for every later candidate.
    probe = factory / "checks" / "env-probe"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(
        "#!/bin/sh\npython -c 'import sys, tinydep; print(\"prefix\", sys.prefix)'\n"
        f"echo x > {poison} && echo planted\nexit 0\n"
    )
    probe.chmod(0o755)
    git(factory, "add", "checks/env-probe")
    git(factory, "commit", "-qm", "a check that probes its environment")
    report = json.loads(run_fac("check", "--json", cwd=factory).stdout)
    result = next(r for r in report["results"] if r["name"] == "env-probe")
    assert f"prefix {e.path}" in result["tail"]
    assert "planted" not in result["tail"] and not poison.exists()


def test_a_change_to_the_env_rebuilds_once_and_the_old_one_serves_meanwhile(factory: Path) -> None:
    fac_ = Factory(factory)
    first = env.ensure(fac_)
    assert first.kind == "venv" and first.path is not None
    # The new env's setup waits for the test: while it builds, the old env must still serve.
    gate_file = factory / ".fac" / "release-setup"
    setup = f'#!/bin/sh\nwhile [ ! -e {gate_file} ]; do sleep 0.05; done\necho ran >> "$FAC_ENV/setup-ran"\n'
    human_commit(factory, {f"{PC}/setup": setup})
    wanted = env.wanted_hash(fac_)
    assert wanted != first.hash
    said: list[str] = []
    builder = threading.Thread(target=lambda: env.ensure(fac_, say=said.append))
    builder.start()
    try:
        wait_for(
            lambda: any("project-container/setup" in m for m in said), timeout=30, message="the setup step"
        )
        serving = env.current(fac_)
        assert serving.hash == first.hash and serving.stale and serving.wanted == wanted
        pane = workers.pane_env(fac_, "w9", "worker", "fac/w9", factory / "ctx", None)
        assert pane["PATH"].split(os.pathsep)[0] == str(factory / ".fac" / "envs" / "current" / "bin")
        assert (factory / ".fac" / "envs" / "current" / "bin" / "python").exists()
    finally:
        gate_file.touch()
        builder.join(timeout=60)
    new = env.current(fac_)
    assert new.hash == wanted and not new.stale and new.path is not None
    assert (new.path / "setup-ran").read_text() == "ran\n"
    # Once: asking again (the queue does before every round) builds nothing.
    said.clear()
    assert env.ensure(fac_, say=said.append).hash == wanted and said == []
    assert (new.path / "setup-ran").read_text() == "ran\n"
    assert first.path.is_dir()  # the one before stays for a run that may still use it
    # A third change prunes the oldest.
    human_commit(factory, {f"{PC}/requirements.txt": "# nothing\n"})
    third = env.ensure(fac_)
    assert third.hash not in (first.hash, wanted)
    assert not first.path.exists() and new.path.is_dir()


def test_a_failing_env_build_stops_the_line_for_the_human_and_blames_no_agent(factory: Path) -> None:
    human_commit(factory, {f"{PC}/requirements.txt": "--no-index\nno-such-package-fac-test\n"})
    w1 = spawn_worker(factory, "w1")
    commit(w1, {f"{SUT}/tests/test_fine.py": "def test_fine():\n    assert True\n"}, "w1: fine")
    submit("w1")
    run_queue(factory)

    assert entries(factory)["w1"].state == "queued"  # waits: not red, not blamed
    assert not [m for m in inbox("w1") if "RED" in m.get("body", "")]
    state = line.get(Factory(factory))
    assert state.stopped and line.stopped_for_env(state)
    assert (
        "no-such-package-fac-test"
        in (factory / ".fac" / "envs").joinpath(f"{env.wanted_hash(Factory(factory))}.log").read_text()
    )
    assert "log:" in (state.reason or "")
    assert events(factory, "env-failed")
    # The human sees it where they look.
    shown = run_fac("env", cwd=factory)
    assert "FAILED" in shown.stdout and "no-such-package" not in shown.stdout.split("FAILED")[0]
    assert "STOPPED" in run_fac("line", cwd=factory).stdout
    # It is not rebuilt on its own: a second pass builds nothing and stays stopped.
    log = factory / ".fac" / "envs" / f"{env.wanted_hash(Factory(factory))}.log"
    before = log.stat().st_mtime_ns
    run_queue(factory)
    assert log.stat().st_mtime_ns == before and entries(factory)["w1"].state == "queued"
    # `fac env build` retries, and exits 1 with the log when it still fails.
    again = run_fac("env", "build", cwd=factory)
    assert again.returncode == 1 and "log:" in again.stderr

    # The human fixes project-container/ on main: the env builds, the line restarts, w1 merges.
    human_commit(factory, {f"{PC}/requirements.txt": "# nothing\n"})
    git(w1, "merge", "-q", "--no-edit", "main")
    submit("w1")
    run_queue(factory)
    assert not line.get(Factory(factory)).stopped
    assert entries(factory)["w1"].state == "merged"
    assert not list((factory / ".fac" / "envs").glob("*.failed"))  # the old failure is forgotten
    assert env.failure(Factory(factory)) is None and "FAILED" not in run_fac("env", cwd=factory).stdout


def test_the_supervisor_tells_the_human_not_the_agents_when_the_env_does_not_build(factory: Path) -> None:
    from supervisor.daemon import Supervisor

    human_commit(factory, {f"{PC}/requirements.txt": "--no-index\nno-such-package-fac-test\n"})
    spawn_worker(factory, "w1")
    fac_ = Factory(factory)
    assert line.ensure_env(fac_) is None
    said: list[str] = []
    Supervisor(fac_, say=said.append).check_line()
    assert any("LINE STOPPED: environment build failed" in s for s in said)
    assert inbox("w1") == []  # no notice to the agents, no fixer spawned
    assert {w.name for w in fac_.store.workers()} == {"w1"}


def test_the_container_path_builds_the_image_by_hash_and_runs_a_check_offline(factory: Path) -> None:
    engine = sandbox.engine()
    if engine is None:
        pytest.skip("no container engine answers here (podman or docker): the venv path is the one that runs")
    fac_ = Factory(factory)
    e = env.ensure(fac_)
    assert e.kind == "image" and e.image == f"fac-env-{env.wanted_hash(fac_)}"
    check = run_fac("check", "--json", cwd=factory)
    report = json.loads(check.stdout)
    assert report["ok"] and report["sandbox"].startswith("container"), check.stdout
    assert fac("env").exit_code == 0


def test_a_timed_out_check_stops_its_container_too(factory: Path) -> None:
    from supervisor import checks
    from supervisor.config import CheckDef

    engine = sandbox.engine()
    if engine is None:
        pytest.skip("no container engine answers here (podman or docker): the venv path is the one that runs")
    fac_ = Factory(factory)
    sb = env.sandbox_for(fac_, env.ensure(fac_))
    check = CheckDef(name="slow", run=("sleep", "600"), timeout=2)
    r = checks.run_one(check, factory, "gate", factory / ".fac" / "logs" / "slow", sb)
    assert r.timed_out
    left = subprocess.run([engine, "ps", "-q", "--filter", "name=fac-check-"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_env_shell_runs_in_the_env_and_an_unbuilt_env_is_an_error(factory: Path) -> None:
    missing = run_fac("env", "shell", "-c", "true", cwd=factory)
    assert missing.returncode == 2 and "not built yet" in missing.stderr and "fac env build" in missing.stderr
    assert run_fac("env", "build", cwd=factory).returncode == 0
    e = env.current(Factory(factory))
    proc = run_fac("env", "shell", "-c", "python -c 'import sys; print(sys.prefix)'", cwd=factory)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(e.path)
    assert f"sandbox: {sandbox.detect(factory).kind}" in proc.stderr


def test_an_agent_s_check_never_builds_the_env_it_uses_the_one_that_serves(factory: Path) -> None:
    spawn_worker(factory, "w1")
    before = run_fac("check", env={"FAC_WORKER": "w1"}, cwd=factory)
    assert before.returncode == 0, before.stdout
    assert "environment: host: fac's own interpreter" in before.stdout and "not built yet" in before.stdout
    assert not (factory / ".fac" / "envs" / env.CURRENT).exists()
    built = env.ensure(Factory(factory))
    after = run_fac("check", env={"FAC_WORKER": "w1"}, cwd=factory)
    assert f"environment: venv {built.path}" in after.stdout
