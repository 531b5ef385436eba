// Client-side tools through confab with the official `openai` package for Node.js, unchanged.
//
// Usage: node client_tools.mjs BASE_URL API_KEY MODEL, with CONFAB_NODE_MODULES naming the
// node_modules that package.json and package-lock.json pin (tests/e2e/support/node.rs sets it).
//
// The model is asked with a function it may call; the SDK's `runTools` helper runs the
// function, sends its result back and reads the answer; then the same question streamed, the
// call put together by the SDK's stream helper. Prints what it saw, as JSON, for
// tests/e2e/dialects/openai/node_sdk.rs.

import { createRequire } from "node:module";

const require = createRequire(`${process.env.CONFAB_NODE_MODULES}/`);
const { OpenAI } = require("openai");

const [baseURL, apiKey, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30_000 });

const calledWith = [];
function lookupOrder({ order }) {
  calledWith.push(order);
  return { order, status: "shipped" };
}

const tools = [
  {
    type: "function",
    function: {
      name: "lookup_order",
      description: "Find an order by its number",
      parameters: {
        type: "object",
        properties: { order: { type: "string" } },
        required: ["order"],
      },
      function: lookupOrder,
      parse: JSON.parse,
    },
  },
];

const question = [{ role: "user", content: "Where is order A-1001?" }];
const runner = client.chat.completions.runTools({ model, messages: question, tools });
const answer = await runner.finalContent();
const roles = runner.messages.map((m) => m.role);

const stream = client.chat.completions.stream({
  model,
  messages: question,
  tools: tools.map(({ type, function: { name, description, parameters } }) => ({
    type,
    function: { name, description, parameters },
  })),
});
const streamed = await stream.finalChatCompletion();
const choice = streamed.choices[0];

console.log(
  JSON.stringify({
    answer,
    calledWith,
    roles,
    streamedCalls: choice.message.tool_calls.map((c) => ({
      id: c.id,
      name: c.function.name,
      arguments: c.function.arguments,
    })),
    streamedFinish: choice.finish_reason,
  }),
);
