"""The docs stay true to the code: every link and anchor in README.md, docs/*.md and
CONTRIBUTING.md resolves, every toolkit command in their code blocks is accepted by that command's
parser, and every flag they name in running text is a flag of some command (a renamed or removed
flag fails here)."""

import argparse
import re
from pathlib import Path

import pytest
from test_readme import (
    SCRIPTS,
    SHELL_ONLY,
    command_lines,
    installed_main,
    parse_only,
    script_main,
    split_commands,
    toolkit_invocation,
)

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CONTRIBUTING.md"]


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.*)$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):
            continue  # a web address: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.name}: {broken}"


def docs_commands() -> list[tuple[str, str, str, list[str]]]:
    """(page, line, script, arguments) of every toolkit command in docs/*.md's code blocks."""
    found = []
    for page in PAGES[1:]:
        for line in command_lines(page.read_text(encoding="utf-8")):
            text = line.split(" #")[0].strip()
            if not text or text.startswith("#") or any(mark in text for mark in SHELL_ONLY):
                continue
            try:
                commands = split_commands(text)
            except ValueError:
                continue
            for words in commands:
                invocation = toolkit_invocation(words)
                if invocation:
                    found.append((page.name, text, *invocation))
    return found


@pytest.mark.parametrize(
    "page, line, script, argv",
    docs_commands(),
    ids=[f"{c[0]}: {c[1][:50]}" for c in docs_commands()],
)
def test_docs_command_parses(page, line, script, argv, monkeypatch, capsys):
    installed = line.split()[0] in SCRIPTS.values()
    main = installed_main(SCRIPTS[script]) if installed else script_main(script)
    parse_only(main, argv, monkeypatch, capsys)


def every_flag() -> set[str]:
    """The flags of every command and every mode of one."""
    from gender.cli import dataset, evaluate, predict, train

    flags = set()

    def walk(parser):
        for action in parser._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    for module in (train, evaluate, predict, dataset):
        walk(module.build_parser())
    flags.update(train.MODE_FLAGS)  # the older `--resume RUN_DIR` forms, still accepted
    for bench in (ROOT / "bench").glob("*.py"):  # the benches the docs run for their figures
        flags.update(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", bench.read_text()))
    return flags


# flags of other programs that the docs name in passing (pip, pytest, chromium, ray start)
OTHER_PROGRAMS = {"--no-deps", "--headless", "--no-sandbox", "--screenshot", "--window-size",
                  "--head", "--num-cpus", "--address", "--port"}  # fmt: skip


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_flag_named_in_the_text_exists(page):
    """A flag in running text (`--flag` in backticks) is one of the toolkit's."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    named = set()
    for span in re.findall(r"`([^`]+)`", text):
        words = span.split()
        if words and (Path(words[0]).name.startswith("bench_") or words[0] in ("pip", "pytest")):
            continue  # another program's command line
        named.update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", span))
    unknown = sorted(named - every_flag() - OTHER_PROGRAMS)
    assert not unknown, f"{page.name} names flags no command has: {unknown}"
