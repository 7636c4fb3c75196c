"""pyproject.toml's [project] agrees with requirements.txt and names the four commands."""

import pytest
from conftest import REPO


def requirement_lines() -> set[str]:
    lines = (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return {line.split("#")[0].strip() for line in lines} - {""}


def test_project_table_matches_requirements():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["requires-python"] == ">=3.10"
    extras = project["optional-dependencies"]
    declared = set(project["dependencies"]) | set(extras["dev"]) | set(extras["ray"])
    assert declared == requirement_lines()
    scripts = project["scripts"]
    assert sorted(scripts) == ["gender-dataset", "gender-map", "gender-predict", "gender-train"]
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert module.startswith("gender.cli.") and function == "main"
        assert REPO.joinpath(*module.split(".")).with_suffix(".py").is_file()
