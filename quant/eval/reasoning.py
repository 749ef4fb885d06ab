"""Reasoning models: strip `<think>…</think>` before scoring, and keep every raw output for an audit.

lm-evaluation-harness scores what the server returns. A reasoning model (DeepSeek-R1 and its
distills) writes its thoughts first, and a number in the thoughts must not count as the answer.
The relay below sits between lm_eval and llama-server on loopback (the same idea as an evaluation
"reasoning adapter"): it forwards each request unchanged, removes the thinking from every choice of
the answer, and appends one JSON line per request with the prompt, the raw text and what was scored.
llama-server runs with `--reasoning-format none`, so the thoughts reach the relay whatever the chat
template does, and the audit file holds them.
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from quant.eval.server import Endpoint

OPEN, CLOSE = "<think>", "</think>"


def strip_thinking(text: str) -> tuple[str, str]:
    """(answer, thinking) of one generated text.

    R1's chat template opens `<think>` in the prompt, so the output may carry only the closing tag:
    everything before the last `</think>` is thinking. An opened block never closed (the model ran out
    of tokens mid-thought) is all thinking: the answer is what came before it, usually nothing.
    """
    if CLOSE in text:
        thinking, _, answer = text.rpartition(CLOSE)
        before, found, inside = thinking.partition(OPEN)
        return answer.lstrip(), (inside if found else before).strip()
    if OPEN in text:
        before, _, thinking = text.partition(OPEN)
        return before.strip(), thinking.strip()
    return text, ""


def _strip_choices(body: dict) -> list[dict]:
    """Strip every choice of an OpenAI completion or chat completion in place; the audit records."""
    audit = []
    for choice in body.get("choices") or []:
        message = choice.get("message")
        raw = (message or {}).get("content") if message is not None else choice.get("text")
        if not isinstance(raw, str):
            continue
        answer, thinking = strip_thinking(raw)
        if message is not None:
            message["content"] = answer
        else:
            choice["text"] = answer
        audit.append({"raw": raw, "scored": answer, "thinking_chars": len(thinking),
                      "finish_reason": choice.get("finish_reason")})
    return audit


def _request_summary(request: dict) -> dict:
    keep = ("prompt", "messages", "temperature", "top_p", "top_k", "max_tokens", "seed", "stop")
    return {k: request[k] for k in keep if k in request}


class _Relay(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, audit_path: Path, strip: bool):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream.rstrip("/")
        self.audit_path = audit_path
        self.strip = strip
        self.lock = threading.Lock()
        self.count = 0


class _Handler(BaseHTTPRequestHandler):
    server: _Relay
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # the audit file is the log
        pass

    def _forward(self, body: "bytes | None") -> None:
        request = urllib.request.Request(self.server.upstream + self.path, data=body, method=self.command,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=24 * 3600) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            status, payload = 502, json.dumps({"error": {"message": f"relay: upstream unreachable: {exc}"}}).encode()
        if body is not None and status == 200:
            payload = self._rewrite(body, payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _rewrite(self, request_bytes: bytes, payload: bytes) -> bytes:
        try:
            request, answer = json.loads(request_bytes), json.loads(payload)
        except ValueError:
            return payload
        audit = _strip_choices(answer) if self.server.strip else [
            {"raw": c.get("text", (c.get("message") or {}).get("content")), "finish_reason": c.get("finish_reason")}
            for c in answer.get("choices") or []]
        line = json.dumps({"time": time.time(), "path": self.path, "request": _request_summary(request),
                           "choices": audit, "usage": answer.get("usage")}, ensure_ascii=False)
        with self.server.lock:
            self.server.count += 1
            with open(self.server.audit_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        return json.dumps(answer).encode()

    def do_GET(self) -> None:
        self._forward(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._forward(self.rfile.read(length))


@contextlib.contextmanager
def relay(upstream: Endpoint, audit_path: "str | Path", strip: bool = True) -> Iterator[Endpoint]:
    """An endpoint in front of `upstream` that strips thinking (when `strip`) and logs every output."""
    origin = upstream.base_url[:-len("/v1")] if upstream.base_url.endswith("/v1") else upstream.base_url
    server = _Relay(origin, Path(audit_path), strip)
    thread = threading.Thread(target=server.serve_forever, name="dsq-reasoning-relay", daemon=True)
    thread.start()
    try:
        suffix = "/v1" if upstream.base_url.endswith("/v1") else ""
        yield Endpoint(base_url=f"http://127.0.0.1:{server.server_address[1]}{suffix}", model=upstream.model)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
