// The Vercel AI SDK's default provider call — `createOpenAI({ baseURL })(id)`, which
// speaks the Responses API — against the gateway's demo agent.
// Usage: node vercel_ai_sdk_responses.mjs BASE_URL API_KEY — exits non-zero on the first failure.
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, tool, jsonSchema, stepCountIs } from 'ai';

const [baseURL, apiKey] = process.argv.slice(2);
const tollgate = createOpenAI({ baseURL, apiKey });

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
console.log('vercel ai sdk (responses): all checks passed');
