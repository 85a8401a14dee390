"""The README extractor the docs test relies on: marked shell blocks only, in order, exactly as written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("docs_blocks", ROOT / ".ci" / "docs_blocks.py")
docs_blocks = importlib.util.module_from_spec(_spec)
sys.modules["docs_blocks"] = docs_blocks  # dataclasses look their module up there
_spec.loader.exec_module(docs_blocks)

SAMPLE = """# Title

<!-- docs-test: background -->
```sh
make run
```

Unmarked, never run:

```sh
rm -rf /
```

    indented: not a fence either

<!-- docs-test -->
```bash
A=1
echo "$A" http://127.0.0.1:8000/x
```

<!-- docs-test -->

~~~sh
cat <<'EOF'
```
EOF
~~~
"""


def test_only_marked_blocks_are_taken_in_order_with_their_mode():
    found = docs_blocks.blocks(SAMPLE)
    assert [(b.mode, b.code) for b in found] == [
        ("background", "make run\n"),
        ("run", 'A=1\necho "$A" http://127.0.0.1:8000/x\n'),
        ("run", "cat <<'EOF'\n```\nEOF\n"),
    ]
    assert found[0].line == 4


def test_the_port_is_substituted():
    assert docs_blocks.with_port("curl http://127.0.0.1:8000/healthz", 41234) == "curl http://127.0.0.1:41234/healthz"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- docs-test -->\nprose\n```sh\nx\n```\n", "not followed by a code block"),
        ("<!-- docs-test -->\n```python\nx\n```\n", "must be a shell block"),
        ("<!-- docs-test -->\n```sh\nx\n", "never closed"),
        ("<!-- docs-test: sometimes -->\n```sh\nx\n```\n", "unknown docs-test mode"),
        ("text\n<!-- docs-test -->\n", "at the end of the file"),
    ],
)
def test_a_mark_that_cannot_be_honoured_is_an_error_not_a_skipped_block(text, message):
    with pytest.raises(docs_blocks.DocsError, match=message):
        docs_blocks.blocks(text)


def test_the_readme_has_the_walkthrough_marked():
    found = docs_blocks.blocks((ROOT / "README.md").read_text())
    assert found[0].mode == "background" and "make run" in found[0].code
    walkthrough = "".join(b.code for b in found[1:])
    # Register an agent, approve its ceiling, register an instance and mint with the SDK's CLI,
    # request and approve an envelope, ask for a decision.
    for step in (
        "add_user",
        "create_api_token",
        "/agents/",
        "/pending-change/approve",
        "mandate-sdk register",
        "/envelopes/",
        "/approve",
        "mandate-sdk token",
    ):
        assert step in walkthrough
    assert "/decisions/" in walkthrough and "'…'" not in walkthrough
