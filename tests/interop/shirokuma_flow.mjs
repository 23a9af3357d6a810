// SPDX-License-Identifier: AGPL-3.0-or-later
//
// An app's write flow with shirokuma 0.1.3 against a node's GraphQL endpoint: create, update and
// delete one document through `nextArgs` + `publish`, signed by p2panda-js inside shirokuma.
//
// Usage: node shirokuma_flow.mjs <graphql endpoint> <schema id>
// Prints one JSON line: {"publicKey", "created", "updated", "deleted"} (document view ids).

import { KeyPair, Session, initWebAssembly } from 'shirokuma';

const [endpoint, schemaId] = process.argv.slice(2);

await initWebAssembly();
const keyPair = new KeyPair();
const session = new Session(endpoint).setKeyPair(keyPair).setSchemaId(schemaId);

const created = await session.create({ title: 'from shirokuma', count: 1099511627783n });
const updated = await session.update({ title: 'updated by shirokuma' }, created);
const deleted = await session.delete(updated);

console.log(JSON.stringify({ publicKey: keyPair.publicKey(), created, updated, deleted }));
