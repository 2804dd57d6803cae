"""Write one benchmark's table into its own section of docs/benchmarks.md."""

import platform
import re
from datetime import date
from pathlib import Path

import torch

REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun it to refresh.\n"


def machine() -> str:
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name()}"
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def write_section(name: str, command: str, body: str) -> None:
    command = re.sub(r"^python (\S*/)?(\w+\.py)", r"python benchmarks/\2", command)
    text = REPORT.read_text() if REPORT.exists() else HEADER
    section = (
        f"<!-- {name}:start -->\n## {name}\n\n`{command}` on {date.today()}, {machine()}, "
        f"torch {torch.__version__}.\n\n{body.strip()}\n<!-- {name}:end -->\n"
    )
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n", re.S
    )
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text)


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
