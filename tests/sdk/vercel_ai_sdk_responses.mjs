// The Vercel AI SDK's default provider call — `createOpenAI({ baseURL })(id)`, which
// speaks the Responses API — against the gateway's demo agent: generate, stream, a tool
// the SDK runs, and a conversation whose follow-ups name stored items by item_reference.
// Usage: node vercel_ai_sdk_responses.mjs BASE_URL API_KEY — exits non-zero on the first failure.
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool, jsonSchema, stepCountIs } from 'ai';

const [baseURL, apiKey] = process.argv.slice(2);
// Every request body the provider sends, to see what it sent.
const sent = [];
const recording = async (url, init) => {
  if (typeof init?.body === 'string') sent.push(JSON.parse(init.body));
  return fetch(url, init);
};
const tollgate = createOpenAI({ baseURL, apiKey, fetch: recording });

const generated = await generateText({ model: tollgate('demo'), prompt: 'hello default provider', maxRetries: 0 });
assert.equal(generated.text, 'hello default provider');
assert.equal(generated.usage.outputTokens, 3);

const streamed = streamText({ model: tollgate('demo'), prompt: 'one two three four five', maxRetries: 0 });
let text = '';
for await (const delta of streamed.textStream) text += delta;
assert.equal(text, 'one two three four five');
assert.equal((await streamed.usage).outputTokens, 5, 'usage arrives with the stream');

// A tool the SDK runs itself, then the model's answer to its result.
let ran = null;
const weather = tool({
  description: 'The weather in a city',
  inputSchema: jsonSchema({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
  execute: async ({ city }) => { ran = city; return `sunny in ${city}`; },
});
const withTool = await generateText({
  model: tollgate('demo'),
  prompt: 'Lisbon',
  tools: { weather },
  stopWhen: stepCountIs(3),
  maxRetries: 0,
});
assert.equal(ran, 'Lisbon', 'the model called the tool with arguments that fit its schema');
assert.match(withTool.text, /sunny in Lisbon/);

// A conversation over three turns with `store` on (the provider's default):
// each turn sends the earlier answers back as `item_reference`s to the
// stored output, without a previous_response_id, and the gateway resolves
// them from the store.
const conversation = [{ role: 'user', content: 'first turn' }];
const turn1 = await generateText({ model: tollgate('demo'), messages: conversation, maxRetries: 0 });
assert.equal(turn1.text, 'first turn');
conversation.push(...turn1.response.messages, { role: 'user', content: 'second turn' });
const turn2 = await generateText({ model: tollgate('demo'), messages: conversation, maxRetries: 0 });
assert.equal(turn2.text, 'second turn', 'a follow-up by item_reference succeeds');
const turn1Item = await storedOutput(turn1.response.id);
const asked = sent.at(-1);
assert.equal(asked.previous_response_id, undefined);
assert.deepEqual(
  asked.input.filter((i) => i.type === 'item_reference'),
  [{ type: 'item_reference', id: turn1Item }],
  'the SDK sent turn 1\'s answer by reference',
);
// The gateway put the referenced message in its place: turn 2's input items.
const listed = await inputItems(turn2.response.id);
assert.deepEqual(
  listed.map((i) => [i.id === turn1Item ? 'ref' : i.role, i.content[0].text]),
  [['user', 'first turn'], ['ref', 'first turn'], ['user', 'second turn']],
);
conversation.push(...turn2.response.messages, { role: 'user', content: 'third turn' });
const turn3 = streamText({
  model: tollgate('demo'),
  messages: conversation,
  maxRetries: 0,
  onError: ({ error }) => { throw error; },
});
let turn3Text = '';
for await (const delta of turn3.textStream) turn3Text += delta;
assert.equal(turn3Text, 'third turn', 'a streamed follow-up with two references succeeds');
assert.equal(sent.at(-1).input.filter((i) => i.type === 'item_reference').length, 2);
// The id of a stored response's first output item, and a response's input
// items, from the gateway's own routes.
async function storedOutput(id) {
  const response = await fetch(`${baseURL}/responses/${id}`, { headers: { authorization: `Bearer ${apiKey}` } });
  assert.equal(response.status, 200);
  return (await response.json()).output[0].id;
}

async function inputItems(id) {
  const url = `${baseURL}/responses/${id}/input_items?order=asc`;
  const response = await fetch(url, { headers: { authorization: `Bearer ${apiKey}` } });
  assert.equal(response.status, 200);
  return (await response.json()).data;
}

console.log('vercel ai sdk (responses): all checks passed');
