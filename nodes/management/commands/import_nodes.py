"""Import many nodes from a CSV, JSON or YAML file, all or nothing."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.commands import refuse_hostile
from core.progress import ProgressLine
from nodes import importing
from nodes.inventory_files import FORMATS, InventoryFileError, read_inventory


class Command(BaseCommand):
    help = "Create or update nodes (and clusters) from a CSV, JSON or YAML file. Nothing is written if any row is bad."

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=FORMATS, help="default: from the file name")
        parser.add_argument("--cluster", help="cluster for rows that name none")
        parser.add_argument("--quiet", action="store_true", help="no progress line")

    def handle(self, *args, file, format, cluster, quiet, **options):
        refuse_hostile({"cluster": cluster})
        try:
            clusters, nodes = read_inventory(file, format)
        except InventoryFileError as exc:
            raise CommandError(str(exc)) from None
        if cluster:
            for row in nodes:
                if isinstance(row, dict) and not row.get("cluster"):
                    row["cluster"] = cluster
        progress = None if quiet else ProgressLine(getattr(self.stderr, "_out", self.stderr), f"import {file.name}")
        try:
            result = importing.nodes_import(
                actor="command:import_nodes", nodes=nodes, clusters=clusters, progress=progress
            )
        except importing.InventoryError as exc:
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
