// Drives seed 002's stateful `/chat` with the AI SDK's own stream readers:
// `useChat`'s DefaultChatTransport (UI message stream, read by
// readUIMessageStream), TextStreamChatTransport (`streamType: "text"`), and
// parseJsonEventStream for the seed's `data` stream.
// Usage: node chat_ai_sdk.mjs BASE_URL API_KEY — exits non-zero on the first failure.
import assert from 'node:assert/strict';
import {
  DefaultChatTransport,
  TextStreamChatTransport,
  jsonSchema,
  parseJsonEventStream,
  readUIMessageStream,
} from 'ai';

const [baseURL, apiKey] = process.argv.slice(2);
const api = `${baseURL}/chat`;
const headers = { Authorization: `Bearer ${apiKey}` };
const user = (id, text) => ({ id, role: 'user', parts: [{ type: 'text', text }] });

// What useChat does on submit: the whole history, `trigger`, the chat's `id`.
async function turn(transport, chatId, messages) {
  const stream = await transport.sendMessages({
    chatId,
    messages,
    trigger: 'submit-message',
    messageId: undefined,
    abortSignal: undefined,
    body: { model: 'demo' },
  });
  let last;
  for await (const message of readUIMessageStream({ stream })) last = message;
  return last;
}

const ui = new DefaultChatTransport({ api, headers });
const first = await turn(ui, 'chat-ai-sdk', [user('m1', 'hello chat')]);
assert.equal(first.role, 'assistant');
assert.equal(first.parts.filter((p) => p.type === 'text').map((p) => p.text).join(''), 'hello chat');
assert.ok(first.id.startsWith('msg_'), `the answer's id comes from the start chunk: ${first.id}`);
assert.equal(first.metadata.model, 'demo');
assert.equal(first.metadata.chatId, 'chat-ai-sdk');
// The next submit carries the whole history again, the answer included.
const second = await turn(ui, 'chat-ai-sdk', [user('m1', 'hello chat'), first, user('m3', 'second one')]);
assert.equal(second.parts.filter((p) => p.type === 'text').map((p) => p.text).join(''), 'second one');

const text = new TextStreamChatTransport({ api, headers, body: { model: 'demo', stream: true, streamType: 'text' } });
const plain = await text.sendMessages({
  chatId: 'chat-text',
  messages: [user('t1', 'plain text please')],
  trigger: 'submit-message',
  messageId: undefined,
  abortSignal: undefined,
});
let said = '';
for await (const message of readUIMessageStream({ stream: plain })) {
  said = message.parts.filter((p) => p.type === 'text').map((p) => p.text).join('');
}
assert.equal(said, 'plain text please');

const response = await fetch(api, {
  method: 'POST',
  headers: { ...headers, 'content-type': 'application/json' },
  body: JSON.stringify({ chatId: 'chat-data', message: 'data events', model: 'demo', stream: true }),
});
assert.equal(response.status, 200);
const events = parseJsonEventStream({ stream: response.body, schema: jsonSchema({ type: 'object' }) });
let content = '';
let done;
for await (const event of events) {
  assert.ok(event.success, `a JSON event: ${JSON.stringify(event)}`);
  if (event.value.type === 'content') content += event.value.delta;
  if (event.value.type === 'done') done = event.value;
}
assert.equal(content, 'data events');
assert.ok(done && done.execution_id, 'the done event names the execution');
console.log('ai sdk chat: all checks passed');
