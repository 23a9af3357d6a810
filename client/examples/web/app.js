// SPDX-License-Identifier: AGPL-3.0-or-later
//
// shirokuma (p2panda's TypeScript SDK) against a pandanode: publish through the gateway's
// GraphQL `nextArgs` + `publish`, read with `all_<schema>`, watch with a graphql-ws subscription.
// shirokuma's browser bundle comes from a CDN; any copy of `shirokuma/lib/esm-bundle` works.

import {
  KeyPair,
  Session,
  initWebAssembly,
} from 'https://cdn.jsdelivr.net/npm/shirokuma@0.1.3/lib/esm-bundle/index.min.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);
if (params.get('node')) $('node').value = params.get('node');
if (params.get('schema')) $('schema').value = params.get('schema');

await initWebAssembly();
// A key pair kept in this browser, so the notes keep one author.
const stored = window.localStorage.getItem('pandanode-example-key');
const keyPair = stored ? new KeyPair(stored) : new KeyPair();
window.localStorage.setItem('pandanode-example-key', keyPair.privateKey());

const endpoint = () => `${$('node').value.replace(/\/$/, '')}/graphql`;
const schemaId = () => $('schema').value.trim();
const status = (text) => { $('status').textContent = text; };

async function graphql(query, variables = {}) {
  const response = await fetch(endpoint(), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(body.errors.map((e) => e.message).join('; '));
  return body.data;
}

function show(documents) {
  $('notes').replaceChildren(...documents.map(({ meta, fields }) => {
    const item = document.createElement('li');
    item.textContent = `${fields.title} `;
    const small = document.createElement('small');
    small.textContent = meta.owner.slice(0, 8);
    item.append(small);
    return item;
  }));
}

async function refresh() {
  if (!schemaId()) return status('Enter a schema id.');
  const data = await graphql(`{
    all_${schemaId()}(first: 100, orderDirection: DESC) {
      totalCount
      documents { meta { documentId owner } fields { title } }
    }
  }`);
  const page = data[`all_${schemaId()}`];
  show(page.documents);
  status(`${page.totalCount} notes`);
}

// Live: the gateway speaks graphql-ws on ws(s)://<node>/graphql; any change refreshes the list.
let socket = null;
function watch() {
  if (socket) socket.close();
  if (!schemaId()) return;
  socket = new WebSocket(endpoint().replace(/^http/, 'ws'), 'graphql-transport-ws');
  socket.onopen = () => socket.send(JSON.stringify({ type: 'connection_init' }));
  socket.onmessage = ({ data }) => {
    const message = JSON.parse(data);
    if (message.type === 'connection_ack') {
      socket.send(JSON.stringify({
        id: 'notes',
        type: 'subscribe',
        payload: { query: `subscription { all_${schemaId()} { kind document { meta { documentId } } } }` },
      }));
    } else if (message.type === 'next') {
      refresh().catch((error) => status(String(error)));
    } else if (message.type === 'ping') {
      socket.send(JSON.stringify({ type: 'pong' }));
    }
  };
}

$('write').addEventListener('submit', async (event) => {
  event.preventDefault();
  const title = $('title').value.trim();
  if (!title) return;
  try {
    const session = new Session(endpoint()).setKeyPair(keyPair).setSchemaId(schemaId());
    await session.create({ title });
    $('title').value = '';
    status('Published.');
  } catch (error) {
    status(String(error));
  }
});
for (const id of ['node', 'schema']) {
  $(id).addEventListener('change', () => { watch(); refresh().catch((e) => status(String(e))); });
}
watch();
refresh().catch((error) => status(String(error)));
