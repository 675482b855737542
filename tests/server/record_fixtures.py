#!/usr/bin/env python3
"""Record the answers of a running llama-server (two instances, see make-fixtures.sh) to the
requests of fixture_requests.py: one body file per request, index.json (request, status, headers)
and README.md (the commands).

usage: record_fixtures.py MAIN_URL KEY_URL OUT_DIR MAIN_COMMAND KEY_COMMAND
"""

import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_requests as fr  # noqa: E402

VOLATILE_HEADERS = {"date"}


def curl_command(req, url_var):
    """A curl line that sends the same request (for the README)."""
    parts = ["curl", "-sS", "-i"]
    if req.method not in ("GET", "POST"):
        parts += ["-X", req.method]
    for k, v in req.headers.items():
        parts += ["-H", f"{k}: {v}"]
    body = req.describe_body()
    if req.name == "error_oversize_body":
        n = fr.OVERSIZE_BYTES - len('{"prompt":""}')
        return (f"{{ printf '{{\"prompt\":\"'; head -c {n} /dev/zero | tr '\\0' a; printf '\"}}'; }} "
                f"| curl -sS -i -H 'Content-Type: application/json' --data-binary @- ${url_var}{req.path}")
    if req.name.startswith("error_prompt_too_long"):
        n = req.body["prompt"].count("hello")
        parts += ["-H", "Content-Type: application/json", "-d"]
        return (" ".join(shlex.quote(p) for p in parts)
                + f" \"{{\\\"prompt\\\": \\\"$(printf 'hello %.0s' $(seq {n}))\\\", \\\"n_predict\\\": 4}}\" ${url_var}{req.path}")
    if body is not None:
        parts += ["-H", "Content-Type: application/json", "-d", body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)]
    return " ".join(shlex.quote(p) for p in parts) + f" ${url_var}{req.path}"


def main():
    if len(sys.argv) != 6:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    main_url, key_url, out, main_cmd, key_cmd = sys.argv[1:]
    urls = {"main": main_url, "key": key_url}
    os.makedirs(out, exist_ok=True)
    index = {"servers": {"main": main_cmd, "key": key_cmd}, "api_key": fr.API_KEY, "fixtures": []}
    failures = 0
    for req in fr.REQUESTS:
        status, headers, body, note = fr.send(urls[req.server], req)
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
            "headers": [[k, v] for k, v in headers if k.lower() not in VOLATILE_HEADERS],
        }
        if note or req.note:
            entry["note"] = "; ".join(x for x in (req.note, note) if x)
        index["fixtures"].append(entry)
        print(f"{status} {req.method} {req.path} -> {req.file_name()} ({len(body)} bytes)")
    with open(os.path.join(out, "index.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1, ensure_ascii=False)
        f.write("\n")
    write_readme(out, index, main_cmd, key_cmd)
    return 1 if failures else 0


def write_readme(out, index, main_cmd, key_cmd):
    lines = [
        "# llama-server fixtures",
        "",
        "Answers of the real llama-server (llama.cpp build 11434, SmolLM2-135M-Instruct f16) to the",
        "requests in `tests/server/fixture_requests.py`, made by",
        "`tests/fixtures/server/make-fixtures.sh LLAMA_SERVER MODEL` (which writes this file too).",
        "`index.json` has, for each one, the request, the status code and the response headers;",
        "the body is the file named there, byte for byte as the server sent it (`.sse.txt`: the raw",
        "server-sent-events body; `.txt`: not JSON). `tests/server/shape_check.py` compares any",
        "server's answers with these by key sets and value types.",
        "",
        "Servers (the ports are picked free at each run):",
        "",
        f"- main (`$MAIN`): `{main_cmd}`",
        f"- key (`$KEY`): `{key_cmd}`",
        "",
        "| fixture | status | server | command |",
        "|---|---|---|---|",
    ]
    for e in index["fixtures"]:
        req = next(r for r in fr.REQUESTS if r.name == e["name"])
        cmd = curl_command(req, "MAIN" if req.server == "main" else "KEY").replace("|", "\\|")
        lines.append(f"| [`{e['file']}`]({e['file']}) | {e['status']} | {e['server']} | `{cmd}` |")
    lines += ["", "Notes:", ""]
    for e in index["fixtures"]:
        if e.get("note"):
            lines.append(f"- `{e['name']}`: {e['note']}")
    with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
