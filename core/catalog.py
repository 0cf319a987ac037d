"""The feature-gate catalog the service uses: the newest one installed with ``manage.py gates
load-catalog`` (in ``PIDNS_VAR_DIR``), else the one shipped in ``gates/data``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from django.conf import settings

from gates.catalog import SHIPPED, Catalog, catalog_from, load_catalog


def installed_path() -> Path:
    return Path(settings.VAR_DIR) / "feature-gates" / "feature_gates.json"


def catalog() -> Catalog:
    path = installed_path()
    return load_catalog(path if path.exists() else SHIPPED)


def install_catalog(source: Path) -> Catalog:
    """Check a catalog file's shape and install it for the service; raises CatalogError."""
    text = source.read_text(encoding="utf-8")
    checked = catalog_from(json.loads(text), source=str(source))
    target = installed_path()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
    return checked
