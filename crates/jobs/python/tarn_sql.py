"""Runs a sql_task: the statements of a .sql file, one after the other, on tarn's SQL engine
through its statement execution API, as the task's principal. `{{name}}` in the file takes the
task's parameter of that name. Prints each result (its first rows); stops at the first failure."""

import json
import os
import sys
import time
import urllib.error
import urllib.request

SHOWN_ROWS = 1000


def statements(text):
    """The file's statements: split at semicolons outside quotes and comments."""
    current, quote, found = [], None, []
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            current.append(char)
            if char == quote:
                quote = None
        elif char in "'\"`":
            quote = char
            current.append(char)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif char == ";":
            found.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    found.append("".join(current))
    return [statement.strip() for statement in found if statement.strip()]


def call(method, path, body=None):
    request = urllib.request.Request(
        os.environ["TARN_HOST"].rstrip("/") + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": "Bearer " + os.environ["TARN_TOKEN"], "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise SystemExit(f"SQL statement refused: {error.read().decode(errors='replace')}")


def run(statement):
    prefix = "" if os.environ.get("TARN_WORKSPACE", "dev") == "dev" else "/ws/" + os.environ["TARN_WORKSPACE"]
    answer = call("POST", prefix + "/api/2.0/sql/statements",
                  {"statement": statement, "wait_timeout": "50s", "on_wait_timeout": "CONTINUE"})
    while answer["status"]["state"] in ("PENDING", "RUNNING"):
        time.sleep(0.2)
        answer = call("GET", prefix + "/api/2.0/sql/statements/" + answer["statement_id"])
    if answer["status"]["state"] != "SUCCEEDED":
        error = answer["status"].get("error", {})
        raise SystemExit(f"SQL statement failed: {error.get('message', answer['status']['state'])}")
    columns = [column["name"] for column in answer.get("manifest", {}).get("schema", {}).get("columns", [])]
    rows = answer.get("result", {}).get("data_array") or []
    if columns:
        print("\t".join(columns))
        for row in rows[:SHOWN_ROWS]:
            print("\t".join("NULL" if value is None else str(value) for value in row))
        total = answer.get("manifest", {}).get("total_row_count", len(rows))
        print(f"({total} row{'s' if total != 1 else ''})")


def main(path, parameters):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    for name, value in parameters.items():
        text = text.replace("{{" + name + "}}", value).replace("{{ " + name + " }}", value)
    for number, statement in enumerate(statements(text), start=1):
        print(f"-- statement {number}: {statement.splitlines()[0][:100]}", flush=True)
        run(statement)


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
