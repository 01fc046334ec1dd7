// Drives the gateway with the Vercel AI SDK (`ai` + `@ai-sdk/openai`).
// Usage: node vercel_ai_sdk.mjs BASE_URL API_KEY — exits non-zero on the first failure.
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText, embed } from 'ai';

const [baseURL, apiKey] = process.argv.slice(2);
const tollgate = createOpenAI({ baseURL, apiKey });

const generated = await generateText({ model: tollgate.chat('demo'), prompt: 'hello vercel sdk', maxRetries: 0 });
assert.equal(generated.text, 'hello vercel sdk');
assert.equal(generated.usage.outputTokens, 3);

const streamed = streamText({ model: tollgate.chat('demo'), prompt: 'one two three four five six', maxRetries: 0 });
let text = '';
for await (const delta of streamed.textStream) text += delta;
assert.equal(text, 'one two three four five six');
assert.equal((await streamed.usage).outputTokens, 6, 'usage arrives with the stream');

const embedded = await embed({ model: tollgate.embedding('mock-mini'), value: 'abc', maxRetries: 0 });
assert.equal(embedded.embedding.length, 8);

await assert.rejects(
  generateText({ model: tollgate.chat('no-such-agent'), prompt: 'x', maxRetries: 0 }),
  (e) => e.statusCode === 404,
);
console.log('vercel ai sdk: all checks passed');
