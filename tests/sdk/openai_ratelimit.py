"""The official `openai` Python SDK against the gateway's 429s.

Usage: python3 openai_ratelimit.py BASE_URL ADMIN_KEY
The gateway has the plan `broke` (no message credits) and the agent `priced`
(a per-request price); this script creates the workspaces and keys it needs
through the management API.
Exits non-zero (with a traceback) on the first broken expectation.
"""
import json
import sys
import urllib.request

import openai
from openai import OpenAI

base_url, admin_key = sys.argv[1], sys.argv[2]
MESSAGES = [{"role": "user", "content": "hello from the rate limit test"}]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def manage(path, body):
    """POSTs to the management API as the admin; returns the JSON answer."""
    request = urllib.request.Request(
        f"{base_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
        method="POST",
    )
    with NO_PROXY.open(request, timeout=30) as response:
        assert response.status in (200, 201), response.status
        return json.loads(response.read())


def new_key(workspace, **limits):
    return manage("/keys", {"name": f"sdk {workspace}", "workspace": workspace, "scope": "chat", **limits})["key"]


manage("/workspaces", {"id": "roomy"})
manage("/workspaces", {"id": "broke", "plan": "broke"})
rpm1_key = new_key("roomy", rpm=1)
ok_key = new_key("roomy")
broke_key = new_key("broke")


def counting_client():
    """An HTTP client that records every request the SDK sends (retries included)."""
    sent = []
    http_client = openai.DefaultHttpxClient(event_hooks={"request": [lambda request: sent.append(request.url)]})
    return http_client, sent


# (a) Over a key's requests-per-minute limit: RateLimitError, with the hints.
client = OpenAI(base_url=base_url, api_key=rpm1_key, max_retries=0)
first = client.chat.completions.create(model="priced", messages=MESSAGES)
assert first.choices[0].message.content == "hello from the rate limit test", first
try:
    client.chat.completions.create(model="priced", messages=MESSAGES)
    raise AssertionError("a second request within the minute was accepted at rpm 1")
except openai.RateLimitError as e:
    assert e.status_code == 429, e.status_code
    assert e.code == "rate_limit_exceeded", (e.code, e.body)
    headers = e.response.headers
    retry_after_ms = int(headers["retry-after-ms"])
    assert 0 < retry_after_ms <= 60_000, retry_after_ms
    assert int(headers["retry-after"]) >= 1, headers.get("retry-after")
    assert headers.get("x-should-retry") != "false", "a rate limit passes; retrying it is right"

# The counter sees what the SDK sends: one request for one successful call.
http_client, sent = counting_client()
ok = OpenAI(base_url=base_url, api_key=ok_key, max_retries=3, http_client=http_client)
ok.chat.completions.create(model="priced", messages=MESSAGES)
assert len(sent) == 1, sent

# (b) An exhausted balance: insufficient_quota, and the SDK does not retry it
# although it may (max_retries=3): x-should-retry: false is honoured.
http_client, sent = counting_client()
broke = OpenAI(base_url=base_url, api_key=broke_key, max_retries=3, http_client=http_client)
try:
    broke.chat.completions.create(model="priced", messages=MESSAGES)
    raise AssertionError("a call was accepted on an exhausted balance")
except openai.RateLimitError as e:
    assert e.status_code == 429, e.status_code
    assert e.code == "insufficient_quota", (e.code, e.body)
    assert e.type == "insufficient_quota", (e.type, e.body)
    assert e.response.headers.get("x-should-retry") == "false", dict(e.response.headers)
assert len(sent) == 1, f"the SDK sent {len(sent)} requests for a call that must not be retried: {sent}"

# The same through a stream request.
sent.clear()
try:
    broke.chat.completions.create(model="priced", messages=MESSAGES, stream=True)
    raise AssertionError("a stream was accepted on an exhausted balance")
except openai.RateLimitError as e:
    assert e.code == "insufficient_quota", (e.code, e.body)
assert len(sent) == 1, sent

print("openai sdk rate limits: all checks passed")
