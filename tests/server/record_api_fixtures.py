#!/usr/bin/env python3
"""Record (or check) tests/fixtures/server/llama-server/apis/: the answers of a running server to
the requests of api_fixture_requests.py, written as record_fixtures.py writes its own (one body
file per request, index.json, README.md).

usage: record_api_fixtures.py record URL OUT_DIR SERVER_COMMAND
       record_api_fixtures.py check URL FIXTURE_DIR     # shape_check.py over these requests
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import api_fixture_requests as api  # noqa: E402
import fixture_requests as fr  # noqa: E402
import record_fixtures  # noqa: E402


def record(url, out, command):
    os.makedirs(out, exist_ok=True)
    index = {"servers": {"main": command}, "fixtures": []}
    failures = 0
    for req in api.REQUESTS:
        status, headers, body, note = fr.send(url, req)
        if status is None:
            print(f"{req.name}: no answer ({note})", file=sys.stderr)
            failures += 1
            continue
        with open(os.path.join(out, req.file_name()), "wb") as f:
            f.write(body)
        entry = {
            "name": req.name,
            "server": req.server,
            "request": {"method": req.method, "path": req.path, "headers": req.headers, "body": req.describe_body()},
            "kind": req.kind,
            "file": req.file_name(),
            "status": status,
            "headers": [[k, v] for k, v in headers if k.lower() not in record_fixtures.VOLATILE_HEADERS],
        }
        if note or req.note:
            entry["note"] = "; ".join(x for x in (req.note, note) if x)
        index["fixtures"].append(entry)
        print(f"{status} {req.method} {req.path} -> {req.file_name()} ({len(body)} bytes)")
    with open(os.path.join(out, "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1, ensure_ascii=False)
        f.write("\n")
    lines = [
        "# llama-server fixtures: Messages, Responses, input-token counting",
        "",
        "Answers of the real llama-server (llama.cpp build 11434, SmolLM2-135M-Instruct f16) to the",
        "requests in `tests/server/api_fixture_requests.py`, made by",
        "`tests/fixtures/server/make-api-fixtures.sh LLAMA_SERVER MODEL` (which writes this file too).",
        "`index.json` and the body files are as in `../README.md`; `tests/server_apis.rs` sends the",
        "same requests to `rs-llama-server` and compares status, key sets, value types and event names.",
        "",
        f"Server (`$MAIN`, the port picked free at each run): `{command}`",
        "",
        "| fixture | status | command |",
        "|---|---|---|",
    ]
    for e in index["fixtures"]:
        req = next(r for r in api.REQUESTS if r.name == e["name"])
        cmd = record_fixtures.curl_command(req, "MAIN").replace("|", "\\|")
        lines.append(f"| [`{e['file']}`]({e['file']}) | {e['status']} | `{cmd}` |")
    lines += ["", "Notes:", ""]
    lines += [f"- `{e['name']}`: {e['note']}" for e in index["fixtures"] if e.get("note")]
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return 1 if failures else 0


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "record":
        fr.loopback_netloc(args[1])
        return record(args[1].rstrip("/"), args[2], args[3])
    if len(args) == 3 and args[0] == "check":
        import shape_check  # noqa: E402

        fr.REQUESTS = api.REQUESTS  # shape_check looks the requests up there
        sys.argv = ["shape_check.py", args[1], args[2]]
        return shape_check.main()
    print(__doc__.strip().split("usage: ", 1)[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
