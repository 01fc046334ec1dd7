"""The openai Python SDK against the Responses translation's output.

Run by tests/responses/sdk.rs with the directory it wrote: cases.json (what
each response says) and, per case, the Response JSON or the event stream. A
local HTTP server plays the gateway, answering each request with the case its
`model` names and recording the request body in requests/ (the Rust test
translates those afterwards).

Per case: the raw JSON and every event validate strictly against the SDK's
models (`Response`, the `ResponseStreamEvent` union); the SDK's own parsing
(`responses.create`, and the `responses.stream` helper, which checks every
event against the items it accumulated) yields what the manifest says; a
failed stream raises `APIError`. A follow-up request replays the output as
input, as an agent loop does.
"""

import http.server
import json
import pathlib
import sys
import threading

from openai import APIError, OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

out = pathlib.Path(sys.argv[1])
cases = {case["name"]: case for case in json.loads((out / "cases.json").read_text())}
requests_dir = out / "requests"

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


class Gateway(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        count = len(list(requests_dir.iterdir()))
        (requests_dir / f"python-{count:02}.json").write_bytes(body)
        request = json.loads(body)
        case = cases[request["model"]]
        if bool(request.get("stream")) != (case["kind"] == "sse"):
            self.send_error(400, f"{request['model']} is a {case['kind']} case")
            return
        payload = (out / case["file"]).read_bytes()
        self.send_response(200)
        kind = "text/event-stream" if case["kind"] == "sse" else "application/json"
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def expect(what, actual, wanted):
    if actual != wanted:
        raise AssertionError(f"{what}: got {actual!r}, expected {wanted!r}")


def check_response(name, response, case):
    """The SDK's view of a Response against the manifest."""
    expect(f"{name} id", response.id, case["response_id"])
    expect(f"{name} status", response.status, case["status"])
    expect(f"{name} output_text", response.output_text, case["text"])
    refusals = [
        part.refusal
        for item in response.output
        if item.type == "message"
        for part in item.content
        if part.type == "refusal"
    ]
    expect(f"{name} refusal", "".join(refusals), case["refusal"])
    calls = [
        {"call_id": item.call_id, "name": item.name, "arguments": item.arguments}
        for item in response.output
        if item.type == "function_call"
    ]
    expect(f"{name} tool calls", calls, case["tool_calls"])
    reason = response.incomplete_details.reason if response.incomplete_details else None
    expect(f"{name} incomplete reason", reason, case["incomplete_reason"])
    usage = case["usage"]
    if usage is None:
        expect(f"{name} usage", response.usage, None)
    else:
        expect(f"{name} usage", (response.usage.input_tokens, response.usage.output_tokens),
               (usage["input_tokens"], usage["output_tokens"]))


def strict_events(name, case):
    """Every event of the recorded stream, validated as the SDK's models."""
    adapter = TypeAdapter(ResponseStreamEvent)
    events = []
    text = (out / case["file"]).read_text()
    blocks = [block for block in text.split("\n\n") if block]
    expect(f"{name} terminator", blocks[-1], "data: [DONE]")
    for number, block in enumerate(blocks[:-1]):
        event_line, data_line = block.split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        expect(f"{name} event name", event_line.removeprefix("event: "), data["type"])
        expect(f"{name} sequence number", data["sequence_number"], number)
        events.append(adapter.validate_python(data, strict=True))
    return events


def tools_for(case):
    return TOOLS if case["tool_calls"] else []


def follow_up(client, name, case, output):
    """A next turn replaying the output as input (tool results for calls)."""
    replies = [
        {"type": "function_call_output", "call_id": call["call_id"], "output": "18°C, clear"}
        for call in case["tool_calls"]
    ] or [{"role": "user", "content": "Thanks, and then?"}]
    history = [{"role": "user", "content": "hi"}, *output, *replies]
    stream = case["kind"] == "sse"
    answer = client.responses.create(model=name, input=history, tools=tools_for(case), stream=stream)
    if stream:
        list(answer)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = OpenAI(base_url=f"http://127.0.0.1:{server.server_port}/v1", api_key="test", max_retries=0)
    for name, case in cases.items():
        if case["kind"] == "json":
            Response.model_validate(json.loads((out / case["file"]).read_text()), strict=True)
            response = client.responses.create(model=name, input="hi", tools=tools_for(case))
            check_response(name, response, case)
            follow_up(client, name, case, response.output)
            continue
        events = strict_events(name, case)
        if case["status"] == "failed":
            expect(f"{name} events", [e.type for e in events[-2:]], ["error", "response.failed"])
            for stream in (client.responses.create(model=name, input="hi", stream=True),
                           client.responses.stream(model=name, input="hi").__enter__()):
                try:
                    list(stream)
                    raise AssertionError(f"{name}: a failed stream must raise")
                except APIError as error:
                    expect(f"{name} error", error.message, case["error"]["message"])
            continue
        raw = list(client.responses.create(model=name, input="hi", stream=True, tools=tools_for(case)))
        expect(f"{name} raw events", [e.type for e in raw], [e.type for e in events])
        check_response(name, events[-1].response, case)
        with client.responses.stream(model=name, input="hi", tools=tools_for(case)) as stream:
            helper = list(stream)
            if case["status"] == "completed":
                final = stream.get_final_response()
                check_response(name, final, case)
                follow_up(client, name, case, final.output)
        expect(f"{name} helper events", len(helper), len(events))
    server.shutdown()
    print(f"openai {__import__('openai').__version__}: {len(cases)} cases accepted")


main()
