// SPDX-License-Identifier: AGPL-3.0-or-later
//
// The client half of pandanode's benchmarks, in p2panda-js 0.8.1: encode and sign the same log
// that bench/scenarios/client_signing.py encodes and signs with pandanode.core.
//
//   node client_bench.js '{"interopDir": "…/tests/interop", "privateKey": "…",
//                          "schemaId": "…", "count": 5000, "warmup": 200}'
//
// The log is one document: a CREATE at seq 1, then UPDATEs, each pointing at the operation
// before it, with the fields of bench/workload.py (`create_fields(0)`, `update_fields(0, seq)`).
// Prints one JSON line: the seconds each step took and the hash of the last entry, which must be
// the one pandanode.core computes (so both sides did the same work, byte for byte).

'use strict';

const args = JSON.parse(process.argv[2]);
const p2panda = require(require.resolve('p2panda-js', { paths: [args.interopDir] }));
const { version } = require(require.resolve('p2panda-js/package.json', { paths: [args.interopDir] }));

// Integer-only lipmaa (the same port as tests/interop/oracle.js).
function lipmaa(n) {
  let m = 1n;
  let po3 = 3n;
  let u = n;
  while (m < n) {
    po3 *= 3n;
    m = (po3 - 1n) / 2n;
  }
  po3 /= 3n;
  if (m !== n) {
    while (u !== 0n) {
      m = (po3 - 1n) / 2n;
      po3 /= 3n;
      u %= m;
    }
    if (m !== po3) {
      po3 = m;
    }
  }
  return n - po3;
}

function encode(seq, previous) {
  const fields = new p2panda.OperationFields();
  if (seq === 1) {
    fields.insert('title', 'str', 'item 0');
    fields.insert('rank', 'int', '0');
    fields.insert('score', 'float', 0);
    fields.insert('done', 'bool', true);
    return p2panda.encodeOperation({ action: 'create', schemaId: args.schemaId, fields });
  }
  fields.insert('title', 'str', `item 0 v${seq}`);
  fields.insert('rank', 'int', String(seq));
  return p2panda.encodeOperation({
    action: 'update',
    schemaId: args.schemaId,
    previous: [previous],
    fields,
  });
}

function sign(keyPair, seq, operation, hashes) {
  const entryArgs = { logId: 0n, seqNum: BigInt(seq), operation };
  if (seq > 1) {
    entryArgs.backlink = hashes[seq - 2];
    const target = lipmaa(BigInt(seq));
    if (target !== BigInt(seq - 1)) {
      entryArgs.skiplink = hashes[Number(target) - 1];
    }
  }
  return p2panda.generateHash(p2panda.signAndEncodeEntry(entryArgs, keyPair));
}

// Encode and sign a whole log; returns the entry hashes and operations.
function fullRun(keyPair, count) {
  const hashes = [];
  const operations = [];
  for (let seq = 1; seq <= count; seq += 1) {
    const operation = encode(seq, hashes[seq - 2]);
    operations.push(operation);
    hashes.push(sign(keyPair, seq, operation, hashes));
  }
  return { hashes, operations };
}

function seconds(start) {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

const keyPair = new p2panda.KeyPair(args.privateKey);
fullRun(keyPair, Math.min(args.warmup, args.count));

let start = process.hrtime.bigint();
const { hashes, operations } = fullRun(keyPair, args.count);
const fullS = seconds(start);

start = process.hrtime.bigint();
for (let seq = 1; seq <= args.count; seq += 1) {
  encode(seq, hashes[seq - 2]);
}
const encodeS = seconds(start);

start = process.hrtime.bigint();
for (let seq = 1; seq <= args.count; seq += 1) {
  sign(keyPair, seq, operations[seq - 1], hashes);
}
const signS = seconds(start);

process.stdout.write(
  `${JSON.stringify({
    version,
    node: process.version,
    count: args.count,
    fullS,
    encodeS,
    signS,
    lastHash: hashes[hashes.length - 1],
  })}\n`,
);
