"""testinfra: the pure rules that keep a branch from changing how it is judged (table tests)."""

from __future__ import annotations

import pytest

from supervisor import testinfra
from supervisor.guards import PROTECTED

# --- addopts ---


@pytest.mark.parametrize(
    ("addopts", "found"),
    [
        ("-ra -q", []),
        ("-p evil", ["-p evil"]),
        ("-pevil", ["-p evil"]),
        ("-p no:cacheprovider", ["-p no:cacheprovider"]),
        ("-k 'not slow and not top_words'", ["-k not slow and not top_words"]),
        ("-knot_slow", ["-k not_slow"]),
        ("-o python_functions=check_*", ["-o python_functions=check_*"]),
        ("--override-ini=testpaths=docs", ["--override-ini testpaths=docs"]),
        ("-c other.ini", ["-c other.ini"]),
        ("--rootdir=/ --confcutdir ..", ["--rootdir /", "--confcutdir .."]),
        ("--deselect tests/test_a.py::test_x", ["--deselect tests/test_a.py::test_x"]),
        ("--ignore=tests --noconftest", ["--ignore tests", "--noconftest"]),
        ("-m 'not slow'", ["-m not slow"]),
        ("-x --tb=short -v", []),
        ("-p 'unbalanced", ["-p 'unbalanced"]),  # shlex fails: split on spaces
    ],
)
def test_judging_options_in_addopts(addopts: str, found: list[str]) -> None:
    assert testinfra.judging_options(addopts) == found


# --- pytest configuration in each of its files ---

PYPROJECT = '[project]\nname = "x"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'


@pytest.mark.parametrize(
    ("path", "old", "new", "why"),
    [
        ("a/conftest.py", None, "x = 1\n", "a/conftest.py: conftest.py added"),
        ("conftest.py", "x = 1\n", "x = 2\n", "conftest.py: conftest.py changed"),
        ("t/conftest.py", "x = 1\n", None, "t/conftest.py: conftest.py removed"),
        (".gitattributes", None, "* -diff\n", ".gitattributes: .gitattributes added"),
        (
            "pytest.ini",
            None,
            "[pytest]\ntestpaths = src\n",
            "pytest.ini: pytest configuration changes testpaths",
        ),
        (
            "pytest.ini",
            "[pytest]\n",
            "[pytest]\naddopts = -p evil\n",
            "pytest.ini: pytest configuration changes addopts; addopts adds -p evil loads or blocks a plugin",
        ),
        ("pyproject.toml", PYPROJECT, PYPROJECT.replace('"x"', '"y"'), None),  # not pytest's section
        (
            "pyproject.toml",
            PYPROJECT,
            PYPROJECT.replace('["tests"]', '["src"]'),
            "pyproject.toml: pytest configuration changes ini_options.testpaths",
        ),
        (
            "pyproject.toml",
            PYPROJECT,
            PYPROJECT + 'python_functions = ["check_*"]\n',
            "pyproject.toml: pytest configuration changes ini_options.python_functions",
        ),
        (
            "pyproject.toml",
            PYPROJECT,
            PYPROJECT + "[[broken\n",
            "pyproject.toml: pytest configuration changes (the whole file)",
        ),
        ("setup.cfg", "[metadata]\nname = x\n", "[metadata]\nname = y\n", None),
        (
            "setup.cfg",
            None,
            "[tool:pytest]\naddopts = --deselect t.py::a\n",
            "setup.cfg: pytest configuration changes addopts; "
            "addopts adds --deselect t.py::a deselects tests",
        ),
        (
            "tox.ini",
            "[tox]\nenvlist = py3\n",
            "[tox]\nenvlist = py3\n[pytest]\ntestpaths = docs\n",
            "tox.ini: pytest configuration changes testpaths",
        ),
        ("tox.ini", "[tox]\nenvlist = py3\n", "[tox]\nenvlist = py311\n", None),
        ("src/app.py", None, "import pytest\n", None),
        ("docs/pytest.ini.md", None, "[pytest]\n", None),
    ],
)
def test_infrastructure_change(path: str, old: str | None, new: str | None, why: str | None) -> None:
    got = testinfra.infrastructure_change(path, old, new)
    if why is None:
        assert got is None
    else:
        assert got is not None and got.startswith(why), got


# --- the test framework ---


@pytest.mark.parametrize(
    ("source", "uses"),
    [
        ("import os\n", []),
        ("import pytest\n", [(1, "imports pytest")]),
        ("import os\nfrom _pytest.reports import TestReport\n", [(2, "imports _pytest.reports")]),
        ("import pluggy as p\n", [(1, "imports pluggy")]),
        ("import pytest_cov\n", []),
        ("x = __import__('_pytest.main')\n", [(1, "imports _pytest.main")]),
        ("import importlib\nm = importlib.import_module('pytest')\n", [(2, "imports pytest")]),
        (
            "import sys\nsys.modules['pytest'].exit = None\n",
            [(2, "patches or reads the framework through sys.modules")],
        ),
        (
            "import sys\nm = sys.modules.get('_pytest')\n",
            [(2, "patches or reads the framework through sys.modules")],
        ),
        (
            "import sys\nsys.modules[name] = fake\n",
            [(2, "patches or reads the framework through sys.modules")],
        ),
        ("import sys\nmods = sys.modules\n", [(2, "patches or reads the framework through sys.modules")]),
        ("import sys\nme = sys.modules[__name__]\n", []),
        ("import sys\nj = sys.modules.get('json')\nok = 'yaml' in sys.modules\n", []),
        (
            "def pytest_collection_modifyitems(items):\n    items.clear()\n",
            [(1, "defines the pytest hook pytest_collection_modifyitems")],
        ),
        ("pytest_plugins = ['x']\n", [(1, "sets pytest_plugins")]),
        ('"""Tested with pytest."""\nNAME = "pytest"\n', []),
        ("import pytest\ndef broken(:\n", [(1, "imports pytest")]),  # does not parse: read the lines
    ],
)
def test_framework_uses(source: str, uses: list[tuple[int, str]]) -> None:
    assert [(u.line, u.what) for u in testinfra.framework_uses(source)] == uses


def test_new_framework_uses_spare_test_files_and_uses_main_already_has() -> None:
    assert testinfra.new_framework_uses("pkg/mod.py", None, "import pytest\n") == [
        "pkg/mod.py:1: imports pytest"
    ]
    assert testinfra.new_framework_uses("tests/test_a.py", None, "import _pytest\n") == []
    assert testinfra.new_framework_uses("a_test.py", None, "import pytest\n") == []
    assert testinfra.new_framework_uses("pkg/conftest.py", None, "import pytest\n") == []
    assert testinfra.new_framework_uses("pkg/mod.py", "import pytest\n", "import os\nimport pytest\n") == []
    assert testinfra.new_framework_uses("pkg/data.txt", None, "import pytest\n") == []
    assert testinfra.new_framework_uses("pkg/mod.py", "x = 1\n", None) == []


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("pytest.py", "pytest.py: shadows the test framework module 'pytest'"),
        ("sut/_pytest.py", "sut/_pytest.py: shadows the test framework module '_pytest'"),
        (
            "sut/pluggy/__init__.py",
            "sut/pluggy/__init__.py: inside a package that shadows the test framework",
        ),
        ("sut/sitecustomize.py", "sut/sitecustomize.py: sitecustomize.py runs code when Python starts"),
        ("sut/evil.pth", "sut/evil.pth: a .pth file runs code when Python starts"),
        ("sut/pytest_helpers.py", None),
        ("sut/py.py", None),
        ("sut/tests/test_pytest.py", None),
    ],
)
def test_shadowing(path: str, why: str | None) -> None:
    assert testinfra.shadowing(path) == why


# --- symlinks ---


@pytest.mark.parametrize(
    ("path", "links", "where"),
    [
        ("a/l", {"a/l": "b.txt"}, "a/b.txt"),
        ("a/l", {"a/l": "../b.txt"}, "b.txt"),
        ("a/l", {"a/l": "../../b.txt"}, None),
        ("l", {"l": "/etc/passwd"}, None),
        ("l", {"l": "./x/./y"}, "x/y"),
        # Lexically inside, really outside: sub/d is the root, so sub/d/../z is above it.
        ("x", {"sub/d": "..", "x": "sub/d/../z"}, None),
        ("x", {"x": "d/f", "d": "e"}, "e/f"),
        ("a", {"a": "b", "b": "a"}, None),  # a loop
    ],
)
def test_resolve_follows_links_as_the_kernel_would(
    path: str, links: dict[str, str], where: str | None
) -> None:
    assert testinfra.resolve(path, links) == where


def test_symlink_problems_name_the_link_and_why() -> None:
    links = {
        "s/abs": "/home/me/conftest.py",
        "s/up": "../../outside.py",
        "s/checks": "../checks",
        "s/role": "../roles/worker.md",
        "s/conf": "tests/conftest.py",
        "s/ok": "README.md",
    }
    assert testinfra.symlink_problems(sorted(links), links, PROTECTED) == [
        "s/abs -> /home/me/conftest.py: an absolute target, outside the repository",
        "s/checks -> ../checks: lands in the protected path checks",
        "s/conf -> tests/conftest.py: lands on test infrastructure (s/tests/conftest.py)",
        "s/role -> ../roles/worker.md: lands in the protected path roles/worker.md",
        "s/up -> ../../outside.py: leaves the repository",
    ]
