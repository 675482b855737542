#!/usr/bin/env python3
"""Drive a llama-server-compatible server with the official `openai` Python client.

usage: openai_client.py BASE_URL EXPECT_JSON

BASE_URL is the server's root (http://127.0.0.1:PORT); the client talks to BASE_URL/v1 with the key
in $OPENAI_API_KEY (or "sk-no-key"). EXPECT_JSON holds the greedy texts the server must produce
(tests/fixtures/server/expected-smollm2-f16.json); a value that is absent there is not compared,
only the shape of the answer is checked.

Checks, in order:
  1. models.list() lists exactly one model;
  2. chat completion, greedy (temperature 0, seed 42, max_tokens 16), not streamed;
  3. the same, streamed with stream_options.include_usage: the deltas concatenate to (2)'s content,
     same finish_reason, a final usage chunk whose totals equal (2)'s;
  4. text completion (completions.create), greedy, and the same streamed;
  5. a chat request without `messages` raises openai.BadRequestError (HTTP 400).

Exit 0 when every check passes; otherwise one line "FAIL: reason" on stderr and exit 1
(2 for bad usage or a missing `openai` module).
"""

import json
import os
import sys

# The fixed requests. The fixture file names the same ones; a mismatch means the fixture is stale.
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
COMPLETION_PROMPT = "The capital of France is"
MAX_TOKENS = 16
SEED = 42


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed(what)


def expect_equal(got, want, what):
    """Compare with the expected value when the fixture has one (want is None: shape only)."""
    if want is not None and got != want:
        raise CheckFailed(f"{what}: got {got!r}, expected {want!r}")


def check_usage(usage, what, want):
    check(usage is not None, f"{what}: no usage")
    for field in ("prompt_tokens", "completion_tokens", "total_tokens"):
        check(isinstance(getattr(usage, field, None), int), f"{what}: usage.{field} is not an integer")
    check(
        usage.total_tokens == usage.prompt_tokens + usage.completion_tokens,
        f"{what}: usage.total_tokens {usage.total_tokens} != prompt {usage.prompt_tokens} + completion "
        f"{usage.completion_tokens}",
    )
    check(usage.completion_tokens <= MAX_TOKENS, f"{what}: {usage.completion_tokens} tokens > max_tokens")
    expect_equal(usage.prompt_tokens, want.get("prompt_tokens"), f"{what}: usage.prompt_tokens")
    expect_equal(usage.completion_tokens, want.get("completion_tokens"), f"{what}: usage.completion_tokens")


def run(client, openai, expected):
    # 1. models
    models = client.models.list()
    ids = [m.id for m in models.data]
    check(len(ids) == 1, f"models.list(): {len(ids)} models, expected 1")
    check(isinstance(ids[0], str) and ids[0], "models.list(): the model id is empty")
    model = ids[0]

    # 2. chat, not streamed
    want = expected.get("chat", {})
    if "messages" in want:
        check(want["messages"] == CHAT_MESSAGES, "fixture: chat.messages differ from this script's")
    greedy = dict(model=model, temperature=0, seed=SEED, max_tokens=MAX_TOKENS)
    chat = client.chat.completions.create(messages=CHAT_MESSAGES, **greedy)
    check(chat.object == "chat.completion", f"chat: object is {chat.object!r}")
    check(isinstance(chat.id, str) and chat.id, "chat: no id")
    check(len(chat.choices) == 1, f"chat: {len(chat.choices)} choices")
    choice = chat.choices[0]
    check(choice.index == 0, "chat: choices[0].index != 0")
    check(choice.message.role == "assistant", f"chat: role {choice.message.role!r}")
    content = choice.message.content
    check(isinstance(content, str) and content, "chat: empty content")
    check(choice.finish_reason in ("stop", "length"), f"chat: finish_reason {choice.finish_reason!r}")
    expect_equal(content, want.get("content"), "chat: content")
    expect_equal(choice.finish_reason, want.get("finish_reason"), "chat: finish_reason")
    check_usage(chat.usage, "chat", want)

    # 3. chat, streamed with a usage chunk
    parts, finish, usage, n_usage, ids_seen = [], None, None, 0, set()
    stream = client.chat.completions.create(
        messages=CHAT_MESSAGES, stream=True, stream_options={"include_usage": True}, **greedy
    )
    for chunk in stream:
        check(chunk.object == "chat.completion.chunk", f"chat stream: object {chunk.object!r}")
        ids_seen.add(chunk.id)
        if chunk.usage is not None:
            usage, n_usage = chunk.usage, n_usage + 1
        for c in chunk.choices:
            check(c.index == 0, "chat stream: choice index != 0")
            check(finish is None, "chat stream: a delta after finish_reason")
            if c.delta.content:
                parts.append(c.delta.content)
            if c.finish_reason is not None:
                finish = c.finish_reason
    check(len(ids_seen) == 1, f"chat stream: {len(ids_seen)} distinct chunk ids")
    check(n_usage == 1, f"chat stream: {n_usage} chunks with usage, expected 1")
    streamed = "".join(parts)
    check(streamed == content, f"chat stream: deltas give {streamed!r}, not streamed gave {content!r}")
    check(finish == choice.finish_reason, f"chat stream: finish_reason {finish!r} != {choice.finish_reason!r}")
    check_usage(usage, "chat stream", want)
    check(
        (usage.prompt_tokens, usage.completion_tokens)
        == (chat.usage.prompt_tokens, chat.usage.completion_tokens),
        "chat stream: usage differs from the non-streamed answer's",
    )

    # 4. text completion, then the same streamed
    want = expected.get("completion", {})
    if "prompt" in want:
        check(want["prompt"] == COMPLETION_PROMPT, "fixture: completion.prompt differs from this script's")
    cmpl = client.completions.create(prompt=COMPLETION_PROMPT, **greedy)
    check(cmpl.object == "text_completion", f"completion: object is {cmpl.object!r}")
    check(len(cmpl.choices) == 1, f"completion: {len(cmpl.choices)} choices")
    text = cmpl.choices[0].text
    check(isinstance(text, str) and text, "completion: empty text")
    check(cmpl.choices[0].finish_reason in ("stop", "length"), "completion: bad finish_reason")
    expect_equal(text, want.get("text"), "completion: text")
    expect_equal(cmpl.choices[0].finish_reason, want.get("finish_reason"), "completion: finish_reason")
    check_usage(cmpl.usage, "completion", want)
    parts, finish = [], None
    for chunk in client.completions.create(prompt=COMPLETION_PROMPT, stream=True, **greedy):
        for c in chunk.choices:
            parts.append(c.text or "")
            if c.finish_reason is not None:
                finish = c.finish_reason
    check("".join(parts) == text, f"completion stream: {''.join(parts)!r} != {text!r}")
    check(finish == cmpl.choices[0].finish_reason, f"completion stream: finish_reason {finish!r}")

    # 5. a bad request: `messages` missing (sent raw, since create() insists on it)
    try:
        client.post("/chat/completions", body={"model": model, "max_tokens": 4}, cast_to=object)
    except openai.BadRequestError as e:
        check(e.status_code == 400, f"bad request: status {e.status_code}")
        body = e.body if isinstance(e.body, dict) else {}
        # The client hands over the "error" object itself when the body has one.
        err = body.get("error", body)
        check(isinstance(err.get("message"), str) and err["message"], f"bad request: no message in {e.body!r}")
    else:
        raise CheckFailed("bad request: a chat request without messages did not raise BadRequestError")
    return model, content, text


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    base_url, expect_path = sys.argv[1].rstrip("/"), sys.argv[2]
    try:
        import openai
    except ImportError:
        print("FAIL: the openai module is not installed (python3 -m pip install openai)", file=sys.stderr)
        return 2
    try:
        with open(expect_path, encoding="utf-8") as f:
            expected = json.load(f)
    except (OSError, ValueError) as e:
        print(f"FAIL: cannot read {expect_path}: {e}", file=sys.stderr)
        return 2
    client = openai.OpenAI(
        base_url=base_url + "/v1",
        api_key=os.environ.get("OPENAI_API_KEY") or "sk-no-key",
        max_retries=0,
        timeout=120.0,
    )
    try:
        model, chat, text = run(client, openai, expected)
    except CheckFailed as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except openai.APIError as e:
        print(f"FAIL: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"ok: model {model!r}; chat {chat!r}; completion {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
