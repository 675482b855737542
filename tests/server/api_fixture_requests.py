"""The requests behind tests/fixtures/server/llama-server/apis/: Anthropic's Messages API, OpenAI's
Responses API and the input-token counters, as llama-server answers them. All go to one server
started like make-fixtures.sh's "main" one (see make-api-fixtures.sh). Sending, SSE parsing and
shape comparison are fixture_requests.py's.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_requests import CHAT, Request  # noqa: E402

QUESTION = CHAT[0]["content"]
# A system prompt as Anthropic text blocks, and a Responses conversation as input items.
SYSTEM_BLOCKS = [{"type": "text", "text": "You are a helpful assistant. "}, {"type": "text", "text": "Answer briefly."}]
ITEMS = [
    {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello! How can I help?"}]},
    {"role": "user", "content": QUESTION},
]


def anthropic(**kw):
    return dict({"model": "smollm2", "max_tokens": 16, "temperature": 0, "messages": CHAT}, **kw)


def responses(**kw):
    return dict({"model": "smollm2", "max_output_tokens": 16, "temperature": 0, "input": QUESTION}, **kw)


REQUESTS = [
    Request("messages", "POST", "/v1/messages", anthropic()),
    Request("messages_stream", "POST", "/v1/messages", anthropic(stream=True), kind="sse"),
    Request("messages_max_tokens", "POST", "/v1/messages", anthropic(max_tokens=3, system=SYSTEM_BLOCKS),
            note="stop_reason max_tokens; system as text blocks"),
    Request("messages_stop_sequence", "POST", "/v1/messages", anthropic(stop_sequences=["Paris"], system="Be brief."),
            note="stop_reason end_turn with the stop_sequence"),
    Request("messages_stop_sequence_stream", "POST", "/v1/messages",
            anthropic(stop_sequences=["Paris"], stream=True), kind="sse"),
    Request("messages_content_blocks", "POST", "/v1/messages",
            anthropic(messages=[{"role": "user", "content": [{"type": "text", "text": QUESTION}]}])),
    Request("messages_count_tokens", "POST", "/v1/messages/count_tokens", {"model": "smollm2", "messages": CHAT}),
    Request("messages_count_tokens_system", "POST", "/v1/messages/count_tokens",
            {"model": "smollm2", "messages": CHAT, "system": SYSTEM_BLOCKS}),
    Request("chat_input_tokens", "POST", "/v1/chat/completions/input_tokens", {"messages": CHAT}),
    Request("responses", "POST", "/v1/responses", responses()),
    Request("responses_stream", "POST", "/v1/responses", responses(stream=True), kind="sse"),
    Request("responses_items", "POST", "/v1/responses",
            responses(input=ITEMS, instructions="Answer briefly.", max_output_tokens=4),
            note="input as a list of items (user, assistant message, user) with instructions"),
    Request("responses_input_tokens", "POST", "/v1/responses/input_tokens", {"input": QUESTION}),
    Request("responses_input_tokens_items", "POST", "/v1/responses/input_tokens",
            {"input": ITEMS, "instructions": "Answer briefly."}),
    # --- bad input ---
    Request("error_messages_missing_messages", "POST", "/v1/messages", {"model": "smollm2", "max_tokens": 4},
            note="llama-server answers 500 server_error here (its converter throws a runtime_error)"),
    Request("error_messages_wrong_type_content", "POST", "/v1/messages",
            anthropic(messages=[{"role": "user", "content": 5}])),
    Request("error_messages_wrong_type_temperature", "POST", "/v1/messages", anthropic(temperature="hot")),
    Request("error_messages_wrong_type_temperature_stream", "POST", "/v1/messages",
            anthropic(temperature="hot", stream=True), note="a plain JSON error, not an event stream"),
    Request("error_messages_malformed_json", "POST", "/v1/messages", b'{"messages": [}'),
    Request("error_count_tokens_missing_messages", "POST", "/v1/messages/count_tokens", {"model": "smollm2"}),
    Request("error_responses_missing_input", "POST", "/v1/responses", {"max_output_tokens": 4}),
    Request("error_responses_wrong_type_input", "POST", "/v1/responses", {"input": 5}),
    Request("error_responses_bad_item", "POST", "/v1/responses", {"input": [{"foo": 1}]}),
    Request("error_responses_bad_part", "POST", "/v1/responses",
            {"input": [{"role": "user", "content": [{"type": "bogus"}]}]}),
    Request("error_responses_previous_response_id", "POST", "/v1/responses",
            {"input": "Hi", "previous_response_id": "resp_1"}),
    Request("error_responses_wrong_type_max_output_tokens", "POST", "/v1/responses", responses(max_output_tokens="x")),
    Request("error_input_tokens_missing_input", "POST", "/v1/responses/input_tokens", {}),
    Request("error_chat_input_tokens_missing_messages", "POST", "/v1/chat/completions/input_tokens", {}),
]
