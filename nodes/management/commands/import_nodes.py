"""Import many nodes from a CSV, JSON or YAML file, all or nothing."""

import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from nodes import services
from nodes.inventory_files import FORMATS, InventoryFileError, read_inventory


class ProgressLine:
    """One progress line on stderr: rewritten in place on a terminal, a line per step otherwise."""

    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        percent = 100 * done // total if total else 100
        text = f"{self.label}: {stage} {done}/{total} ({percent}%) {time.monotonic() - self.started:.1f}s"
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self.last)))
        elif text != self.last:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = text

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")


class Command(BaseCommand):
    help = "Create or update nodes (and clusters) from a CSV, JSON or YAML file. Nothing is written if any row is bad."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=FORMATS, help="default: from the file name")
        parser.add_argument("--cluster", help="cluster for rows that name none")
        parser.add_argument("--quiet", action="store_true", help="no progress line")

    def handle(self, *args, file, format, cluster, quiet, **options):
        try:
            clusters, nodes = read_inventory(file, format)
        except InventoryFileError as exc:
            raise CommandError(str(exc)) from None
        if cluster:
            for row in nodes:
                if isinstance(row, dict) and not row.get("cluster"):
                    row["cluster"] = cluster
        progress = None if quiet else ProgressLine(sys.stderr, f"import {file.name}")
        try:
            result = services.nodes_import(
                actor="command:import_nodes", nodes=nodes, clusters=clusters, progress=progress
            )
        except services.InventoryError as exc:
            if progress:
                progress.close()
            self._print_errors(exc.errors, csv_lines=file.suffix.lower() == ".csv" or format == "csv")
            raise CommandError("import refused: nothing was written") from None
        if progress:
            progress.close()
        self.stdout.write(
            f"imported {result.total} nodes: {result.created} created, {result.updated} updated"
            + (f"; clusters: {result.clusters_created} created, {result.clusters_updated} updated" if clusters else "")
        )

    def _print_errors(self, errors, csv_lines):
        for section in ("clusters", "nodes"):
            for index, fields in errors.get(section, {}).items():
                where = f"{section[:-1]} {int(index) + 1}"
                if section == "nodes" and csv_lines:
                    where += f" (line {int(index) + 2})"
                for field_name, messages in fields.items():
                    for message in messages:
                        self.stderr.write(f"{where}: {field_name}: {message}")
        for message in errors.get("non_field_errors", []):
            self.stderr.write(message)
