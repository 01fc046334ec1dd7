"""Drives the gateway with the official `openai` Python SDK.

Usage: python3 openai_sdk.py BASE_URL API_KEY
Exits non-zero (with a traceback) on the first broken expectation.
"""
import sys

import openai
from openai import OpenAI

base_url, api_key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

# Non-stream chat on the demo agent: the model field says what we asked for.
reply = client.chat.completions.create(
    model="demo", messages=[{"role": "user", "content": "hello from the sdk"}]
)
assert reply.model == "demo", reply.model
assert reply.choices[0].message.content == "hello from the sdk", reply.choices[0].message.content
assert reply.usage is not None and reply.usage.completion_tokens == 4, reply.usage

# Stream: every chunk says "demo"; no usage chunk unless asked.
chunks = list(
    client.chat.completions.create(
        model="demo", stream=True, messages=[{"role": "user", "content": "one two three four five"}]
    )
)
assert all(c.model == "demo" for c in chunks)
assert all(c.usage is None for c in chunks)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
assert text == "one two three four five", text

# Stream with include_usage: the last chunk carries usage and no choices.
chunks = list(
    client.chat.completions.create(
        model="demo",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "count me"}],
    )
)
assert chunks[-1].usage is not None and chunks[-1].choices == [], chunks[-1]
assert chunks[-1].usage.completion_tokens == 2

# Legacy completions and embeddings through a model alias.
completion = client.completions.create(model="mock-mini", prompt="legacy prompt")
assert completion.model == "mock-mini" and completion.choices[0].text == "legacy prompt"
embedding = client.embeddings.create(model="mock-mini", input=["a", "b"])
assert len(embedding.data) == 2 and embedding.model == "mock-mini"

# Models list and retrieve.
ids = [m.id for m in client.models.list()]
assert "demo" in ids and "mock-mini" in ids, ids
assert client.models.retrieve("demo").id == "demo"

# Errors map onto the SDK's exception types.
try:
    client.chat.completions.create(model="no-such-agent", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert e.code == "model_not_found", e.code

try:
    OpenAI(base_url=base_url, api_key="wrong", max_retries=0).models.list()
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError as e:
    assert e.code == "invalid_api_key", e.code

try:
    client.chat.completions.create(model="demo", messages="not a list")
    raise AssertionError("bad messages accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400

print("openai sdk: all checks passed")
