"""Runs a Databricks source-format Python notebook: its cells in order, in one namespace, with
`dbutils`. Markdown cells are skipped; `dbutils.notebook.exit(value)` ends the notebook."""

import sys

import tarn_dbutils

SEPARATOR = "# COMMAND ----------"
HEADER = "# Databricks notebook source"


def cells(source):
    if source.startswith(HEADER):
        source = source[len(HEADER):]
    for cell in source.split("\n" + SEPARATOR):
        body = cell.strip("\n")
        magic = [line for line in body.splitlines() if line.startswith("# MAGIC")]
        if magic:
            first = magic[0][len("# MAGIC"):].strip()
            if first.startswith("%md"):
                continue
            raise SystemExit(f"Notebook cell magic {first.split()[0]} is not supported by tarn")
        if body.strip():
            yield body


def main(path):
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    namespace = {"__name__": "__main__", "__file__": path, "dbutils": tarn_dbutils.dbutils}
    for number, cell in enumerate(cells(source), start=1):
        code = compile(cell, f"{path} (cell {number})", "exec")
        try:
            exec(code, namespace)
        except tarn_dbutils.NotebookExit:
            return


if __name__ == "__main__":
    main(sys.argv[1])
