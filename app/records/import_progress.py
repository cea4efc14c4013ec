"""The progress line of `spix-dsr import records`: records done, their rate, and the time
left, estimated from the bytes read of the file's size (lines vary little in length)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RecordRateColumn(ProgressColumn):
    """Records a second since the start."""

    def render(self, task: Task) -> Text:
        records = int(task.fields.get("records", 0))
        elapsed = task.elapsed or 0.0
        if not records or elapsed <= 0:
            return Text("- records/s")
        return Text(f"{records / elapsed:,.0f} records/s")


def import_progress(console: Console | None = None) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[records]:,} records"),
        RecordRateColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


class ImportProgress:
    """Feeds the importer's `progress(lines, bytes_read)` calls into a rich task."""

    def __init__(self, progress: Progress, file_size: int) -> None:
        self.progress = progress
        self.records = 0
        self.task = progress.add_task("importing", total=max(file_size, 1), records=0)

    def __call__(self, lines: int, read: int) -> None:
        self.records += lines
        self.progress.update(self.task, completed=read, records=self.records)
