#!/usr/bin/env python3
"""Load a llama-server-compatible server with N concurrent streaming clients over loopback.

usage: server-load.py BASE_URL --clients N --requests M --max-tokens T [--timeout S]
                      [--deadline S] [--endpoint completion|chat] [--malformed-share F]
                      [--disconnect-share F] [--pid PID] [--seed S] [--out FILE.json]

M requests (bounded; each client thread takes the next one until none is left or --deadline
seconds have passed) on N threads, one HTTP connection per request (http.client), streamed SSE:
  - normal: a unique prompt (it starts with its own marker), greedy, `ignore_eos`, T tokens. The
    answer must come back whole on its own connection: every event of the stream carries one and
    the same `id` (chat) and no event follows the final one; the final object echoes this very
    prompt (`/completion`: `prompt`) or counts this request's own prompt length (chat: each request
    pads its message with a request-specific number of words, so `usage.prompt_tokens` minus the
    padding is the same for all); exactly T tokens; no response id seen twice in the run.
  - malformed (--malformed-share): bad JSON or wrong types; expects a 4xx status with an
    {"error": {"code", "message", "type"}} body whose code is the status.
  - disconnect (--disconnect-share): streamed like a normal one, the socket closed after the first
    chunk with content.
Reports requests/s, generated tokens/s (aggregate over the wall time), time to first token and
inter-token latency (p50, p99), the server's RSS before and after (--pid: /proc/PID/status VmRSS),
and whether the server is still healthy with no slot busy afterwards. One summary table on stdout;
--out writes everything (per-request records included) as JSON. Exit 1 when a request was lost,
answered twice or mixed up, a malformed one was not answered with 4xx, or the server is not healthy
after the run; 0 otherwise.
"""

import argparse
import http.client
import json
import os
import queue
import random
import statistics
import sys
import threading
import time
import urllib.parse

WORDS = "apple river stone cloud garden silver market window forest candle harbor meadow".split()

MALFORMED = [
    ("bad JSON", b'{"prompt": "unterminated'),
    ("bad JSON", b'{"messages": [}'),
    ("wrong type", {"prompt": {"not": "a prompt"}, "n_predict": 4}),
    ("wrong type", {"prompt": "x", "n_predict": "four"}),
    ("missing prompt", {"n_predict": 4}),
    ("not an object", b"[1, 2, 3]"),
]


def loopback(base_url):
    u = urllib.parse.urlsplit(base_url)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "::1", "localhost") or not u.port:
        raise SystemExit(f"refusing {base_url!r}: only http://127.0.0.1:PORT or http://[::1]:PORT")
    return u.hostname, u.port


def rss_kib(pid):
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Plan:
    """What request number i is and what it sends."""

    def __init__(self, i, kind, run_tag, endpoint, max_tokens, rng):
        self.i, self.kind, self.endpoint = i, kind, endpoint
        self.marker = f"[req {i:06d} {run_tag}]"
        self.pad = i % 37  # chat: request-specific padding, in words
        topic = " ".join(rng.choice(WORDS) for _ in range(3))
        if endpoint == "chat":
            # Every prompt the same number of tokens but for the padding (each word one token).
            self.prompt = f"Story{word_marker(i)} is a long story about{' ' + topic}."
        else:
            self.prompt = f"{self.marker} Write a long story about {topic}."
        self.max_tokens = max_tokens
        self.malformed = None
        if kind == "malformed":
            self.malformed = MALFORMED[i % len(MALFORMED)]

    def request(self):
        """(path, body bytes)."""
        if self.kind == "malformed":
            what, body = self.malformed
            path = "/v1/chat/completions" if self.endpoint == "chat" and b"messages" in (
                body if isinstance(body, bytes) else b"") else "/completion"
            if isinstance(body, dict):
                body = json.dumps(body).encode()
            return path, body
        if self.endpoint == "chat":
            text = self.prompt + " ok" * self.pad
            body = {
                "messages": [{"role": "user", "content": text}],
                "max_tokens": self.max_tokens, "temperature": 0, "seed": 42, "ignore_eos": True,
                "stream": True, "stream_options": {"include_usage": True},
            }
            return "/v1/chat/completions", json.dumps(body).encode()
        body = {
            "prompt": self.prompt, "n_predict": self.max_tokens, "temperature": 0, "seed": 42,
            "ignore_eos": True, "stream": True, "return_tokens": True, "cache_prompt": True,
        }
        return "/completion", json.dumps(body).encode()


def word_marker(i, digits=6):
    """i written in base len(WORDS) with WORDS as digits (" apple river ...")."""
    out = []
    for _ in range(digits):
        i, d = divmod(i, len(WORDS))
        out.append(" " + WORDS[d])
    return "".join(reversed(out))


def single_token_words(host, port):
    """True when the server's /tokenize makes one token of each marker word and of " ok" (so a
    chat prompt's token count is the same for every request but for its padding)."""
    try:
        for w in WORDS + ["ok"]:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("POST", "/tokenize", body=json.dumps({"content": " " + w}),
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            toks = json.loads(r.read()).get("tokens") if r.status == 200 else None
            conn.close()
            if not isinstance(toks, list) or len(toks) != 1:
                return False
        return True
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return False


def run_one(host, port, plan, timeout):
    """Send one request; returns its record (timings, counts, problems)."""
    rec = {"i": plan.i, "kind": plan.kind, "problems": []}
    path, body = plan.request()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        rec["status"] = resp.status
        if plan.kind == "malformed":
            check_malformed(resp, rec, plan)
        else:
            read_stream(resp, rec, plan, t0)
    except (OSError, http.client.HTTPException) as e:
        rec["problems"].append(f"{type(e).__name__}: {e}")
    finally:
        conn.close()
    rec["wall_s"] = time.perf_counter() - t0
    return rec


def check_malformed(resp, rec, plan):
    raw = resp.read()
    rec["what"] = plan.malformed[0]
    if not 400 <= resp.status < 500:
        rec["problems"].append(f"malformed ({plan.malformed[0]}): status {resp.status}, expected 4xx")
    try:
        err = json.loads(raw)["error"]
        ok = isinstance(err.get("message"), str) and isinstance(err.get("type"), str) and err.get("code") == resp.status
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        rec["problems"].append(f"malformed ({plan.malformed[0]}): error body {raw[:100]!r}")


def read_stream(resp, rec, plan, t0):
    if resp.status != 200:
        rec["problems"].append(f"status {resp.status}: {resp.read(200)!r}")
        return
    times, n_tokens, ids, final, after_final, done = [], 0, set(), None, 0, 0
    usage = None
    deadline = t0 + 3600
    while time.perf_counter() < deadline:
        line = resp.readline()
        if not line:
            break
        line = line.rstrip(b"\r\n")
        if not line.startswith(b"data: "):
            continue
        payload = line[6:]
        now = time.perf_counter()
        if payload == b"[DONE]":
            done += 1
            continue
        try:
            ev = json.loads(payload)
        except ValueError:
            rec["problems"].append(f"event not JSON: {payload[:80]!r}")
            continue
        if final is not None or done:
            after_final += 1
        got = event_tokens(ev, plan)
        if got:
            n_tokens += got
            times.append(now)
            if plan.kind == "disconnect":
                rec["tokens"] = n_tokens
                return  # the caller's finally closes the socket mid-stream
        if plan.endpoint == "chat":
            if "id" in ev:
                ids.add(ev["id"])
            if ev.get("usage"):
                usage = ev["usage"]
            if any(c.get("finish_reason") for c in ev.get("choices", [])):
                final = ev if final is None else final
        elif ev.get("stop"):
            final = ev
    rec["tokens"] = n_tokens
    if times:
        rec["ttft_s"] = times[0] - t0
        rec["itl_s"] = [b - a for a, b in zip(times, times[1:])]
    if plan.kind == "disconnect":
        rec["problems"].append("disconnect: the stream ended before any content")
        return
    if final is None:
        rec["problems"].append("no final event")
        return
    if after_final and plan.endpoint != "chat":
        rec["problems"].append(f"{after_final} events after the final one")
    if plan.endpoint == "chat":
        if done != 1:
            rec["problems"].append(f"{done} [DONE] events")
        if len(ids) != 1:
            rec["problems"].append(f"{len(ids)} distinct ids in one stream")
        rec["id"] = next(iter(ids)) if ids else None
        if usage is None:
            rec["problems"].append("no usage chunk")
        else:
            rec["prompt_tokens"] = usage.get("prompt_tokens")
            if usage.get("completion_tokens") != plan.max_tokens:
                rec["problems"].append(f"usage.completion_tokens {usage.get('completion_tokens')} != {plan.max_tokens}")
    else:
        if final.get("prompt") != plan.prompt:
            rec["problems"].append(f"final prompt is {str(final.get('prompt'))[:40]!r}: not this request's")
        if final.get("tokens_predicted") != plan.max_tokens:
            rec["problems"].append(f"tokens_predicted {final.get('tokens_predicted')} != {plan.max_tokens}")
        rec["id"] = f"{plan.marker}"  # the prompt echo is the native endpoint's identity
    if n_tokens != plan.max_tokens:
        rec["problems"].append(f"{n_tokens} tokens streamed, expected {plan.max_tokens}")


def event_tokens(ev, plan):
    """Tokens a streamed event carries (native: its `tokens` ids; chat: 1 per content delta)."""
    if plan.endpoint == "chat":
        return sum(1 for c in ev.get("choices", []) if (c.get("delta") or {}).get("content"))
    if ev.get("stop"):
        return 0
    toks = ev.get("tokens")
    return len(toks) if isinstance(toks, list) else (1 if ev.get("content") else 0)


def health_after(host, port, timeout):
    """(healthy, busy slots or None) after the run; waits up to `timeout` s for slots to go idle."""
    deadline = time.monotonic() + timeout
    healthy, busy = False, None
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/health")
            healthy = conn.getresponse().status == 200
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", "/slots")
            r = conn.getresponse()
            raw = r.read()
            conn.close()
            busy = sum(1 for s in json.loads(raw) if s.get("is_processing")) if r.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            healthy = False
        if healthy and not busy:
            break
        time.sleep(0.25)
    return healthy, busy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base_url")
    ap.add_argument("--clients", type=int, required=True)
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--max-tokens", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=300.0, help="socket timeout per request, s")
    ap.add_argument("--deadline", type=float, default=1800.0, help="no new request after this many s")
    ap.add_argument("--endpoint", choices=["completion", "chat"], default="completion")
    ap.add_argument("--malformed-share", type=float, default=0.0)
    ap.add_argument("--disconnect-share", type=float, default=0.0)
    ap.add_argument("--pid", type=int, help="the server's pid, for its RSS")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--label", default="")
    ap.add_argument("--out")
    a = ap.parse_args()
    host, port = loopback(a.base_url)
    if not (1 <= a.clients <= 256 and 1 <= a.requests <= 100000 and 1 <= a.max_tokens <= 4096):
        raise SystemExit("clients 1..256, requests 1..100000, max-tokens 1..4096")
    rng = random.Random(a.seed)
    n_mal = round(a.requests * a.malformed_share)
    n_dis = round(a.requests * a.disconnect_share)
    if n_mal + n_dis > a.requests:
        raise SystemExit("malformed + disconnect shares exceed 1")
    kinds = ["malformed"] * n_mal + ["disconnect"] * n_dis + ["normal"] * (a.requests - n_mal - n_dis)
    rng.shuffle(kinds)
    run_tag = f"{os.getpid():x}{int(time.time()) & 0xffff:04x}"
    plans = [Plan(i, k, run_tag, a.endpoint, a.max_tokens, rng) for i, k in enumerate(kinds)]
    work = queue.Queue()
    for p in plans:
        work.put(p)
    identity_check = a.endpoint != "chat" or single_token_words(host, port)
    if not identity_check:
        print("note: /tokenize does not make one token of each marker word: chat identity check off")
    records, lock = [], threading.Lock()
    rss_before = rss_kib(a.pid)
    t_start = time.perf_counter()
    stop_at = t_start + a.deadline

    def worker():
        while time.perf_counter() < stop_at:
            try:
                plan = work.get_nowait()
            except queue.Empty:
                return
            rec = run_one(host, port, plan, a.timeout)
            with lock:
                records.append(rec)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(a.deadline + a.timeout + 60)
    wall = time.perf_counter() - t_start
    healthy, busy = health_after(host, port, 30.0)
    time.sleep(1.0)
    rss_after = rss_kib(a.pid)

    with lock:
        recs = sorted(records, key=lambda r: r["i"])
    not_run = a.requests - len(recs)
    normal = [r for r in recs if r["kind"] == "normal"]
    ok_normal = [r for r in normal if not r["problems"]]
    ids = [r.get("id") for r in normal if r.get("id")]
    dup_ids = len(ids) - len(set(ids))
    mixed = 0
    if a.endpoint == "chat" and identity_check:
        # prompt_tokens - padding is the template's and the prompt's fixed part: the same for all.
        by_base = {}
        for r in normal:
            if r.get("prompt_tokens") is not None:
                by_base.setdefault(r["prompt_tokens"] - plans[r["i"]].pad, []).append(r)
        if by_base:
            common = max(by_base, key=lambda b: len(by_base[b]))
            for base, members in by_base.items():
                if base != common:
                    mixed += len(members)
                    for r in members:
                        r["problems"].append(f"prompt_tokens {r['prompt_tokens']}: another request's")
    elif a.endpoint != "chat":
        mixed = sum(1 for r in normal if any("not this request's" in p for p in r["problems"]))
    lost = len(normal) - len(ok_normal)
    mal = [r for r in recs if r["kind"] == "malformed"]
    mal_bad = sum(1 for r in mal if r["problems"])
    dis = [r for r in recs if r["kind"] == "disconnect"]
    dis_bad = sum(1 for r in dis if r["problems"])
    tokens = sum(r.get("tokens", 0) for r in normal)
    ttft = [r["ttft_s"] for r in normal if "ttft_s" in r]
    itl = [x for r in normal for x in r.get("itl_s", [])]
    per_req_tps = [
        (r["tokens"] - 1) / sum(r["itl_s"]) for r in ok_normal if r.get("itl_s") and sum(r["itl_s"]) > 0
    ]
    statuses = {}
    for r in mal:
        statuses[f"{r.get('what')}: {r.get('status')}"] = statuses.get(f"{r.get('what')}: {r.get('status')}", 0) + 1

    def ms(x):
        return None if x is None else round(x * 1000, 2)

    summary = {
        "label": a.label,
        "base_url": a.base_url,
        "endpoint": a.endpoint,
        "clients": a.clients,
        "requests": a.requests,
        "max_tokens": a.max_tokens,
        "wall_s": round(wall, 3),
        "normal": len(normal),
        "normal_ok": len(ok_normal),
        "lost_or_incomplete": lost,
        "duplicate_ids": dup_ids,
        "mixed_up": mixed,
        "identity_check": identity_check,
        "not_run_deadline": not_run,
        "malformed": len(mal),
        "malformed_not_4xx_or_bad_body": mal_bad,
        "malformed_statuses": statuses,
        "disconnected": len(dis),
        "disconnect_problems": dis_bad,
        "requests_per_s": round(len(ok_normal) / wall, 3) if wall > 0 else None,
        "gen_tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
        "per_request_decode_tps_p50": round(statistics.median(per_req_tps), 2) if per_req_tps else None,
        "ttft_ms_p50": ms(percentile(ttft, 0.5)),
        "ttft_ms_p99": ms(percentile(ttft, 0.99)),
        "itl_ms_p50": ms(percentile(itl, 0.5)),
        "itl_ms_p99": ms(percentile(itl, 0.99)),
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "healthy_after": healthy,
        "busy_slots_after": busy,
    }
    failed = lost or dup_ids or mixed or mal_bad or not healthy or busy
    summary["verdict"] = "FAIL" if failed else "ok"
    print_table(summary)
    problems = [f"req {r['i']} ({r['kind']}): {'; '.join(r['problems'])}" for r in recs if r["problems"]]
    for p in problems[:10]:
        print("  " + p)
    if len(problems) > 10:
        print(f"  ... {len(problems) - 10} more")
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump({"summary": summary, "records": recs}, f, indent=1)
            f.write("\n")
    return 1 if failed else 0


def print_table(s):
    rows = [
        ("server", f"{s['base_url']} {s['label']}".strip()),
        ("load", f"{s['clients']} clients, {s['requests']} requests, {s['max_tokens']} tokens each, /{s['endpoint']}"),
        ("wall", f"{s['wall_s']:.2f} s"),
        ("normal ok / all", f"{s['normal_ok']} / {s['normal']}  (lost or incomplete {s['lost_or_incomplete']}, "
                            f"duplicate ids {s['duplicate_ids']}, mixed up {s['mixed_up']}, not run {s['not_run_deadline']})"),
        ("malformed", f"{s['malformed']} (not 4xx or bad body: {s['malformed_not_4xx_or_bad_body']}) {s['malformed_statuses']}"),
        ("disconnected", f"{s['disconnected']} (problems: {s['disconnect_problems']})"),
        ("requests/s", s["requests_per_s"]),
        ("gen tokens/s", s["gen_tokens_per_s"]),
        ("per-stream t/s p50", s["per_request_decode_tps_p50"]),
        ("TTFT p50 / p99", f"{s['ttft_ms_p50']} / {s['ttft_ms_p99']} ms"),
        ("ITL p50 / p99", f"{s['itl_ms_p50']} / {s['itl_ms_p99']} ms"),
        ("RSS before / after", f"{s['rss_kib_before']} / {s['rss_kib_after']} KiB"),
        ("after the run", f"healthy {s['healthy_after']}, busy slots {s['busy_slots_after']}"),
        ("verdict", s["verdict"]),
    ]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")


if __name__ == "__main__":
    sys.exit(main())
