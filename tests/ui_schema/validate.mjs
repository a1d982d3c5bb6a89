// Check a raw UI message stream body with the Vercel AI SDK's own code.
//
//   node validate.mjs [body.txt]      (reads stdin without an argument)
//
// Prints one JSON object, {ok, errors, message, ...}, and exits 1 when ok is false:
//
// 1. Framing: every event is `data: <json>`, and the stream ends with exactly one
//    `data: [DONE]` (the AI SDK's DefaultChatTransport ignores it, but the protocol ends with it).
// 2. Every part is parsed and validated by the SDK's public `parseJsonEventStream` with the
//    public `uiMessageChunkSchema`, exactly what `useChat` does with a response body.
// 3. No part carries a key the SDK does not know. The SDK's schema is built from zod
//    `looseObject`s (ai 5.0.x onwards), so it passes unknown keys through; this check rebuilds
//    each branch of that same schema as a `strictObject`, so the key list is the SDK's, not ours.
// 4. The parts are replayed through the public `readUIMessageStream` (the state machine behind
//    `useChat`), which rejects out-of-order parts (a delta without its start, ...), and the
//    last UIMessage snapshot is printed as `message`.

import { readFileSync } from "node:fs";
import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";
import * as z from "zod/v4";

const AI_VERSION = JSON.parse(
  readFileSync(new URL("./node_modules/ai/package.json", import.meta.url), "utf8"),
).version;

function readBody() {
  const path = process.argv[2];
  return readFileSync(path ?? 0, "utf8");
}

// WHATWG SSE framing, reduced to what a UI message stream uses: events end at a blank line
// (CRLF, LF or CR), `data:` lines join with LF, comment lines (`:`) are keepalives.
function dataEvents(body) {
  const events = [];
  for (const block of body.split(/\r\n\r\n|\n\n|\r\r/)) {
    const data = [];
    const others = [];
    for (const line of block.split(/\r\n|\n|\r/)) {
      if (line === "" || line.startsWith(":")) continue;
      if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
      else others.push(line);
    }
    if (data.length > 0 || others.length > 0) events.push({ data: data.join("\n"), others });
  }
  return events;
}

function checkFraming(events, errors) {
  events.forEach((event, index) => {
    if (event.others.length > 0) {
      errors.push({ index, error: `unexpected SSE lines ${JSON.stringify(event.others)}` });
    }
  });
  const done = events.flatMap((event, index) => (event.data === "[DONE]" ? [index] : []));
  if (done.length !== 1 || done[0] !== events.length - 1) {
    errors.push({
      error: `the stream must end with exactly one "data: [DONE]"; found it at event(s) ${JSON.stringify(done)} of ${events.length}`,
    });
  }
}

// The SDK's schema is a zod union; zod's global error map sees the schema that raised each
// issue (`iss.inst`), so one deliberately invalid part hands us the union itself.
async function sdkUnion() {
  let union;
  z.config({
    customError(iss) {
      const def = iss.inst?._zod?.def;
      if (def?.type === "union" && def.options?.length > 10) union ??= iss.inst;
      return undefined;
    },
  });
  try {
    await uiMessageChunkSchema().validate({ type: "\u0000 not a part" });
  } finally {
    z.config({ customError: undefined });
  }
  if (union === undefined) throw new Error("could not reach the zod union of uiMessageChunkSchema");
  return union;
}

// type -> strictObject with the SDK branch's own shape; data-* parts keyed by prefix.
async function strictBranches() {
  const branches = new Map();
  for (const option of (await sdkUnion())._zod.def.options) {
    const shape = option._zod.def.shape;
    const typeDef = shape?.type?._zod?.def;
    const strict = z.strictObject(shape);
    if (typeDef?.type === "literal") for (const value of typeDef.values) branches.set(value, strict);
    else branches.set("data-*", strict);
  }
  return branches;
}

function strictBranchFor(branches, type) {
  if (typeof type === "string" && type.startsWith("data-")) return branches.get("data-*");
  return branches.get(type);
}

function zodMessage(error) {
  return error.issues
    .map((issue) => `${issue.message}${issue.path.length ? ` at ${issue.path.join(".")}` : ""}`)
    .join("; ");
}

function bodyStream(body) {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(body));
      controller.close();
    },
  });
}

async function main() {
  const body = readBody();
  const errors = [];
  checkFraming(dataEvents(body), errors);

  const branches = await strictBranches();
  // Self-test: the strict rebuild must reject what the SDK's loose schema lets through.
  const probe = { type: "text-start", id: "probe", unknownKey: 1 };
  const sdkAcceptsUnknownKeys = (await uiMessageChunkSchema().validate(probe)).success;
  if (strictBranchFor(branches, probe.type).safeParse(probe).success) {
    errors.push({ error: "self-test: the strict schema accepted an unknown key" });
  }

  const parts = [];
  const rejectedBySdk = new Set();
  const results = parseJsonEventStream({ stream: bodyStream(body), schema: uiMessageChunkSchema() });
  for await (const result of results) {
    const index = parts.length;
    parts.push(result.rawValue);
    if (!result.success) {
      rejectedBySdk.add(index);
      const type = result.rawValue?.type;
      const cause = result.error.cause;
      const detail = !strictBranchFor(branches, type)
        ? `no part has type ${JSON.stringify(type)}`
        : cause?.issues
          ? zodMessage(cause)
          : result.error.message;
      errors.push({ index, part: result.rawValue, error: `AI SDK schema: ${detail}` });
      continue;
    }
    const strict = strictBranchFor(branches, result.value.type);
    const checked = strict?.safeParse(result.rawValue);
    if (checked && !checked.success) {
      errors.push({ index, part: result.rawValue, error: `strict: ${zodMessage(checked.error)}` });
    }
  }

  // Replay the valid parts through the reader behind useChat. `error` parts reach onError as
  // Error(errorText); anything else there is the SDK refusing the sequence of parts.
  const errorTexts = parts.filter((part) => part?.type === "error").map((part) => part.errorText);
  const streamErrors = [];
  const chunks = parts.filter((part, index) => !rejectedBySdk.has(index));
  let message = null;
  const reader = readUIMessageStream({
    stream: new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(chunk);
        controller.close();
      },
    }),
    onError(error) {
      const text = error instanceof Error ? error.message : String(error);
      if (streamErrors.length < errorTexts.length && text === errorTexts[streamErrors.length]) {
        streamErrors.push(text);
      } else {
        errors.push({ error: `readUIMessageStream: ${text}` });
      }
    },
  });
  for await (const snapshot of reader) message = snapshot;

  const ok = errors.length === 0;
  const report = { ok, errors, message, parts, streamErrors, ai: AI_VERSION, sdkAcceptsUnknownKeys };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((error) => {
  process.stdout.write(
    `${JSON.stringify({ ok: false, errors: [{ error: String(error?.stack ?? error) }], message: null })}\n`,
  );
  process.exitCode = 2;
});
