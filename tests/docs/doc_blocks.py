"""The tagged fenced blocks of docs/*.md that tests execute.

A block's info string is a language and tags: ```json config.json```. Tags the tests know:

- ``yaml sim-host``: a simulated node spec (`sriovctl sim create --spec`); later examples in the
  same document run on the most recent one;
- ``json config.json``: a device plugin config, followed by its expectation, the next fenced block:
  ``json pools`` (exactly what `sriovctl pools -o json` prints, as JSON), ``text errors`` (the
  lines `sriovctl pools` prints, without the `sriovctl: ` prefix, exit status 2; ``text errors
  strict``: those of `sriovctl pools --strict`) or ``text warnings`` (the warnings `sriovctl pools`
  prints, without the `sriovctl: warning: ` prefix, exit status 0); optionally then ``text explain``
  (exactly what `sriovctl pools --explain` prints) or, after warnings, ``json pools``;
- ``json netconf``: a sriov CNI config that sriovkit's CNI accepts;
- ``yaml nad``: a NetworkAttachmentDefinition that validates;
- ``yaml policy``: a node policy that `sriovctl provision --dry-run` accepts on the current host;
- ``yaml values``: Helm values the chart renders with into valid objects;
- ``yaml k8s``: Kubernetes objects (DeviceClasses, claims, pods) that validate against the API schemas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    tags: tuple[str, ...]
    text: str

    @property
    def where(self) -> str:
        return f"docs/{self.doc}:{self.line}"


@dataclass(frozen=True)
class ConfigExample:
    config: Block
    expectation: Block
    host: Block | None
    explain: Block | None = None


def doc_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in _FENCE.finditer(text):
        words = m.group(1).split()
        lang, tags = (words[0], tuple(words[1:])) if words else ("", ())
        out.append(Block(path.name, text.count("\n", 0, m.start()) + 1, lang, tags, m.group(2)))
    return out


def all_blocks() -> list[Block]:
    return [b for doc in sorted(DOCS.glob("*.md")) for b in doc_blocks(doc)]


def tagged(tag: str) -> list[Block]:
    return [b for b in all_blocks() if tag in b.tags]


def config_examples() -> list[ConfigExample]:
    """Every config.json block with the block after it and the host spec before it."""
    examples = []
    for doc in sorted(DOCS.glob("*.md")):
        blocks = doc_blocks(doc)
        host: Block | None = None
        for i, block in enumerate(blocks):
            if "sim-host" in block.tags:
                host = block
            elif "config.json" in block.tags:
                following = blocks[i + 1] if i + 1 < len(blocks) else block
                after = blocks[i + 2] if i + 2 < len(blocks) and {"explain", "pools"} & set(blocks[i + 2].tags) \
                    else None
                examples.append(ConfigExample(block, following, host, after))
    return examples


def table_fields(doc: str) -> set[str]:
    """Field names in the first column of the doc's tables: `policies[].name` counts as `name`."""
    fields = set()
    for line in (DOCS / doc).read_text().splitlines():
        m = re.match(r"^\| `([^`]+)` \|", line)
        if m:
            fields.add(re.split(r"[.\]]", m.group(1))[-1])
    return fields
