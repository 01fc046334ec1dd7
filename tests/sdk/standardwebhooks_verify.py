"""Verifies webhook deliveries with the official `standardwebhooks` library.

Why: tollgate's signatures must verify with the stock receiver-side library,
not only with our own Rust check (tests/support/receiver.rs), which could share
a misreading of the spec with the gateway.

Usage: python3 standardwebhooks_verify.py < deliveries.jsonl
Each input line is a JSON object
    {"secret": "whsec_...", "headers": {"webhook-id": ..., ...}, "body": "<raw body>"}
and yields one output line, in order: `ok <webhook-id>` or `fail <reason>`.
Blank lines are skipped. Exits 1 if any line failed, else 0.
Note: the library refuses timestamps more than 5 minutes away from now.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook


def verify(line: str) -> str:
    try:
        item = json.loads(line)
        secret, headers, body = item["secret"], item["headers"], item["body"]
    except Exception as e:  # a malformed input line is a failure, not a crash
        return f"fail bad input line: {type(e).__name__}: {e}"
    try:
        # Also parses the body as JSON, as a receiver would: tollgate's bodies are JSON.
        Webhook(secret).verify(body, headers)
    except Exception as e:
        return f"fail {type(e).__name__}: {e}"
    lowered = {k.lower(): v for k, v in headers.items()}
    return f"ok {lowered.get('webhook-id')}"


def main() -> int:
    failed = False
    for line in sys.stdin:
        if not line.strip():
            continue
        result = verify(line)
        failed |= result.startswith("fail")
        print(result, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
