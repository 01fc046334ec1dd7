"""Parses a /metrics scrape (stdin) with the Prometheus client's own text
parser and prints {"family": {"type": ..., "samples": [[name, labels, value]]}}
as JSON, so tests/metrics.rs checks what Prometheus itself would read."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    out[family.name] = {
        "type": family.type,
        "samples": [[s.name, s.labels, s.value] for s in family.samples],
    }
json.dump(out, sys.stdout)
