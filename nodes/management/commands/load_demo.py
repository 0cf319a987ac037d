"""Load the demo inventory: three clusters, a mix of kubelet and Docker versions, both plans."""

from pathlib import Path

from django.core.management.base import BaseCommand

from nodes import importing
from nodes.inventory_files import read_inventory

DEMO_FILE = Path(__file__).resolve().parents[2] / "demo" / "inventory.yaml"


class Command(BaseCommand):
    help = "Create or update the demo clusters and nodes (safe to run again)."

    def handle(self, *args, **options):
        clusters, nodes = read_inventory(DEMO_FILE)
        result = importing.nodes_import(actor="command:load_demo", nodes=nodes, clusters=clusters)
        self.stdout.write(f"demo inventory: {result.total} nodes in {len(clusters)} clusters")
