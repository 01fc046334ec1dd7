"""The official openai Python SDK's Responses API against the gateway's demo agent.

Usage: python openai_responses.py BASE_URL API_KEY — exits non-zero on the first failure.
The built-in mock echoes the last user message, calls an offered function tool,
echoes a tool result, and answers JSON that fits a requested schema.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, api_key = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0)

# Plain.
plain = client.responses.create(model="demo", input="hello responses")
assert plain.output_text == "hello responses", plain
assert plain.status == "completed" and plain.model == "demo" and plain.id.startswith("resp_"), plain
assert plain.usage.output_tokens == 2 and plain.usage.total_tokens == plain.usage.input_tokens + 2, plain.usage

# A function tool, then its output sent back on the same conversation.
tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
asked = client.responses.create(model="demo", input="Paris", tools=tools)
call = next(item for item in asked.output if item.type == "function_call")
assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}, call
answered = client.responses.create(
    model="demo",
    previous_response_id=asked.id,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    tools=tools,
)
assert answered.output_text == "The tool returned: sunny", answered

# Structured output.
schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": False}
structured = client.responses.create(
    model="demo", input="Ada", text={"format": {"type": "json_schema", "name": "person", "schema": schema, "strict": True}}
)
assert json.loads(structured.output_text) == {"name": "Ada"}, structured.output_text

# A conversation kept by the gateway.
first = client.responses.create(model="demo", input="first turn")
second = client.responses.create(model="demo", input="second turn", previous_response_id=first.id)
assert second.output_text == "second turn" and second.previous_response_id == first.id, second
items = client.responses.input_items.list(second.id)
assert [item.content[0].text for item in items.data] == ["second turn"], items
assert client.responses.retrieve(first.id).output_text == "first turn"

# Streamed, event by event.
seen = []
with client.responses.stream(model="demo", input="one two three four") as stream:
    for event in stream:
        seen.append(event.type)
    final = stream.get_final_response()
assert seen[0] == "response.created" and seen[-1] == "response.completed", seen
assert "response.output_text.delta" in seen and "response.output_text.done" in seen, seen
assert final.output_text == "one two three four", final
numbers = []
for event in client.responses.create(model="demo", input="count me", stream=True):
    numbers.append(event.sequence_number)
assert numbers == list(range(len(numbers))), numbers
assert client.responses.retrieve(final.id).output_text == "one two three four", "a streamed turn is stored"

# Bad input is a 400 naming the field; an unknown previous response a 404.
try:
    client.responses.create(model="demo", input=[{"type": "nope"}])
    raise AssertionError("an unknown item type must be refused")
except openai.BadRequestError as e:
    assert e.body["param"] == "input[0].type", e.body
try:
    client.responses.create(model="demo", input="x", tools=[{"type": "web_search"}])
    raise AssertionError("a built-in tool must be refused")
except openai.BadRequestError as e:
    assert e.body["param"] == "tools[0].type", e.body
try:
    client.responses.create(model="demo", input="x", previous_response_id="resp_nope")
    raise AssertionError("an unknown previous response must be refused")
except openai.NotFoundError as e:
    assert e.body["param"] == "previous_response_id", e.body

# Deleted is gone.
client.responses.delete(first.id)
try:
    client.responses.retrieve(first.id)
    raise AssertionError("a deleted response must be gone")
except openai.NotFoundError:
    pass
print("openai responses: all checks passed")
