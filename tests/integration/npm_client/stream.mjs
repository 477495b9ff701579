// Stream one chat completion through an OpenAI-compatible endpoint with the openai npm
// client, as a browser front end would; print the text as it arrives.
// Env: OPENAI_BASE_URL, OPENAI_API_KEY, MODEL; NODE_EXTRA_CA_CERTS for a test CA.
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.OPENAI_BASE_URL,
  apiKey: process.env.OPENAI_API_KEY,
  maxRetries: 0,
});

const stream = await client.chat.completions.create({
  model: process.env.MODEL,
  messages: [{ role: "user", content: process.env.PROMPT ?? "Say hello." }],
  max_tokens: Number(process.env.MAX_TOKENS ?? 16),
  temperature: 0,
  stream: true,
});

let chunks = 0;
for await (const chunk of stream) {
  const text = chunk.choices[0]?.delta?.content ?? "";
  if (text) {
    chunks += 1;
    process.stdout.write(text);
  }
}
process.stdout.write(`\n[chunks=${chunks}]\n`);
