"""Seed 000's workspace sessions read with the official `openai` Python SDK's
own stream reader (`openai.Stream[ChatCompletionChunk]`), and with curl.

Usage: python3 openai_sessions.py BASE_URL ADMIN_KEY
Creates a workspace and a key through the management API, then talks to one
session through the SDK and through `curl -N`, and reads it back.
Exits non-zero (with a traceback) on the first broken expectation.
"""
import json
import subprocess
import sys
import urllib.request

import openai
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

base_url, admin_key = sys.argv[1], sys.argv[2]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(method, path, key, body=None):
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method=method,
    )
    with NO_PROXY.open(request, timeout=30) as response:
        return json.loads(response.read())


call("POST", "/workspaces", admin_key, {"id": "sdk-sessions"})
key = call("POST", "/keys", admin_key, {"name": "sdk", "workspace": "sdk-sessions", "scope": "chat"})["key"]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0)
path = "/workspaces/sdk-sessions/sessions/py-1/messages"

# Streamed (the default): the SDK's own SSE reader, chunk by chunk.
stream = client.post(
    path,
    body={"content": "hello session", "agent": "echo"},
    cast_to=ChatCompletionChunk,
    stream=True,
    stream_cls=openai.Stream[ChatCompletionChunk],
)
text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
assert text == "hello session", text

# Whole, as a chat.completion the SDK parses.
whole = client.post(path, body={"content": "second", "stream": False}, cast_to=ChatCompletion)
assert whole.choices[0].message.content == "second", whole
assert whole.model == "echo", whole.model

# curl, as the seed's example sends it (on its own path), unbuffered.
curl = subprocess.run(
    ["curl", "-sS", "-N", "--noproxy", "*", "-X", "POST",
     f"{base_url.removesuffix('/v1')}/api/v1/workspaces/sdk-sessions/session/py-1/messages",
     "-H", "Content-Type: application/json", "-H", f"Authorization: Bearer {key}",
     "-d", json.dumps({"content": "from curl"})],
    capture_output=True, text=True, timeout=60, check=True,
)
events = [e for e in curl.stdout.split("\n\n") if e.strip()]
assert events[-1] == "data: [DONE]", curl.stdout
said = "".join(
    (json.loads(e[len("data: "):])["choices"] or [{"delta": {}}])[0]["delta"].get("content") or ""
    for e in events[:-1]
)
assert said == "from curl", curl.stdout

session = call("GET", "/workspaces/sdk-sessions/sessions/py-1", key)
assert [m["content"] for m in session["messages"] if m["role"] == "user"] == ["hello session", "second", "from curl"]
print("openai sdk sessions: all checks passed")
