"""The requests behind tests/fixtures/server/llama-server/ and what record_fixtures.py and
shape_check.py share: sending one request over loopback, SSE parsing, JSON shapes.

Two servers answer them: "main" (`-np 1 -c 2048 --metrics`) and "key" (`--api-key KEY --no-slots
-c 256`, /metrics off); see make-fixtures.sh for their exact command lines.
"""

import http.client
import json
import socket
import time
import urllib.parse

API_KEY = "sk-fixture-key"
CHAT = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT = "The capital of France is"
# "Hello world" in SmolLM2's vocabulary, as the main server's /tokenize gives it.
HELLO_WORLD_IDS = [19556, 905]
OVERSIZE_BYTES = 101 * 1024 * 1024  # over cpp-httplib's 100 MiB payload limit
LONG_PROMPT_WORDS = 2100  # "hello" repeated: more tokens than the main server's 2048 context


class Request:
    """One request: `body` is a dict (sent as JSON), str/bytes (sent as is), or None."""

    def __init__(self, name, method, path, body=None, server="main", kind="json", headers=None, note=""):
        self.name, self.method, self.path, self.body = name, method, path, body
        self.server, self.kind, self.headers, self.note = server, kind, dict(headers or {}), note

    def file_name(self):
        return self.name + {"json": ".json", "sse": ".sse.txt", "text": ".txt", "empty": ".txt"}[self.kind]

    def describe_body(self):
        """The body as index.json and the README show it (big bodies summarised)."""
        if self.name == "error_oversize_body":
            return f"<{OVERSIZE_BYTES} bytes: {{\"prompt\":\"aaaa...\"}}>"
        if self.name.startswith("error_prompt_too_long"):
            return dict(self.body, prompt=f"<'hello ' x {self.body['prompt'].count('hello')}>")
        if isinstance(self.body, bytes):
            return self.body.decode("utf-8", "replace")
        return self.body


def greedy(**kw):
    return dict(kw, temperature=0, seed=42)


REQUESTS = [
    Request("health", "GET", "/health"),
    Request("props", "GET", "/props"),
    Request("v1_models", "GET", "/v1/models"),
    Request("models", "GET", "/models"),
    Request("completion", "POST", "/completion", greedy(prompt=PROMPT, n_predict=8, n_probs=2)),
    Request("completion_tokens_prompt", "POST", "/completion", greedy(prompt=HELLO_WORLD_IDS, n_predict=4)),
    Request("completion_stream", "POST", "/completion", greedy(prompt=PROMPT, n_predict=8, stream=True), kind="sse"),
    Request("tokenize", "POST", "/tokenize", {"content": "Hello world"}),
    Request("tokenize_with_pieces", "POST", "/tokenize", {"content": "Hello world \u00e9\U0001f999", "with_pieces": True}),
    Request("tokenize_without_pieces", "POST", "/tokenize", {"content": "Hello world \u00e9\U0001f999", "with_pieces": False}),
    Request("tokenize_byte_piece_first", "POST", "/tokenize", {"content": "\U0001f999 llama", "with_pieces": True},
            note="the first piece is not valid UTF-8: a byte array"),
    Request("detokenize", "POST", "/detokenize", {"tokens": HELLO_WORLD_IDS}),
    Request("apply_template", "POST", "/apply-template", {"messages": CHAT}),
    Request("v1_completions", "POST", "/v1/completions", greedy(prompt=PROMPT, max_tokens=8)),
    Request("v1_completions_stream", "POST", "/v1/completions", greedy(prompt=PROMPT, max_tokens=8, stream=True), kind="sse"),
    Request("v1_chat_completions", "POST", "/v1/chat/completions", greedy(messages=CHAT, max_tokens=8)),
    Request(
        "v1_chat_completions_stream", "POST", "/v1/chat/completions",
        greedy(messages=CHAT, max_tokens=8, stream=True, stream_options={"include_usage": True}), kind="sse",
    ),
    Request("v1_chat_completions_stream_no_usage", "POST", "/v1/chat/completions",
            greedy(messages=CHAT, max_tokens=8, stream=True), kind="sse",
            note="without include_usage the finish_reason chunk carries `timings`"),
    # After the generations above: a used slot lists more keys than a fresh one.
    Request("slots", "GET", "/slots", note="after the generations above it (a fresh slot has fewer keys)"),
    Request("metrics", "GET", "/metrics", kind="text", note="after the generations above it"),
    Request("options_preflight", "OPTIONS", "/v1/chat/completions", kind="empty",
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}),
    # --- bad input ---
    Request("error_malformed_json", "POST", "/completion", b'{"prompt": "The capital",'),
    Request("error_malformed_json_chat", "POST", "/v1/chat/completions", b'{"messages": [}'),
    Request("error_missing_prompt", "POST", "/completion", {"n_predict": 4}),
    Request("error_missing_messages", "POST", "/v1/chat/completions", {"max_tokens": 4}),
    Request("error_wrong_type_n_predict", "POST", "/completion", {"prompt": PROMPT, "n_predict": "four"}),
    Request("error_wrong_type_messages", "POST", "/v1/chat/completions", {"messages": "hello", "max_tokens": 4}),
    Request("error_unknown_endpoint", "GET", "/no/such/endpoint"),
    Request("error_unknown_endpoint_post", "POST", "/v1/no-such-endpoint", {"prompt": PROMPT}),
    Request("error_prompt_too_long", "POST", "/completion", {"prompt": "hello " * LONG_PROMPT_WORDS, "n_predict": 4}),
    Request("error_prompt_too_long_stream", "POST", "/completion",
            {"prompt": "hello " * LONG_PROMPT_WORDS, "n_predict": 4, "stream": True},
            note="a plain JSON error, not an event stream"),
    Request("error_prompt_too_long_ctx256", "POST", "/completion", {"prompt": "hello " * 300, "n_predict": 4},
            server="key", headers={"Authorization": "Bearer " + API_KEY}),
    Request("error_token_out_of_range", "POST", "/completion", {"prompt": [999999], "n_predict": 4}),
    Request("error_token_negative", "POST", "/completion", {"prompt": [-5], "n_predict": 4}),
    Request("error_oversize_body", "POST", "/completion", None, note="streamed; the server may answer early"),
    # --- the --api-key server ---
    Request("key_health_public", "GET", "/health", server="key"),
    Request("key_models_with_bearer", "GET", "/v1/models", server="key", headers={"Authorization": "Bearer " + API_KEY}),
    Request("key_models_with_x_api_key", "GET", "/v1/models", server="key", headers={"X-Api-Key": API_KEY}),
    Request("error_key_missing", "GET", "/v1/models", server="key"),
    Request("error_key_wrong", "POST", "/completion", greedy(prompt=PROMPT, n_predict=4), server="key",
            headers={"Authorization": "Bearer sk-wrong"}),
    Request("error_metrics_off", "GET", "/metrics", server="key", headers={"Authorization": "Bearer " + API_KEY}),
    Request("error_slots_off", "GET", "/slots", server="key", headers={"Authorization": "Bearer " + API_KEY}),
]


def loopback_netloc(base_url):
    """(host, port) of BASE_URL; refuses anything but a loopback address."""
    u = urllib.parse.urlsplit(base_url)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "::1", "localhost") or not u.port:
        raise SystemExit(f"refusing {base_url!r}: only http://127.0.0.1:PORT or http://[::1]:PORT")
    return u.hostname, u.port


def send(base_url, req, timeout=120.0):
    """Send `req`; returns (status or None, [(header, value)], body bytes, error text)."""
    host, port = loopback_netloc(base_url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = dict(req.headers)
    try:
        if req.name == "error_oversize_body":
            return _send_oversize(conn, req, headers)
        body = req.body
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        conn.request(req.method, req.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read(), ""
    except (OSError, http.client.HTTPException) as e:
        return None, [], b"", f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def _send_oversize(conn, req, headers):
    prefix, suffix = b'{"prompt":"', b'"}'
    total = OVERSIZE_BYTES
    conn.putrequest(req.method, req.path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(total))
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    sent, chunk, note = 0, b"a" * (1 << 20), ""
    try:
        conn.send(prefix)
        sent = len(prefix)
        while sent < total - len(suffix):
            part = chunk[: total - len(suffix) - sent]
            conn.send(part)
            sent += len(part)
        conn.send(suffix)
    except OSError as e:  # the server answered (and closed) before taking the whole body
        note = f"server closed after {sent} bytes sent ({type(e).__name__})"
    try:
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read(), note
    except (OSError, http.client.HTTPException) as e:
        return None, [], b"", (note + "; " if note else "") + f"no response: {type(e).__name__}: {e}"


def sse_events(body):
    """The `data:` payloads of an SSE body, JSON-decoded ("[DONE]" kept as the string), and the
    set of other line kinds seen (comments, `event:` lines...)."""
    events, other = [], set()
    for block in body.decode("utf-8", "replace").split("\n\n"):
        for line in block.split("\n"):
            if not line:
                continue
            if line.startswith("data: "):
                payload = line[len("data: "):]
                if payload == "[DONE]":
                    events.append("[DONE]")
                else:
                    try:
                        events.append(json.loads(payload))
                    except ValueError:
                        events.append({"<not json>": payload[:80]})
            else:
                other.add(line.split(":", 1)[0] + ":")
    return events, other


def metric_names(body):
    """`# TYPE` declarations of a Prometheus text body: {name: type}."""
    names = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                names[parts[2]] = parts[3]
    return names


def type_name(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def compare_shapes(want, got, path, allowed, diffs):
    """Differences of key sets and value types between `want` (fixture) and `got`; lists by their
    first element. `allowed(path)` tells which paths are not compared."""
    if allowed(path):
        return
    tw, tg = type_name(want), type_name(got)
    if tw != tg:
        diffs.append(f"{path}: {tg}, fixture has {tw}")
        return
    if tw == "object":
        for k in sorted(set(want) - set(got)):
            if not allowed(f"{path}.{k}"):
                diffs.append(f"{path}.{k}: missing")
        for k in sorted(set(got) - set(want)):
            if not allowed(f"{path}.{k}"):
                diffs.append(f"{path}.{k}: extra key ({type_name(got[k])})")
        for k in sorted(set(want) & set(got)):
            compare_shapes(want[k], got[k], f"{path}.{k}", allowed, diffs)
    elif tw == "array":
        if want and got:
            compare_shapes(want[0], got[0], f"{path}[0]", allowed, diffs)
        elif bool(want) != bool(got) and not allowed(f"{path}[]"):
            diffs.append(f"{path}: {'empty' if not got else 'non-empty'} array, fixture has "
                         f"{'empty' if not want else 'non-empty'}")


def wait_healthy(base_url, seconds=120.0):
    """Poll GET /health until 200 (bounded); True when it came."""
    deadline = time.monotonic() + seconds
    probe = Request("health", "GET", "/health")
    while time.monotonic() < deadline:
        status, _, _, _ = send(base_url, probe, timeout=5.0)
        if status == 200:
            return True
        time.sleep(0.25)
    return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
