"""Write one benchmark's table into its own section of the docs.

Headline sections (``HEADLINE_SECTIONS``) go to docs/benchmarks.md, the page users read;
every other section goes to docs/experiment_log.md, the screening history.
"""

import json
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPORT = DOCS / "benchmarks.md"
LOG = DOCS / "experiment_log.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun it to refresh.\n"
LOG_HEADER = (
    "# Experiment log\n\nEach section is written by the script it names; rerun it to refresh.\n"
)
# The sections shown on docs/benchmarks.md; a section of any other name goes to the log.
HEADLINE_SECTIONS = frozenset(
    {
        "RL vs SFT accuracy (compact rows)",
        "RL rollout and step speed",
        "RL rollout and step speed (GPU)",
        "RL step against TRL GRPOTrainer",
        "RL step against TRL GRPOTrainer (top 8 layers)",
        "Compute precision on CPU",
        "Cost vs rows",
        "Fit speed: before and after",
        "Fit speed: before and after (GPU)",
        "SFT and RL step profile",
        "Calibrated intervals",
        "Calibrated intervals: the default",
        "Calibrated intervals: the default at 1000 rows",
        "Text-rich tables",
        "Tables the defaults were not chosen on",
    }
)


def machine(threads: str | None = None) -> str:
    """The machine a section was measured on: its CPU, and its GPU where it has one.

    Both where there is a GPU: some scripts compute on the CPU whatever the machine
    (``trl_speed.py``, ``precision_speed.py``), and each section says where it computed.
    ``threads`` replaces this process's thread count where the table was measured by
    other runs (a table rebuilt from records).
    """
    threads = threads or f"{torch.get_num_threads()} threads"
    cpu = f"CPU {platform.processor() or platform.machine()}, {threads}"
    if torch.cuda.is_available():
        return f"{cpu}, GPU {torch.cuda.get_device_name()}"
    return cpu


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` once the work queued on ``device`` has run.

    CUDA kernels run asynchronously: without waiting for them a timer stops early.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def report_for(name: str) -> Path:
    """The page a section belongs on: the benchmarks page for a headline, else the log."""
    return REPORT if name in HEADLINE_SECTIONS else LOG


def write_section(name: str, command: str, body: str, threads: str | None = None) -> None:
    """Replace section ``name`` of its page in place, or append it when the page lacks it.

    ``threads``: what the header says of the threads, where not this process's count.
    """
    command = re.sub(r"^python (\S*/)?(\w+\.py)", r"python benchmarks/\2", command)
    report = report_for(name)
    header = HEADER if report == REPORT else LOG_HEADER
    text = report.read_text() if report.exists() else header
    section = (
        f"<!-- {name}:start -->\n## {name}\n\n`{command}` on {date.today()}, {machine(threads)}, "
        f"torch {torch.__version__}.\n\n{body.strip()}\n<!-- {name}:end -->\n"
    )
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->\n", re.S
    )
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text + "\n" + section
    report.parent.mkdir(exist_ok=True)
    report.write_text(text)


def command_line() -> str:
    """This process's command, quoted so that it can be pasted back into a shell."""
    return "python " + shlex.join(sys.argv)


def publish(name: str, body: str, print_only: bool, threads: str | None = None) -> None:
    """Print ``body``, or write it as section ``name`` under the command that made it.

    ``threads`` as in :func:`write_section`.
    """
    if print_only:
        print(body)
        return
    write_section(name, command_line(), body, threads)


def append_records(path: Path, records: list[dict]) -> None:
    """Append records to a results JSONL file, one JSON object a line (the folder made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.writelines(json.dumps(record) + "\n" for record in records)


def newest_records(
    path: Path, key: tuple[str, ...], where: Callable[[dict], bool] | None = None
) -> list[dict]:
    """The newest record per ``key`` of a results JSONL file (later lines win).

    Scripts append a record per finished fit, so runs split across sessions add up;
    ``where`` keeps only the records of this run's settings. A missing file has none.
    """
    newest = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        if where is None or where(record):
            newest[tuple(record[field] for field in key)] = record
    return list(newest.values())


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
