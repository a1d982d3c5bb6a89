// Run an AG-UI endpoint with the real @ag-ui/client HttpAgent and report what it made of it.
//
//   node validate_ag_ui.mjs URL [threadId runId]   POSTs a RunAgentInput to URL, as CopilotKit does
//   node validate_ag_ui.mjs - < body.txt           the same agent reads a recorded body instead
//
// Prints one JSON object and exits 1 when ok is false:
//
// - every event as the agent's subscribers saw it, with its arrival time in ms since the
//   request (`at`), after the client's whole pipeline: its SSE parser, the schema enforcement
//   of @ag-ui/core (a malformed known field throws), chunk expansion and the verifier (which
//   throws on a run that is out of order: content without a start, a finish with a message or
//   a tool call still open, anything after RUN_FINISHED / RUN_ERROR);
// - every raw `data:` event (`raw`: {event, at}, `at` when its bytes reached the client's
//   fetch) checked against @ag-ui/core's EventSchema with no unknown keys (the client itself
//   strips an unknown key with a console warning; those warnings are errors here too);
// - the messages the agent holds at the end, the run's result, and the RUN_ERROR if any.

import { readFileSync } from "node:fs";
import { HttpAgent } from "@ag-ui/client";
import { EventSchema } from "@ag-ui/core/schemas";
import * as z from "zod/v4";

const version = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8"))
    .version;

const warnings = [];
for (const level of ["warn", "error"]) {
  console[level] = (...args) => warnings.push(args.map(String).join(" "));
}

// The union's branches, rebuilt as strict objects: the key list is the schema's, not ours.
const strictByType = new Map(
  EventSchema.options.map((option) => [option.shape.type.value, z.strictObject(option.shape)]),
);

// Each `data:` event of the body with the time its block arrived (comments are skipped).
function rawEvents(body, arrivals) {
  const events = [];
  body.split("\n\n").forEach((block, index) => {
    const data = block
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""));
    if (data.length > 0) events.push({ event: JSON.parse(data.join("\n")), at: arrivals[index] });
  });
  return events;
}

function issues(error) {
  return error.issues.map((issue) => `${issue.message} at ${issue.path.join(".")}`).join("; ");
}

async function main() {
  const [target, threadId = "thread-test", runId = "run-test"] = process.argv.slice(2);
  const errors = [];
  let body = "";
  const arrivals = []; // ms after the request at which each blank-line-ended block arrived
  let started = performance.now();
  const recorded = async (url, init) => {
    started = performance.now();
    const response = target === "-" ? new Response(readFileSync(0, "utf8"), {
      headers: { "content-type": "text/event-stream" },
    }) : await fetch(url, init);
    if (!response.body) return response;
    // Keep a copy of the bytes for the schema check while the agent reads them as they come,
    // noting when each event's bytes arrived (before the agent's own processing).
    const [forAgent, forCheck] = response.body.tee();
    const copied = (async () => {
      const decoder = new TextDecoder();
      for await (const bytes of forCheck) {
        body += decoder.decode(bytes, { stream: true });
        const complete = body.split("\n\n").length - 1;
        while (arrivals.length < complete) arrivals.push(Math.round(performance.now() - started));
      }
    })();
    recorded.copies.push(copied);
    return new Response(forAgent, { status: response.status, headers: response.headers });
  };
  recorded.copies = [];

  const agent = new HttpAgent({ url: target === "-" ? "http://recorded.invalid/" : target, threadId, fetch: recorded });
  const events = [];
  let runError = null;
  let result;
  try {
    const run = await agent.runAgent(
      { runId },
      {
        onEvent({ event }) {
          events.push({ ...event, at: Math.round(performance.now() - started) });
        },
        onRunErrorEvent({ event }) {
          runError = event;
        },
      },
    );
    result = run.result;
  } catch (error) {
    errors.push({ error: `HttpAgent.runAgent: ${error?.message ?? error}`, status: error?.status, payload: error?.payload });
  }
  await Promise.all(recorded.copies);

  let raw = [];
  try {
    raw = rawEvents(body, arrivals);
  } catch (error) {
    errors.push({ error: `a data: line is not JSON: ${error.message}` });
  }
  raw.forEach(({ event }, index) => {
    const strict = strictByType.get(event?.type);
    if (!strict) {
      errors.push({ index, event, error: `no AG-UI event has type ${JSON.stringify(event?.type)}` });
      return;
    }
    const checked = strict.safeParse(event);
    if (!checked.success) errors.push({ index, event, error: `schema: ${issues(checked.error)}` });
  });
  for (const warning of warnings) errors.push({ error: `client warning: ${warning}` });

  const ok = errors.length === 0;
  const report = {
    ok,
    errors,
    events,
    raw,
    messages: agent.messages,
    result: result ?? null,
    runError,
    client: version("@ag-ui/client"),
    core: version("@ag-ui/core"),
  };
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exitCode = ok ? 0 : 1;
}

main().catch((error) => {
  process.stdout.write(
    `${JSON.stringify({ ok: false, errors: [{ error: String(error?.stack ?? error) }] })}\n`,
  );
  process.exitCode = 2;
});
