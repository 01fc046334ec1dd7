"""The `openai` Python SDK over TLS, trusting a test CA (SSL_CERT_FILE).

Usage: SSL_CERT_FILE=ca.pem python3 openai_tls.py BASE_URL API_KEY
"""
import sys

from openai import OpenAI

base_url, api_key = sys.argv[1], sys.argv[2]
assert base_url.startswith("https://"), base_url
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
reply = client.chat.completions.create(model="helper", messages=[{"role": "user", "content": "over tls"}])
assert reply.model == "helper", reply.model
chunks = list(
    client.chat.completions.create(model="helper", stream=True, messages=[{"role": "user", "content": "a b c"}])
)
assert chunks and all(c.model == "helper" for c in chunks)
print("ok")
