"""The OpenAI chat-completions protocol: the request body an adapter sends
and what it reads from the answer. Pure functions, so they are tested in
plain CPython (test_openai_chat.py); app.py does the I/O through the host.
"""

import json
from dataclasses import dataclass


class AdapterError(Exception):
    """Why a completion could not be produced (shown in the test's error)."""


@dataclass(frozen=True)
class Settings:
    base_url: str
    path: str = "/v1/chat/completions"

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + self.path


def parse_config(config_json: str) -> Settings:
    """The adapter's `config` (from its manifest): `base_url`, and `path`
    for servers that mount the API elsewhere."""
    try:
        config = json.loads(config_json or "{}")
    except json.JSONDecodeError as e:
        raise AdapterError(f"config is not JSON: {e}")
    base_url = config.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise AdapterError("config needs `base_url`, an http(s) URL")
    path = config.get("path", "/v1/chat/completions")
    if not isinstance(path, str) or not path.startswith("/"):
        raise AdapterError("`path` must start with /")
    return Settings(base_url, path)


def request_body(model: str, messages: list[dict], options: dict) -> bytes:
    """`messages`: [{role, content}]; `options`: the generation options
    that are set (None values are left out, so the server's defaults hold)."""
    body = {"model": model, "messages": messages, "stream": False}
    for ours, theirs in [("temperature", "temperature"), ("top_p", "top_p"),
                         ("max_tokens", "max_tokens"), ("seed", "seed")]:
        if options.get(ours) is not None:
            body[theirs] = options[ours]
    if options.get("stop"):
        body["stop"] = options["stop"]
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str


def parse_answer(status: int, body: bytes) -> Answer:
    """Reads a chat-completions answer; an error status or a malformed body
    is an AdapterError quoting the server (shortened)."""
    text = body.decode("utf-8", errors="replace")
    if status != 200:
        raise AdapterError(f"server answered {status}: {text[:300]}")
    try:
        answer = json.loads(text)
        choice = answer["choices"][0]
        content = choice["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as e:
        raise AdapterError(f"not a chat-completions answer ({type(e).__name__}: {e}): {text[:300]}")
    if not isinstance(content, str):
        raise AdapterError("the answer's message has no text content")
    usage = answer.get("usage") or {}
    return Answer(
        text=content,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        finish_reason=choice.get("finish_reason") or "stop",
    )
