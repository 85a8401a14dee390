"""The README's runnable blocks: fenced code blocks right after a ``<!-- docs-test -->`` comment.

    <!-- docs-test -->              run in order, in one shell, failing on any non-zero exit
    <!-- docs-test: background -->  started first and kept running (``make run``), stopped at the end

Only blocks so marked are taken; their text is returned exactly as written (the docs test then
substitutes the port). ``python .ci/docs_blocks.py README.md`` prints them.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

_MARK = re.compile(r"^<!--\s*docs-test(?::\s*(?P<mode>[a-z-]+))?\s*-->\s*$")
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_SHELLS = {"sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    mode: str  # "run" or "background"
    code: str


class DocsError(ValueError):
    pass


def blocks(markdown: str) -> list[Block]:
    lines = markdown.splitlines()
    found: list[Block] = []
    pending: tuple[int, str] | None = None  # (line of the mark, mode) waiting for its fence
    index = 0
    while index < len(lines):
        line = lines[index]
        mark = _MARK.match(line.strip())
        fence = _FENCE.match(line.strip()) if not line.startswith(("    ", "\t")) else None
        if mark:
            mode = mark.group("mode") or "run"
            if mode not in ("run", "background"):
                raise DocsError(f"line {index + 1}: unknown docs-test mode {mode!r}")
            pending = (index + 1, mode)
        elif fence:
            closing, info = fence.group("fence"), fence.group("info").strip().split(" ")[0].lower()
            body: list[str] = []
            end = index + 1
            while end < len(lines) and not (
                lines[end].strip().startswith(closing[0] * len(closing)) and not lines[end].strip().strip(closing[0])
            ):
                body.append(lines[end])
                end += 1
            if end == len(lines):
                raise DocsError(f"line {index + 1}: code block never closed")
            if pending is not None:
                if info not in _SHELLS:
                    raise DocsError(f"line {index + 1}: a docs-test block must be a shell block (```sh), not {info!r}")
                found.append(Block(line=index + 1, mode=pending[1], code="\n".join(body) + "\n"))
                pending = None
            index = end
        elif line.strip() and pending is not None:
            raise DocsError(f"line {pending[0]}: docs-test mark not followed by a code block")
        index += 1
    if pending is not None:
        raise DocsError(f"line {pending[0]}: docs-test mark at the end of the file")
    return found


def with_port(code: str, port: int) -> str:
    """The README speaks of the default port; the test serves on a free one."""
    return code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")


if __name__ == "__main__":
    with open(sys.argv[1] if len(sys.argv) > 1 else "README.md", encoding="utf-8") as readme:
        text = readme.read()
    for block in blocks(text):
        print(f"# --- line {block.line} ({block.mode})\n{block.code}")
