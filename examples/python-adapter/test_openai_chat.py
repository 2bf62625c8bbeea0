"""Unit tests of the protocol code, in plain CPython: `python3 -m unittest`."""

import json
import unittest

from openai_chat import AdapterError, parse_answer, parse_config, request_body


class Config(unittest.TestCase):
    def test_base_url_and_path(self):
        s = parse_config('{"base_url": "http://127.0.0.1:8080/"}')
        self.assertEqual(s.url, "http://127.0.0.1:8080/v1/chat/completions")
        self.assertEqual(parse_config('{"base_url": "https://x", "path": "/chat"}').url, "https://x/chat")

    def test_refused(self):
        for bad in ["", "{}", '{"base_url": "ftp://x"}', '{"base_url": "http://x", "path": "v1"}', "nope"]:
            with self.assertRaises(AdapterError, msg=bad):
                parse_config(bad)


class Body(unittest.TestCase):
    def test_only_set_options_are_sent(self):
        body = json.loads(request_body("m", [{"role": "user", "content": "hi"}],
                                       {"temperature": 0.2, "top_p": None, "stop": []}))
        self.assertEqual(body, {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                "stream": False, "temperature": 0.2})


class Answer(unittest.TestCase):
    def test_reads_text_tokens_and_reason(self):
        a = parse_answer(200, json.dumps({
            "choices": [{"message": {"role": "assistant", "content": "hello"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1},
        }).encode())
        self.assertEqual((a.text, a.prompt_tokens, a.completion_tokens, a.finish_reason), ("hello", 3, 1, "length"))

    def test_errors_quote_the_server(self):
        with self.assertRaisesRegex(AdapterError, "answered 401: bad key"):
            parse_answer(401, b"bad key")
        with self.assertRaisesRegex(AdapterError, "not a chat-completions answer"):
            parse_answer(200, b'{"choices": []}')


if __name__ == "__main__":
    unittest.main()
