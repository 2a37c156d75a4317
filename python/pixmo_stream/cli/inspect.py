"""``pixmo-stream inspect``: schema, rows, shards and bytes per column."""

from __future__ import annotations

import argparse
import json
from typing import Any, TextIO

from .common import (
    DATASET_PATH_HELP,
    EXIT_OK,
    add_command,
    add_storage_arguments,
    column_totals,
    human_bytes,
    json_default,
    open_dataset,
    printer,
    schema_to_dict,
    schema_tree,
    table,
    type_label,
)


def add_parser(subparsers: Any) -> None:
    p = add_command(
        subparsers,
        "inspect",
        help="show schema, rows, shards and bytes per column",
        description="Show a dataset's schema as a tree, its rows, shards and row groups, and "
        "the bytes each column takes on disk and raw, with compression ratios.",
    )
    p.add_argument("path", help=DATASET_PATH_HELP)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--shards", action="store_true", help="list every shard (default: 10)")
    add_storage_arguments(p)


def run(args: argparse.Namespace, out: TextIO) -> int:
    ds = open_dataset(args.path, args)
    info = dict(ds.info())
    schema = schema_to_dict(info.get("schema", ds.schema))
    shards = info.get("shards", [])
    columns = column_totals(info)
    num_row_groups = sum(len(s.get("row_groups", [])) for s in shards)
    if args.json:
        doc = {
            **info,
            "schema": schema,
            "num_shards": len(shards),
            "num_row_groups": num_row_groups,
            "columns": columns,
        }
        json.dump(doc, out, indent=2, default=json_default)
        out.write("\n")
        return EXIT_OK

    types = {f["name"]: type_label(f["type"]) for f in schema.get("fields", [])}
    stored = sum(c["stored_bytes"] for c in columns)
    raw = sum(c["raw_bytes"] for c in columns)
    p = printer(out)
    p(f"dataset     {info.get('path', args.path)}")
    p(f"rows        {int(info.get('num_rows', len(ds))):,}")
    p(f"shards      {len(shards):,}")
    p(f"row groups  {num_row_groups:,}")
    p(
        f"on disk     {human_bytes(int(info.get('num_bytes', stored)))} "
        f"(chunks {human_bytes(stored)}, raw {human_bytes(raw)}"
        f"{f', {raw / stored:.2f}x' if stored else ''})"
    )
    for key, value in (info.get("metadata") or {}).items():
        p(f"metadata    {key} = {value}")
    p("")
    p(f"schema ({len(schema.get('fields', []))} columns)")
    for line in schema_tree(schema):
        p(f"  {line}")
    p("")
    headers = ("column", "type", "codec", "stored", "raw", "ratio", "share")
    rows = []
    for c in columns:
        share = f"{100 * c['stored_bytes'] / stored:.1f}%" if stored else "-"
        ratio = f"{c['ratio']:.2f}x" if c["ratio"] is not None else "-"
        rows.append(
            (
                c["name"],
                types.get(c["name"], "?"),
                "+".join(c["codecs"]),
                human_bytes(c["stored_bytes"]),
                human_bytes(c["raw_bytes"]),
                ratio,
                share,
            )
        )
    for line in table(headers, rows, right={3, 4, 5, 6}):
        p(f"  {line}")
    if len(shards) > 1 or args.shards:
        p("")
        srows = [
            (
                s.get("file", "?"),
                f"{int(s.get('num_rows', 0)):,}",
                f"{len(s.get('row_groups', [])):,}",
                human_bytes(int(s.get("num_bytes", 0))),
            )
            for s in shards
        ]
        limit = len(srows) if args.shards else 10
        for line in table(("shard", "rows", "row groups", "size"), srows[:limit], right={1, 2, 3}):
            p(f"  {line}")
        if len(srows) > limit:
            p(f"  … {len(srows) - limit:,} more shards (--shards lists all)")
    return EXIT_OK
