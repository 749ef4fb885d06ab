"""<think>…</think> is stripped before scoring and every raw output is kept (quant/eval/reasoning.py)."""
from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from quant.eval.reasoning import relay, strip_thinking
from quant.eval.server import Endpoint


@pytest.mark.parametrize("text, answer, thinking", [
    ("<think>2+2 is 4, or is it 5?</think>\n\nThe answer is 4.", "The answer is 4.", "2+2 is 4, or is it 5?"),
    # R1's template opens <think> in the prompt: the output holds only the closing tag
    ("Let me count: 5, no 4.\n</think>\n\n**4**", "**4**", "Let me count: 5, no 4."),
    # ran out of tokens mid-thought: nothing to score, not the number in the thoughts
    ("<think>maybe 5", "", "maybe 5"),
    ("Paris", "Paris", ""),
    # a model quoting the tag inside its thoughts: the last closing tag ends them
    ("<think>the tag </think> is text</think>B", "B", "the tag </think> is text"),
])
def test_strip_thinking_scores_only_what_follows_the_thoughts(text, answer, thinking):
    assert strip_thinking(text) == (answer, thinking)


class ReasoningModelStandIn(BaseHTTPRequestHandler):
    """Answers like R1 does, thoughts first (no reasoning model runs on this machine's 2 cores)."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        raw = "<think>5? No: 2+2=4.</think>\n4"
        choice = ({"index": 0, "message": {"role": "assistant", "content": raw}, "finish_reason": "stop"}
                  if "messages" in request else {"index": 0, "text": raw, "finish_reason": "stop"})
        body = json.dumps({"choices": [choice], "usage": {"completion_tokens": 12}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ReasoningModelStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Endpoint(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="r1")
    server.shutdown()
    server.server_close()


def post(url: str, payload: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_the_relay_strips_chat_and_completion_answers_and_keeps_the_raw_text(upstream, tmp_path):
    audit = tmp_path / "outputs.jsonl"
    with relay(upstream, audit) as endpoint:
        chat = post(endpoint.chat_completions_url, {"messages": [{"role": "user", "content": "2+2?"}],
                                                     "temperature": 0.6, "seed": 7})
        text = post(endpoint.completions_url, {"prompt": "2+2=", "max_tokens": 32})

    assert chat["choices"][0]["message"]["content"] == "4" and text["choices"][0]["text"] == "4"
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["path"] for line in lines] == ["/v1/chat/completions", "/v1/completions"]
    assert lines[0]["request"] == {"messages": [{"role": "user", "content": "2+2?"}], "temperature": 0.6, "seed": 7}
    assert lines[0]["choices"] == [{"raw": "<think>5? No: 2+2=4.</think>\n4", "scored": "4",
                                    "thinking_chars": len("5? No: 2+2=4."), "finish_reason": "stop"}]
    assert lines[1]["request"] == {"prompt": "2+2=", "max_tokens": 32}


def test_without_stripping_the_answer_passes_unchanged_and_is_still_logged(upstream, tmp_path):
    with relay(upstream, tmp_path / "outputs.jsonl", strip=False) as endpoint:
        text = post(endpoint.completions_url, {"prompt": "2+2="})
    assert text["choices"][0]["text"].startswith("<think>")
    (line,) = [json.loads(s) for s in (tmp_path / "outputs.jsonl").read_text().splitlines()]
    assert line["choices"][0]["raw"] == text["choices"][0]["text"]
