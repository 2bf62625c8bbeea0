"""The cardrun plugin: the `model-adapter` world of wit/cardrun.wit, over
`openai_chat.py`. Its only way out is the host's `http` capability: the
host checks each request against the manifest's allowed hosts, adds secret
headers (an API key) that this code never sees, and retries."""

from componentize_py_types import Err
import wit_world
from wit_world.imports import http
from wit_world.imports.types import (
    CompletionRequest, CompletionResponse, Prompt_Chat, Prompt_Text, TokenUsage,
)

from openai_chat import AdapterError, parse_answer, parse_config, request_body


def _messages(prompt) -> list[dict]:
    if isinstance(prompt, Prompt_Chat):
        return [{"role": m.role, "content": m.content} for m in prompt.value]
    assert isinstance(prompt, Prompt_Text)
    return [{"role": "user", "content": prompt.value}]


def _send(url: str, body: bytes) -> http.Response:
    request = http.Request(method="POST", url=url, headers=[("content-type", "application/json")], body=body)
    try:
        return http.send(request)
    except Err as e:
        raise Err(f"request to {url} failed: {e.value}")


class WitWorld(wit_world.WitWorld):
    def complete(self, request: CompletionRequest) -> CompletionResponse:
        try:
            settings = parse_config(request.config)
            o = request.options
            body = request_body(request.model, _messages(request.prompt), {
                "temperature": o.temperature, "top_p": o.top_p, "max_tokens": o.max_tokens,
                "seed": o.seed, "stop": list(o.stop),
            })
            response = _send(settings.url, body)
            answer = parse_answer(response.status, response.body)
        except AdapterError as e:
            raise Err(str(e))
        tokens = None
        if answer.prompt_tokens is not None and answer.completion_tokens is not None:
            tokens = TokenUsage(prompt=answer.prompt_tokens, completion=answer.completion_tokens)
        return CompletionResponse(text=answer.text, tokens=tokens, finish_reason=answer.finish_reason)

    def warm(self, model: str, config: str) -> None:
        # Chat-completions servers load models on their own; checking the
        # configuration is all a warm-up can usefully do here.
        try:
            parse_config(config)
        except AdapterError as e:
            raise Err(str(e))
