"""The README stays a short front door whose every command works.

- at most 250 lines, and no history ("previous bundle", issue numbers, ...): that is CHANGELOG.md's;
- every command line in its fenced code blocks that runs one of the toolkit's commands (the
  checkout's `python gender_train.py ...` or the installed `gender-train ...`) is accepted by that
  command's own argument parser (parsing only: nothing is trained, read or written);
- every relative link to a page under docs/ (or another file) points to a file that exists.
"""

import argparse
import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 250
# Words that belong to the changelog: they speak of what the project was, not of what it is.
HISTORY = [
    r"previous bundle",
    r"bundle before",
    r"not kept",
    r"\bissues? \d+",
    r"at the last stop",
    r"\bthis stop\b",
    r"before issue",
    r"the seeds' order",
    r"\bseed 00\d",
]
SCRIPTS = {  # checkout script -> installed command (pyproject.toml's [project.scripts])
    "gender_train.py": "gender-train",
    "gender_single_predict.py": "gender-predict",
    "gender_mAP.py": "gender-map",
    "dataset.py": "gender-dataset",
}
SHELL_ONLY = ("$(", "`", "<(")  # the line needs a shell to mean anything: not checked


class Parsed(BaseException):
    """Raised once a command's parser accepted its arguments, before the command runs."""


def fenced_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def command_lines(text: str) -> list[str]:
    """The lines of the fenced blocks, continuation lines (trailing backslash) joined."""
    lines = []
    for block in fenced_blocks(text):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            lines.append(pending + line)
            pending = ""
        if pending:
            lines.append(pending)
    return lines


def split_commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line (split at && || ; |), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    commands.append(current)
    return [c for c in commands if c]


def toolkit_invocation(words: list[str]) -> tuple[str, list[str]] | None:
    """(script name, its arguments) when `words` runs a toolkit command, else None."""
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value prefixes
        words = words[1:]
    if not words:
        return None
    installed = {command: script for script, command in SCRIPTS.items()}
    if words[0] in installed:
        return installed[words[0]], words[1:]
    if re.fullmatch(r"python[0-9.]*", Path(words[0]).name) and len(words) > 1:
        script = words[1]
        if Path(script).name in SCRIPTS and not Path(script).parent.name:
            return Path(script).name, words[2:]
    return None


def readme_commands() -> list[tuple[str, str, list[str]]]:
    """(README line, script, arguments) for every toolkit command in the README's code blocks."""
    found = []
    for line in command_lines(README.read_text(encoding="utf-8")):
        text = line.strip()
        if not text or text.startswith("#") or any(mark in text for mark in SHELL_ONLY):
            continue
        try:
            commands = split_commands(text)
        except ValueError:  # unbalanced quotes: output, not a command
            continue
        for words in commands:
            invocation = toolkit_invocation(words)
            if invocation:
                found.append((text, *invocation))
    return found


def entry_points() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: installed command -> 'module:function'."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[project\.scripts\]\n(.*?)(?=^\[|\Z)", text, flags=re.S | re.M)
    assert section, "pyproject.toml has no [project.scripts]"
    return dict(re.findall(r'^\s*([\w-]+)\s*=\s*"([^"]+)"', section.group(1), flags=re.M))


def script_main(script: str):
    """The main(argv) that `python SCRIPT` runs: the checkout file's own, else its entry point."""
    path = ROOT / script
    assert path.is_file(), f"{script} is missing from the checkout"
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location(f"_readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if callable(getattr(module, "main", None)):
        return module.main
    return installed_main(SCRIPTS[script])


def installed_main(command: str):
    module_name, _, function = entry_points()[command].partition(":")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return getattr(importlib.import_module(module_name), function)


def parse_only(main, argv: list[str], monkeypatch, capsys) -> None:
    """Run main(argv) until its argument parser has accepted argv; fail with argparse's message."""
    depth = [0]
    parse_args = argparse.ArgumentParser.parse_args
    parse_known_args = argparse.ArgumentParser.parse_known_args

    def stop_after(original):
        def wrapper(self, args=None, namespace=None):
            depth[0] += 1
            try:
                result = original(self, args, namespace)
            finally:
                depth[0] -= 1
            if depth[0] == 0:  # the outermost parse, not a subcommand's own
                raise Parsed()
            return result

        return wrapper

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop_after(parse_args))
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", stop_after(parse_known_args))
    try:
        main(list(argv))
    except Parsed:
        return
    except SystemExit as exit:
        if exit.code in (0, None):  # --help, --version
            return
        message = capsys.readouterr().err.strip().splitlines() or ["(no message)"]
        pytest.fail(f"rejected by the parser: {message[-1]}")
    pytest.fail("the command never parsed its arguments (it returned or did work first)")


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines (at most {MAX_LINES})"


@pytest.mark.parametrize(
    "page",
    [README, *sorted((ROOT / "docs").glob("*.md"))],
    ids=lambda path: path.relative_to(ROOT).as_posix(),
)
def test_no_history_words(page):
    text = page.read_text(encoding="utf-8")
    found = [m.group(0) for p in HISTORY for m in re.finditer(p, text, flags=re.I)]
    assert not found, f"history belongs in CHANGELOG.md, not {page.name}: {found}"


def test_readme_keeps_the_test_command():
    assert "python -m pytest -q" in README.read_text(encoding="utf-8")


def test_readme_shows_every_command():
    scripts = {script for _, script, _ in readme_commands()}
    assert scripts == set(SCRIPTS), f"no README example runs {set(SCRIPTS) - scripts}"
    text = README.read_text(encoding="utf-8")
    missing = [command for command in SCRIPTS.values() if command not in text]
    assert not missing, f"README never names the installed commands {missing}"


@pytest.mark.parametrize(
    "line,script,argv", readme_commands(), ids=[c[0][:60] for c in readme_commands()]
)
def test_readme_command_parses(line, script, argv, monkeypatch, capsys):
    installed = line.split()[0] in SCRIPTS.values()
    main = installed_main(SCRIPTS[script]) if installed else script_main(script)
    parse_only(main, argv, monkeypatch, capsys)


def test_readme_links_exist():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"^[a-z]+:", t) and t[0] != "#"]
    assert any(t.startswith("docs/") for t in local), "README links no docs/ page"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"
