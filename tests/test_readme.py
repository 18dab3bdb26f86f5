"""The README's two commands are the CI's, and its Development section names every module."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def development_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Development"):text.index("## Measured")]


def test_the_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-2:]   # Chromium where missing; venv, pytest
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)[:2]
    assert commands[0].endswith("&& icurt demo") and "pip install -q -e ." in commands[0]
    assert commands[1] == "\n".join(ci)


def named_modules(section: str) -> set[str]:
    """Module paths the layout names: `folder/name.py`, or `name.py` on a line (or its continuation)
    that names `folder/` first; plain `name.py` for modules of icurt/ itself."""
    named, folder = set(), ""
    for line in section.splitlines():
        entry = line.strip()
        if not line.startswith("   "):          # a new entry (continuations are indented further)
            match = re.match(r"\s*([a-z_]+(?:/[a-z_]+)*)/", line)
            folder = match.group(1) if match and not match.group(1).endswith(".py") else ""
        for name in re.findall(r"[a-z_/]*[a-z_]+\.py", entry):
            named.add(name if "/" in name else f"{folder}/{name}" if folder else name)
            if "/" in name:
                folder = name.rsplit("/", 1)[0]
    return named


def test_every_module_is_in_the_layout():
    named = named_modules(development_section())
    for path in sorted((ROOT / "icurt").rglob("*.py")):
        relative = path.relative_to(ROOT / "icurt").as_posix()
        if relative.endswith("__init__.py") and relative not in ("stages/__init__.py",):
            continue
        assert relative in named, f"README's Development section does not name icurt/{relative}"
    assert "stages/__init__.py" in named
