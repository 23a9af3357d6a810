// SPDX-License-Identifier: AGPL-3.0-or-later
//
// A live query as an app writes it with the `graphql-ws` client: subscribe to `all_S` on the
// node's GraphQL WebSocket and print every change as one JSON line, until `count` have arrived.
//
// Usage: node subscribe_flow.mjs <ws endpoint> <schema id> <count>
// Prints {"kind", "documentId", "viewId", "fields"} lines, then {"done": true}.

import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, schemaId, count] = process.argv.slice(2);
const client = createClient({ url, webSocketImpl: WebSocket, retryAttempts: 0 });
const query = `subscription Live {
  all_${schemaId}(includeExisting: true) {
    kind
    document { meta { documentId viewId } fields { title } }
  }
}`;

let seen = 0;
await new Promise((resolve, reject) => {
  const stop = client.subscribe(
    { query },
    {
      next: (result) => {
        if (result.errors) {
          reject(new Error(JSON.stringify(result.errors)));
          return;
        }
        const change = result.data[`all_${schemaId}`];
        const { documentId, viewId } = change.document.meta;
        const fields = change.document.fields;
        console.log(JSON.stringify({ kind: change.kind, documentId, viewId, fields }));
        seen += 1;
        if (seen >= Number(count)) {
          stop();
          resolve();
        }
      },
      error: (error) => reject(error instanceof Error ? error : new Error(JSON.stringify(error))),
      complete: () => resolve(),
    },
  );
});
await client.dispose();
console.log(JSON.stringify({ done: true, seen }));
