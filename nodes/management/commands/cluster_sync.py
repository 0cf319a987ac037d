"""Sync clusters' nodes from their Kubernetes APIs: manage.py cluster_sync [CLUSTER ...]."""

from django.core.management.base import BaseCommand, CommandError

from nodes.kubesync import SyncError, cluster_sync
from nodes.models import Cluster


class Command(BaseCommand):
    help = "List each cluster's nodes from its Kubernetes API into the inventory (all clusters with an API by default)."

    def add_arguments(self, parser):
        parser.add_argument("clusters", nargs="*", help="cluster names (default: every cluster with an API)")
        parser.add_argument("--page-size", type=int, default=500, help="nodes per LIST page (limit)")

    def handle(self, *args, clusters, page_size, **options):
        if page_size < 1:
            raise CommandError("--page-size must be at least 1")
        if clusters:
            found = {c.name: c for c in Cluster.objects.filter(name__in=clusters)}
            missing = [name for name in clusters if name not in found]
            if missing:
                raise CommandError(f"no such cluster: {', '.join(missing)}")
            chosen = [found[name] for name in clusters]
        else:
            chosen = list(Cluster.objects.exclude(kube_api_server=""))
            if not chosen:
                raise CommandError("no cluster has a Kubernetes API (set kube_api_server, or simfleet --register)")
        failed = 0
        for cluster in chosen:

            def progress(count, name=cluster.name):
                self.stderr.write(f"\r{name}: {count} nodes listed", ending="")

            try:
                result = cluster_sync(
                    actor="command:cluster_sync", cluster=cluster, page_size=page_size, progress=progress
                )
            except SyncError as exc:
                self.stderr.write("")
                self.stderr.write(f"{cluster.name}: sync failed: {exc}")
                failed += 1
                continue
            self.stderr.write("")
            self.stdout.write(f"{cluster.name}: {result}")
        if failed:
            raise CommandError(f"{failed} of {len(chosen)} clusters could not be synced")
