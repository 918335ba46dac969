r"""Build the many-schema JSON corpus ``datasets/data/pypi_json.jsonl.gz`` from PyPI artifacts.

The countries and OSV corpora each follow one schema; this one mixes many, so that
structure (which keys occur where) carries much of the signal, as in a collection of
configuration files. Every document is real JSON shipped on PyPI:

* ``check-jsonschema`` 0.39.0 (wheel, Apache-2.0): the SchemaStore schemas it vendors in
  ``check_jsonschema/builtin_schemas/vendor/*.json``. Each entry of a schema's top-level
  ``definitions`` / ``$defs`` / ``properties`` is one document, label ``kind`` =
  ``schemastore:<schema file stem>`` (same kind = the same schema family). Licences per
  file (:data:`LICENCES`, read from ``vendor/licenses/LICENSE.<name>``; SchemaStore's
  Apache-2.0 for the rest) are recorded per record in ``labels.licence``; the two copyleft
  schemas (``renovate``: AGPL-3.0, ``snapcraft``: GPL-3.0) are left out.
* ``jsonschema`` 4.26.0 (sdist, MIT), which ships the JSON-Schema-Test-Suite (MIT) in
  ``json/tests/<draft>/**.json``: each test group ``{"description", "schema", "tests"}`` is
  one document, label ``kind`` = the keyword file it tests (``minLength``,
  ``format:email``...), across all drafts; ``$schema`` is removed from the group's schema
  (it names the draft, not the kind).
* ``jsonschema-specifications`` 2025.9.1 (wheel, MIT): the six draft meta-schemas, kind
  ``metaschema``, ``$schema`` removed.

Subschemas serialised to more than ``--max-bytes`` are skipped and at most
``--per-schema`` are kept per schema file (evenly spaced in key order), so the committed
gzip stays small. Run::

    pip download --no-deps check-jsonschema jsonschema-specifications -d wheels
    pip download --no-deps --no-binary :all: jsonschema -d wheels
    python -m benchmarks.mbat_pypi_corpus wheels -o datasets/data/pypi_json.jsonl.gz
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

SCHEMASTORE_LICENCE = "Apache-2.0 (SchemaStore)"
LICENCES = {
    "azure-pipelines": "MIT (Microsoft)", "bitbucket-pipelines": "MIT (Atlassian)", "buildkite": "MIT (Buildkite)",
    "changie": "MIT (Ronnie Smith)", "citation-file-format": "CC BY 4.0", "compose-spec": "Apache-2.0 (compose-spec)",
    "gitlab-ci": "MIT Expat (GitLab B.V.)", "meltano": "MIT (Arch Data, Inc.)", "readthedocs": "MIT (Read the Docs, Inc.)",
    "taskfile": "MIT (Andrey Nering)",
}
"""Licence of each vendored schema with its own ``LICENSE.<name>`` file (checked by hand, 0.39.0)."""
EXCLUDED = {"renovate": "AGPL-3.0", "snapcraft": "GPL-3.0"}


def _artifact(folder: Path, prefix: str, suffix: str) -> Path:
    found = sorted(folder.glob(f"{prefix}*{suffix}"))
    if not found:
        raise FileNotFoundError(f"no {prefix}*{suffix} in {folder}; see the module docstring for the pip download commands")
    return found[-1]


def _version(artifact: Path) -> str:
    return artifact.name.split("-")[1].removesuffix(".tar.gz")


def schemastore_records(wheel: Path, per_schema: int, max_bytes: int) -> Iterator[dict]:
    """Subschemas of the SchemaStore schemas vendored by check-jsonschema."""
    package = f"check-jsonschema=={_version(wheel)}"
    with zipfile.ZipFile(wheel) as z:
        vendor = "check_jsonschema/builtin_schemas/vendor/"
        for name in sorted(n for n in z.namelist() if n.startswith(vendor) and n.endswith(".json")):
            stem = PurePosixPath(name).stem
            if stem in EXCLUDED:
                continue
            schema = json.loads(z.read(name))
            entries = [(section, key, sub) for section in ("definitions", "$defs", "properties")
                       for key, sub in sorted((schema.get(section) or {}).items())
                       if isinstance(sub, dict) and sub and len(json.dumps(sub)) <= max_bytes]
            step = max(1, len(entries) / per_schema)
            chosen = [entries[int(i * step)] for i in range(min(per_schema, len(entries)))]
            licence = LICENCES.get(stem, SCHEMASTORE_LICENCE)
            for section, key, sub in chosen:
                yield {"id": f"{stem}#/{section}/{key}",
                       "labels": {"kind": f"schemastore:{stem}", "source": "schemastore", "package": package,
                                  "path": name, "licence": licence},
                       "record": sub}


def suite_records(sdist: Path) -> Iterator[dict]:
    """Test groups of the JSON-Schema-Test-Suite shipped in the jsonschema sdist."""
    package = f"jsonschema=={_version(sdist)} (sdist)"
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers() if "/json/tests/" in m.name and m.name.endswith(".json")),
                         key=lambda m: m.name)
        for m in members:
            rel = m.name.split("/json/tests/", 1)[1]
            parts = rel.split("/")
            draft, stem = parts[0], PurePosixPath(rel).stem
            kind = stem if len(parts) == 2 else (f"format:{stem}" if parts[-2] == "format" else f"optional:{stem}")
            groups = json.load(io.TextIOWrapper(tar.extractfile(m), encoding="utf-8"))
            for i, group in enumerate(groups):
                if isinstance(group.get("schema"), dict):
                    group["schema"].pop("$schema", None)
                yield {"id": f"suite/{rel}#{i}",
                       "labels": {"kind": kind, "draft": draft, "source": "json-schema-test-suite", "package": package,
                                  "path": "json/tests/" + rel, "licence": "MIT (JSON-Schema-Test-Suite)"},
                       "record": group}


def metaschema_records(wheel: Path) -> Iterator[dict]:
    """The draft meta-schemas of jsonschema-specifications."""
    package = f"jsonschema-specifications=={_version(wheel)}"
    with zipfile.ZipFile(wheel) as z:
        for name in sorted(n for n in z.namelist() if n.endswith("metaschema.json")):
            doc: Any = json.loads(z.read(name))
            doc.pop("$schema", None)
            yield {"id": name, "labels": {"kind": "metaschema", "source": "jsonschema-specifications",
                                          "package": package, "path": name, "licence": "MIT"}, "record": doc}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mbat_pypi_corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", type=Path, help="folder holding the downloaded wheels and sdist")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--per-schema", type=int, default=60)
    ap.add_argument("--max-bytes", type=int, default=6000)
    args = ap.parse_args(argv)
    rows = [*schemastore_records(_artifact(args.artifacts, "check_jsonschema", ".whl"), args.per_schema, args.max_bytes),
            *suite_records(_artifact(args.artifacts, "jsonschema-", ".tar.gz")),
            *metaschema_records(_artifact(args.artifacts, "jsonschema_specifications", ".whl"))]
    with gzip.open(args.output, "wt", encoding="utf-8", compresslevel=9) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    kinds = {r["labels"]["kind"] for r in rows}
    print(f"wrote {len(rows)} records of {len(kinds)} kinds to {args.output} ({args.output.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
