// The Vercel AI SDK (`@ai-sdk/openai`'s Responses model, through `ai`'s
// generateText and streamText) against the Responses translation's output.
//
// Run by tests/responses/sdk.rs with the directory it wrote: cases.json (what
// each response says) and, per case, the Response JSON or the event stream.
// A local HTTP server plays the gateway, answering each request with the case
// its `model` names and recording the request body in requests/ (the Rust
// test translates those afterwards). The provider parses every object and
// event with its zod schemas: a response that fails them throws, an event
// that fails them becomes an `error` part, which no case but the failed one
// may have. Each completed case also sends a follow-up that replays the
// answer the SDK's way (`item_reference`s to the output, tool results).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, jsonSchema, streamText, tool } from 'ai';

const dir = process.argv[2];
const cases = JSON.parse(fs.readFileSync(path.join(dir, 'cases.json'), 'utf8'));
const byName = new Map(cases.map((c) => [c.name, c]));

let recorded = 0;
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const file = `ai-sdk-${String(recorded++).padStart(2, '0')}.json`;
    fs.writeFileSync(path.join(dir, 'requests', file), body);
    const request = JSON.parse(body);
    const c = byName.get(request.model);
    if (Boolean(request.stream) !== (c.kind === 'sse')) {
      res.writeHead(400).end(`${request.model} is a ${c.kind} case`);
      return;
    }
    res.writeHead(200, { 'content-type': c.kind === 'sse' ? 'text/event-stream' : 'application/json' });
    res.end(fs.readFileSync(path.join(dir, c.file)));
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const openai = createOpenAI({ baseURL: `http://127.0.0.1:${server.address().port}/v1`, apiKey: 'test' });

const tools = {
  get_weather: tool({
    description: 'Current weather for a city',
    inputSchema: jsonSchema({
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
      additionalProperties: false,
    }),
  }),
};

// How the AI SDK reports each ending (refusals are text, finishing as content-filter).
function finishOf(c) {
  if (c.status === 'failed') return 'error';
  if (c.incomplete_reason === 'max_output_tokens') return 'length';
  if (c.incomplete_reason === 'content_filter') return 'content-filter';
  if (c.tool_calls.length > 0) return 'tool-calls';
  return c.refusal ? 'content-filter' : 'stop';
}

function check(name, c, { text, toolCalls, finishReason, usage }) {
  assert.equal(text, c.text + c.refusal, `${name}: text`);
  assert.deepEqual(
    toolCalls.map((t) => ({ call_id: t.toolCallId, name: t.toolName, input: t.input })),
    c.tool_calls.map((t) => ({ call_id: t.call_id, name: t.name, input: JSON.parse(t.arguments) })),
    `${name}: tool calls`,
  );
  assert.equal(finishReason, finishOf(c), `${name}: finish reason`);
  assert.equal(usage.inputTokens, c.usage?.input_tokens, `${name}: input tokens`);
  assert.equal(usage.outputTokens, c.usage?.output_tokens, `${name}: output tokens`);
}

// The next turn, as an app built on the SDK sends it.
async function followUp(name, c, messages, toolCalls) {
  const replies = toolCalls.length
    ? [{
        role: 'tool',
        content: toolCalls.map((t) => ({
          type: 'tool-result',
          toolCallId: t.toolCallId,
          toolName: t.toolName,
          output: { type: 'text', value: '18°C, clear' },
        })),
      }]
    : [{ role: 'user', content: 'Thanks, and then?' }];
  const history = [{ role: 'user', content: 'hi' }, ...messages, ...replies];
  const options = { model: openai.responses(name), tools, messages: history, maxRetries: 0 };
  if (c.kind === 'json') {
    await generateText(options);
  } else {
    await streamText({ ...options, onError: (e) => { throw e.error; } }).consumeStream();
  }
}

for (const c of cases) {
  const name = c.name;
  const model = openai.responses(name);
  if (c.kind === 'json') {
    const result = await generateText({ model, tools, prompt: 'hi', maxRetries: 0 });
    check(name, c, result);
    assert.equal(result.response.id, c.response_id, `${name}: response id`);
    await followUp(name, c, result.response.messages, result.toolCalls);
    continue;
  }
  const result = streamText({ model, tools, prompt: 'hi', maxRetries: 0, onError: () => {} });
  const parts = [];
  for await (const part of result.fullStream) parts.push(part);
  const errors = parts.filter((p) => p.type === 'error');
  const finish = parts.find((p) => p.type === 'finish');
  if (c.status === 'failed') {
    assert.ok(errors.length > 0, `${name}: the failure reaches the app as an error part`);
    assert.match(JSON.stringify(errors[0].error), new RegExp(c.error.message), `${name}: error message`);
    assert.equal(finish.finishReason, 'error', `${name}: finish reason`);
    continue;
  }
  assert.deepEqual(errors, [], `${name}: every event passes the provider's schemas`);
  const text = parts.filter((p) => p.type === 'text-delta').map((p) => p.text).join('');
  const toolCalls = parts.filter((p) => p.type === 'tool-call');
  check(name, c, { text, toolCalls, finishReason: finish.finishReason, usage: finish.totalUsage });
  const response = await result.response;
  assert.equal(response.id, c.response_id, `${name}: response id`);
  if (c.status === 'completed') await followUp(name, c, response.messages, toolCalls);
}

server.close();
console.log(`ai sdk: ${cases.length} cases accepted, ${recorded} requests recorded`);
