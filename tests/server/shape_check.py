#!/usr/bin/env python3
"""Compare a server's answers with llama-server's fixtures by shape, not by value.

usage: shape_check.py BASE_URL FIXTURE_DIR [--key-url URL] [--allowlist FILE] [--only NAME,...]

Sends every request of FIXTURE_DIR/index.json (made by record_fixtures.py; the requests are those
of fixture_requests.py) to BASE_URL, or to --key-url for the ones made on the `--api-key` server
(started as index.json's "key" command says, with the same key; without --key-url they are
skipped), and compares with the fixture:
  - the status code and the Content-Type header, and the set of response header names (less the
    ones HTTP framing decides);
  - JSON bodies: key sets and value types, recursively, arrays by their first element;
  - SSE bodies: the first two and the last three events as JSON shapes, the event count, `[DONE]`;
  - /metrics text: the set of `# TYPE` metric names and kinds.
A difference is printed as `DIFF fixture: path: what`, unless the allowlist (default:
shape_allowlist.txt beside this script; lines `FIXTURE_GLOB PATH_GLOB # reason`) covers it.
Exit 0 when nothing differs, 1 otherwise.
"""

import argparse
import fnmatch
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_requests as fr  # noqa: E402

# Headers that HTTP framing or the clock decide, not the API.
FRAMING_HEADERS = {"date", "content-length", "transfer-encoding", "connection", "keep-alive"}


def load_allowlist(path):
    rules = []
    if not path or not os.path.exists(path):
        return rules
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                fixture_glob, path_glob = line.split(None, 1)
                rules.append((fixture_glob, path_glob.strip()))
    return rules


def check_one(entry, fixture_dir, url, rules):
    name = entry["name"]

    def allowed(path):
        return any(fnmatch.fnmatchcase(name, f) and fnmatch.fnmatchcase(path, p) for f, p in rules)

    req = next((r for r in fr.REQUESTS if r.name == name), None)
    if req is None:
        return [f"{name}: no such request in fixture_requests.py (fixtures stale?)"]
    status, headers, body, note = fr.send(url, req)
    if status is None:
        return [f"status: no answer ({note})"]
    diffs = []
    if status != entry["status"] and not allowed("status"):
        diffs.append(f"status: {status}, fixture has {entry['status']}")
    want_h = {k.lower(): v for k, v in entry["headers"]}
    got_h = {k.lower(): v for k, v in headers}
    if want_h.get("content-type") != got_h.get("content-type") and not allowed("header:content-type"):
        diffs.append(f"header content-type: {got_h.get('content-type')!r}, fixture has {want_h.get('content-type')!r}")
    for h in sorted((set(want_h) - set(got_h)) - FRAMING_HEADERS):
        if not allowed(f"header:{h}"):
            diffs.append(f"header {h}: missing (fixture: {want_h[h]!r})")
    for h in sorted((set(got_h) - set(want_h)) - FRAMING_HEADERS):
        if not allowed(f"header:{h}"):
            diffs.append(f"header {h}: extra ({got_h[h]!r})")
    with open(os.path.join(fixture_dir, entry["file"]), "rb") as f:
        want_body = f.read()
    kind = entry["kind"]
    if kind == "json":
        try:
            want = json.loads(want_body)
        except ValueError:
            want = None  # llama-server itself answered with something else than JSON
        if want is None:
            if want_body != body and not allowed("$"):
                diffs.append(f"$: body {body[:60]!r}, fixture has {want_body[:60]!r}")
        else:
            try:
                got = json.loads(body)
            except ValueError:
                diffs.append(f"$: not JSON: {body[:80]!r}")
            else:
                fr.compare_shapes(want, got, "$", allowed, diffs)
    elif kind == "sse":
        want_ev, want_other = fr.sse_events(want_body)
        got_ev, got_other = fr.sse_events(body)
        if len(want_ev) != len(got_ev) and not allowed("events"):
            diffs.append(f"events: {len(got_ev)}, fixture has {len(want_ev)}")
        if want_other != got_other and not allowed("lines"):
            diffs.append(f"lines: non-data lines {sorted(got_other)}, fixture has {sorted(want_other)}")
        if ("[DONE]" in want_ev) != ("[DONE]" in got_ev):
            diffs.append(f"[DONE]: {'present' if '[DONE]' in got_ev else 'absent'}, fixture differs")
        n = min(len(want_ev), len(got_ev))
        picks = sorted({i for i in (0, 1) if i < n} | {-i for i in (1, 2, 3) if i <= n})
        for i in picks:
            fr.compare_shapes(want_ev[i], got_ev[i], f"event[{i}]", allowed, diffs)
    elif kind == "text":
        want_m, got_m = fr.metric_names(want_body), fr.metric_names(body)
        for m in sorted(set(want_m) - set(got_m)):
            if not allowed(f"metric:{m}"):
                diffs.append(f"metric {m}: missing")
        for m in sorted(set(got_m) - set(want_m)):
            if not allowed(f"metric:{m}"):
                diffs.append(f"metric {m}: extra")
        for m in sorted(set(want_m) & set(got_m)):
            if want_m[m] != got_m[m]:
                diffs.append(f"metric {m}: {got_m[m]}, fixture has {want_m[m]}")
    elif kind == "empty":
        if bool(body) != bool(want_body) and not allowed("$"):
            diffs.append(f"$: body of {len(body)} bytes, fixture has {len(want_body)}")
    return diffs


def main():
    ap = argparse.ArgumentParser(description="compare a server's JSON shapes with llama-server's fixtures")
    ap.add_argument("base_url")
    ap.add_argument("fixture_dir")
    ap.add_argument("--key-url", help="the server started with --api-key (index.json's 'key' command)")
    ap.add_argument("--allowlist", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "shape_allowlist.txt"))
    ap.add_argument("--only", help="comma-separated fixture names")
    args = ap.parse_args()
    fr.loopback_netloc(args.base_url)
    if args.key_url:
        fr.loopback_netloc(args.key_url)
    with open(os.path.join(args.fixture_dir, "index.json"), encoding="utf-8") as f:
        index = json.load(f)
    rules = load_allowlist(args.allowlist)
    only = set(args.only.split(",")) if args.only else None
    n_ok = n_diff = n_skip = 0
    for entry in index["fixtures"]:
        if only is not None and entry["name"] not in only:
            continue
        url = args.base_url if entry["server"] == "main" else args.key_url
        if url is None:
            n_skip += 1
            continue
        diffs = check_one(entry, args.fixture_dir, url.rstrip("/"), rules)
        if diffs:
            n_diff += 1
            for d in diffs:
                print(f"DIFF {entry['name']}: {d}")
        else:
            n_ok += 1
            print(f"ok   {entry['name']}")
    skipped = f", {n_skip} skipped (no --key-url)" if n_skip else ""
    print(f"{n_ok} same shape, {n_diff} differ{skipped}")
    return 1 if n_diff else 0


if __name__ == "__main__":
    sys.exit(main())
