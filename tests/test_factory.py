"""`fac init` and finding the factory root."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_usage_error, fac_json, fac_ok, git, run_fac

from supervisor import factory as factorymod
from supervisor.errors import FacError

DEFAULT_ROLES = ("worker", "reviewer", "fixer", "planner")
LAYOUT_FILES = (
    "factory.toml",
    *(f"roles/{r}.md" for r in DEFAULT_ROLES),
    "specs/README.md",
    "specs/current/.gitkeep",
    "specs/deltas/.gitkeep",
    "checks/README.md",
    "system-under-construction/README.md",
    "project-container/Containerfile",
    "project-container/devcontainer.json",
    ".gitignore",
)


def tracked_files(root: Path) -> set[str]:
    return set(git(root, "ls-files").splitlines())


def test_init_creates_the_layout_and_a_first_commit_on_main(tmp_path: Path) -> None:
    target = tmp_path / "myfactory"
    report = fac_json("init", str(target), cwd=tmp_path)

    for rel in LAYOUT_FILES:
        assert (target / rel).is_file(), rel
    for d in (
        "roles",
        "specs/current",
        "specs/deltas",
        "checks",
        "system-under-construction",
        "project-container",
    ):
        assert (target / d).is_dir(), d
    assert ".fac/" in (target / ".gitignore").read_text().splitlines()

    assert git(target, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(target, "rev-list", "--count", "HEAD") == "1"
    assert git(target, "status", "--porcelain") == ""
    assert set(LAYOUT_FILES) <= tracked_files(target)

    assert report["root"] == str(target)
    assert report["new_repo"] is True
    assert report["commit"] == git(target, "rev-parse", "HEAD")
    assert set(LAYOUT_FILES) <= set(report["created"])
    assert report["kept"] == []


def test_init_reports_what_it_created_and_the_commit(tmp_path: Path) -> None:
    out = fac_ok("init", "f", cwd=tmp_path).stdout
    assert "new git repository" in out
    assert "created  factory.toml" in out
    assert "created  roles/worker.md" in out
    assert f"committed {git(tmp_path / 'f', 'rev-parse', 'HEAD')[:10]} on main" in out


def test_init_without_sample_writes_a_placeholder_system_readme(tmp_path: Path) -> None:
    report = factorymod.init(tmp_path / "f")
    readme = tmp_path / "f" / "system-under-construction" / "README.md"
    assert "Describe the system here" in readme.read_text()
    assert not (tmp_path / "f" / "system-under-construction" / "tests").exists()
    assert "[checks." not in (tmp_path / "f" / "factory.toml").read_text()
    assert report.committed


def test_init_with_sample_copies_the_sample_system_and_its_check(tmp_path: Path) -> None:
    factorymod.init(tmp_path / "f", sample=True)
    sut = tmp_path / "f" / "system-under-construction"
    assert (sut / "pyproject.toml").is_file()
    assert list((sut / "tests").glob("test_*.py"))
    assert not list(sut.rglob("__pycache__")) and not list(sut.rglob(".pytest_cache"))
    assert "[checks.tests]" in (tmp_path / "f" / "factory.toml").read_text()


def test_second_init_creates_nothing_and_commits_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f"
    fac_ok("init", str(target), "--sample", cwd=tmp_path)
    head = git(target, "rev-parse", "HEAD")

    report = fac_json("init", str(target), "--sample", cwd=tmp_path)

    assert report["created"] == []
    assert report["new_repo"] is False
    assert report["commit"] is None
    assert set(LAYOUT_FILES) <= set(report["kept"])
    assert git(target, "rev-parse", "HEAD") == head
    assert git(target, "status", "--porcelain") == ""
    assert (target / ".gitignore").read_text().count(".fac/") == 1


def test_init_never_overwrites_an_edited_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    factorymod.init(target)
    head = git(target, "rev-parse", "HEAD")
    (target / "roles" / "worker.md").write_text("+++\nname = 'worker'\n+++\nmy own prompt\n")
    (target / "factory.toml").write_text('[factory]\nname = "mine"\n')
    (target / "roles" / "planner.md").unlink()

    report = factorymod.init(target)

    assert (target / "roles" / "worker.md").read_text() == "+++\nname = 'worker'\n+++\nmy own prompt\n"
    assert (target / "factory.toml").read_text() == '[factory]\nname = "mine"\n'
    assert report.created == ["roles/planner.md"]
    assert "roles/worker.md" in report.kept and "factory.toml" in report.kept
    assert report.committed is None
    assert git(target, "rev-parse", "HEAD") == head


def test_init_in_an_existing_repository_adds_only_missing_files_and_does_not_commit(tmp_path: Path) -> None:
    target = tmp_path / "existing"
    target.mkdir()
    git(target, "init", "-q", "-b", "trunk")
    (target / "README.md").write_text("my project\n")
    (target / ".gitignore").write_text("node_modules/")  # no final newline
    (target / "roles").mkdir()
    (target / "roles" / "worker.md").write_text("+++\n+++\nmy worker\n")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "mine")
    head = git(target, "rev-parse", "HEAD")

    report = fac_json("init", str(target), cwd=tmp_path)

    assert report["new_repo"] is False
    assert report["commit"] is None
    assert git(target, "rev-parse", "HEAD") == head
    assert (target / "README.md").read_text() == "my project\n"
    assert (target / "roles" / "worker.md").read_text() == "+++\n+++\nmy worker\n"
    assert "roles/worker.md" in report["kept"]
    assert "roles/worker.md" not in report["created"]
    assert "factory.toml" in report["created"] and "roles/reviewer.md" in report["created"]
    assert (target / ".gitignore").read_text().splitlines()[0] == "node_modules/"
    assert ".fac/" in (target / ".gitignore").read_text().splitlines()
    # the configured main branch follows the repository's current branch
    assert 'main = "trunk"' in (target / "factory.toml").read_text()
    # nothing committed: the new files wait for the human to review them
    assert "?? factory.toml" in git(target, "status", "--porcelain")


def test_init_in_an_existing_repository_says_it_did_not_commit(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "x.txt").write_text("x\n")
    git(tmp_path, "add", "x.txt")
    git(tmp_path, "commit", "-q", "-m", "x")
    out = fac_ok("init", ".", cwd=tmp_path).stdout
    assert "not committed" in out
    assert "committed " not in out.replace("not committed", "")


def test_init_works_with_no_git_identity_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    assert git(tmp_path, "config", "user.email", check=False) == ""

    proc = run_fac("init", "f", cwd=tmp_path)

    assert proc.returncode == 0, proc.stderr
    root = tmp_path / "f"
    assert git(root, "log", "-1", "--format=%an <%ae>") == "fac <fac@localhost>"
    assert git(root, "config", "user.email", check=False) == ""  # fac did not write the user's config


def test_init_inside_another_repository_is_refused(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    proc = run_fac("init", "sub/f", cwd=tmp_path)
    assert_usage_error(proc, "inside the git repository", "hint:")
    assert not (tmp_path / "sub" / "f" / "factory.toml").exists()


def test_init_on_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    proc = run_fac("init", "f", cwd=tmp_path)
    assert proc.returncode == 2
    assert "is a file" in proc.stderr and "Traceback" not in proc.stderr


def test_root_is_found_from_a_subdirectory(factory: Path) -> None:
    sub = factory / "system-under-construction" / "textstats"
    assert factorymod.find_root(sub) == factory


def test_root_seen_from_a_worker_worktree_is_the_factory_root(factory: Path) -> None:
    inside = factory / ".fac" / "worktrees" / "w1" / "system-under-construction"
    inside.mkdir(parents=True)
    (factory / ".fac" / "worktrees" / "w1" / "factory.toml").write_text("")
    assert factorymod.find_root(inside) == factory


def test_fac_root_in_the_environment_wins(
    factory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAC_ROOT", str(factory))
    assert factorymod.find_root(tmp_path) == factory
    monkeypatch.setenv("FAC_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FacError, match="not a factory"):
        factorymod.find_root(factory)


def test_the_runtime_dir_is_ignored_by_git_even_without_a_gitignore_entry(factory: Path) -> None:
    (factory / ".gitignore").write_text("")
    git(factory, "commit", "-q", "-am", "drop .gitignore entry")
    fac = factorymod.Factory(factory)
    fac.store.event("test")
    assert (factory / ".fac" / "state.db").is_file()
    assert git(factory, "status", "--porcelain") == ""


def test_init_in_a_non_empty_directory_commits_only_what_it_wrote(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    (target / "data").mkdir(parents=True)
    (target / "notes.txt").write_text("my own notes\n")
    (target / "data" / "private.csv").write_text("a,b\n")

    out = fac_ok("init", str(target), cwd=tmp_path).stdout

    committed = tracked_files(target)
    assert set(LAYOUT_FILES) <= committed
    assert "notes.txt" not in committed and "data/private.csv" not in committed
    assert (target / "notes.txt").read_text() == "my own notes\n"  # untouched, still there
    assert "not committed (your own files, yours to commit): data/, notes.txt" in out
    report = fac_json("init", str(tmp_path / "fresh"), cwd=tmp_path)
    assert report["not_committed"] == []
