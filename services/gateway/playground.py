"""The page ``GET /graphql`` serves: a small GraphQL playground that needs nothing but the node.

A query and its variables, a Run button (or Ctrl+Enter) that POSTs them to the page's own
URL, the JSON answer, and a Schema button listing the root fields this node serves (from
introspection). No external script, style or font, so it works offline; the
:data:`PLAYGROUND_CSP` header keeps it that way in browsers.
"""

from __future__ import annotations

__all__ = ["PLAYGROUND_CSP", "PLAYGROUND_HTML"]

PLAYGROUND_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)
"""The Content-Security-Policy of the page: inline code only, requests to its own origin."""

PLAYGROUND_HTML = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pandanode GraphQL playground</title>
<style>
  :root { color-scheme: light dark; --line: #8884; --accent: #2b6cb0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; height: 100vh; display: flex;
         flex-direction: column; }
  header { display: flex; gap: .5rem; align-items: center; padding: .5rem .75rem;
           border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  header h1 { font-size: 1rem; margin: 0 auto 0 0; }
  button { font: inherit; padding: .3rem .9rem; border: 1px solid var(--line);
           border-radius: 4px; background: transparent; color: inherit; cursor: pointer; }
  button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
  button:disabled { opacity: .6; cursor: wait; }
  input { font: inherit; padding: .25rem .4rem; border: 1px solid var(--line);
          border-radius: 4px; background: transparent; color: inherit; }
  main { flex: 1; display: grid; grid-template-columns: 1fr 1fr; min-height: 0; }
  section { display: flex; flex-direction: column; min-height: 0; border-right: 1px solid
            var(--line); }
  label { font-size: .8rem; opacity: .75; padding: .4rem .75rem .1rem; }
  textarea, pre { font: 13px/1.45 ui-monospace, monospace; margin: 0; padding: .5rem .75rem;
                  border: 0; background: transparent; color: inherit; resize: none; }
  textarea:focus { outline: 1px solid var(--accent); }
  #query { flex: 3; }
  #variables { flex: 1; }
  label[for="variables"] { border-top: 1px solid var(--line); }
  #result { flex: 1; overflow: auto; white-space: pre-wrap; word-break: break-word; }
  #status { font-size: .8rem; opacity: .75; }
  #result[data-state="error"] { color: #c53030; }
  @media (max-width: 800px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>pandanode GraphQL</h1>
  <input id="operation" placeholder="operation name (optional)" aria-label="operation name">
  <button id="schema" type="button" title="List the root fields this node serves">Schema</button>
  <button id="run" class="primary" type="button" title="Ctrl+Enter">Run</button>
</header>
<main>
  <section>
    <label for="query">Query</label>
    <textarea id="query" spellcheck="false"></textarea>
    <label for="variables">Variables (JSON)</label>
    <textarea id="variables" spellcheck="false"></textarea>
  </section>
  <section>
    <label for="result">Result <span id="status"></span></label>
    <pre id="result" tabindex="0" aria-live="polite"></pre>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const query = $("query"), variables = $("variables"), operation = $("operation");
const result = $("result"), status = $("status"), runButton = $("run"), schemaButton = $("schema");
const endpoint = window.location.pathname;
const saved = (key, fallback) => {
  try { return window.localStorage.getItem("pandanode-playground-" + key) ?? fallback; }
  catch (_) { return fallback; }
};
const save = (key, value) => {
  try { window.localStorage.setItem("pandanode-playground-" + key, value); } catch (_) {}
};
query.value = saved("query",
  "# Ctrl+Enter runs the query; \"Schema\" lists what this node serves.\n" +
  "{\n  __schema {\n    queryType { fields { name } }\n  }\n}\n");
variables.value = saved("variables", "");
operation.value = saved("operation", "");

function show(text, state) {
  result.textContent = text;
  result.dataset.state = state;
}

async function post(body) {
  const started = performance.now();
  const response = await fetch(endpoint, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  const millis = Math.round(performance.now() - started);
  status.textContent = "HTTP " + response.status + " · " + millis + " ms";
  let parsed;
  try { parsed = JSON.parse(text); } catch (_) { parsed = null; }
  return { ok: response.ok, parsed, text };
}

async function busy(work) {
  runButton.disabled = schemaButton.disabled = true;
  show("…", "running");
  status.textContent = "";
  try { await work(); }
  catch (error) { show(String(error), "error"); }
  finally { runButton.disabled = schemaButton.disabled = false; }
}

function run() {
  save("query", query.value);
  save("variables", variables.value);
  save("operation", operation.value);
  let vars = null;
  if (variables.value.trim()) {
    try { vars = JSON.parse(variables.value); }
    catch (error) { show("Variables are not JSON: " + error.message, "error"); return; }
  }
  const body = { query: query.value, variables: vars };
  if (operation.value.trim()) body.operationName = operation.value.trim();
  return busy(async () => {
    const answer = await post(body);
    if (answer.parsed === null) { show(answer.text, "error"); return; }
    const failed = !answer.ok || (answer.parsed.errors && !answer.parsed.data);
    show(JSON.stringify(answer.parsed, null, 2), failed ? "error" : "done");
  });
}

const TYPE = "kind name ofType { kind name ofType { kind name ofType { kind name } } }";
const ROOT = "name fields { name args { name type { " + TYPE + " } } type { " + TYPE + " } }";
const INTROSPECTION = "{ __schema { queryType { " + ROOT + " } mutationType { " + ROOT +
  " } subscriptionType { " + ROOT + " } } }";

function typeName(type) {
  if (type.kind === "NON_NULL") return typeName(type.ofType) + "!";
  if (type.kind === "LIST") return "[" + typeName(type.ofType) + "]";
  return type.name;
}

function schema() {
  return busy(async () => {
    const answer = await post({ query: INTROSPECTION });
    if (!answer.parsed || !answer.parsed.data) {
      show(answer.parsed ? JSON.stringify(answer.parsed, null, 2) : answer.text, "error");
      return;
    }
    const roots = answer.parsed.data.__schema;
    const lines = [];
    for (const [label, root] of [["query", roots.queryType], ["mutation", roots.mutationType],
                                 ["subscription", roots.subscriptionType]]) {
      if (!root) continue;
      lines.push(label + " (" + root.name + ")");
      for (const field of root.fields) {
        const args = field.args.map((arg) => arg.name + ": " + typeName(arg.type)).join(", ");
        lines.push("  " + field.name + (args ? "(" + args + ")" : "") + ": " +
                   typeName(field.type));
      }
      lines.push("");
    }
    show(lines.join("\n"), "done");
  });
}

runButton.addEventListener("click", run);
schemaButton.addEventListener("click", schema);
document.addEventListener("keydown", (event) => {
  if ((event.ctrlKey || event.metaKey) && event.key === "Enter") { event.preventDefault(); run(); }
});
</script>
</body>
</html>
"""
"""The playground page: HTML with its own style and script, nothing loaded from elsewhere."""
