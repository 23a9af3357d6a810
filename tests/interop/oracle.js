// SPDX-License-Identifier: AGPL-3.0-or-later
//
// p2panda-js 0.8.1 as a reference oracle for pandanode's interop tests.
//
// Protocol: JSON lines. On start the oracle writes one line
//   {"ready": true, "version": "0.8.1", "node": "v20…"}
// and then answers every request line
//   {"id": 1, "op": "decodeEntry", "args": {…}}
// with exactly one response line
//   {"id": 1, "ok": <result>}   or   {"id": 1, "error": "<message>"}
// (plus "trapped": true when p2panda-js panicked instead of returning an error). The op "batch"
// ({"calls": [{"op", "args"}, …]}) answers many requests in one line: a list of {"ok"}/{"error"}.
// stdin closing ends the process.
//
// JSON conventions (shared with tests/interop/oracle_client.py):
//   - bytes, hashes, keys, signatures, entries and operations: lowercase hex strings;
//   - u64 / i64 numbers: decimal strings (JSON numbers cannot hold them);
//   - floats: the 16 hex digits of the IEEE-754 binary64 bit pattern, big-endian, so NaN,
//     ±Infinity and -0 survive the trip;
//   - typed operation fields (encodeOperation input, randomOperations output): a list of
//     [name, type, value] with type one of bool, int, float, str, bytes, relation,
//     relation_list, pinned_relation, pinned_relation_list;
//   - plain (schema-less) decoded fields: a list of [name, tagged] in decode order, where tagged
//     is one of {"bool": b}, {"int": "dec"}, {"float": "bits"}, {"str": s}, {"bytes": hex},
//     {"hashes": [hex, …]} (flat list, also the empty list) or {"hashLists": [[hex, …], …]}.
//
// The public p2panda-js wrapper refuses an empty hex string ("not a valid hexadecimal string")
// before it reaches WebAssembly. For empty data (`generateHash`, `verifySignature`, `decodeEntry`,
// `decodeOperation`, an empty payload in `signAndEncodeEntry`) the oracle calls the WebAssembly
// export (the same p2panda-rs code the wrapper calls) directly, so the answer comes from
// p2panda-rs and not from the wrapper's input check.
//
// Beware: `KeyPair.sign(hex)` and `verifySignature(publicKey, hex, signature)` of p2panda-js 0.8.1
// check that their argument is hex, then sign / verify the UTF-8 bytes of that *string*, not the
// bytes it encodes. The `sign` and `verifySignature` ops pass the string through unchanged.

'use strict';

const path = require('path');
const crypto = require('crypto');
const readline = require('readline');

const EXPECTED_VERSION = '0.8.1';

function die(message) {
  process.stderr.write(`oracle.js: ${message}\n`);
  process.exit(3);
}

let p2panda;
let wasm;
let version;

// (Re)load p2panda-js with a fresh WebAssembly instance. A Rust panic inside WebAssembly traps
// ("unreachable") without unwinding, which can leave the instance's own stack pointer behind; so
// after every trap the module is loaded anew rather than trusted again.
function load() {
  const main = require.resolve('p2panda-js');
  const root = path.dirname(path.dirname(path.dirname(main)));
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(root + path.sep)) {
      delete require.cache[key];
    }
  }
  p2panda = require('p2panda-js');
  wasm = require(path.join(path.dirname(main), 'wasm', 'index.cjs'));
  version = require('p2panda-js/package.json').version;
}

try {
  load();
} catch (error) {
  die(
    `p2panda-js is not installed (${error.message}); ` +
      'run `make test` or `npm install` in tests/interop',
  );
}
if (version !== EXPECTED_VERSION) {
  die(`p2panda-js ${version} is installed, the interop tests need exactly ${EXPECTED_VERSION}`);
}

// ------------------------------------------------------------------------------------------------
// Conversions

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;

function hexToBytes(hex) {
  if (typeof hex !== 'string' || !HEX_RE.test(hex)) {
    throw new Error(`oracle: not a hex string: ${JSON.stringify(hex)}`);
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

function bytesToHex(bytes) {
  return Buffer.from(bytes).toString('hex');
}

function floatToBits(value) {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, value);
  return view.getBigUint64(0).toString(16).padStart(16, '0');
}

function bitsToFloat(bits) {
  if (typeof bits !== 'string' || !/^[0-9a-fA-F]{16}$/.test(bits)) {
    throw new Error(`oracle: a float is 16 hex digits of its binary64 bits, not ${bits}`);
  }
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${bits}`));
  return view.getFloat64(0);
}

function optionalString(value) {
  return value === undefined || value === null ? null : value;
}

function toBigIntArg(value, fallback) {
  if (value === undefined || value === null) {
    return BigInt(fallback);
  }
  return BigInt(value);
}

// A typed [name, type, value] → the value `OperationFields.insert` expects.
function typedValue(type, value) {
  switch (type) {
    case 'int':
      return String(value);
    case 'float':
      return bitsToFloat(value);
    case 'bytes':
      return hexToBytes(value);
    default:
      return value;
  }
}

function buildFields(fields) {
  if (fields === undefined || fields === null) {
    return undefined;
  }
  const operationFields = new p2panda.OperationFields();
  for (const [name, type, value] of fields) {
    operationFields.insert(name, type, typedValue(type, value));
  }
  return operationFields;
}

function tagPlainValue(value) {
  if (typeof value === 'boolean') {
    return { bool: value };
  }
  if (typeof value === 'bigint') {
    return { int: value.toString() };
  }
  if (typeof value === 'number') {
    return { float: floatToBits(value) };
  }
  if (typeof value === 'string') {
    return { str: value };
  }
  if (value instanceof Uint8Array) {
    return { bytes: bytesToHex(value) };
  }
  if (Array.isArray(value)) {
    if (value.every((item) => typeof item === 'string')) {
      return { hashes: value };
    }
    if (value.every((item) => Array.isArray(item))) {
      return { hashLists: value };
    }
  }
  throw new Error(`oracle: unexpected plain value ${String(value)}`);
}

function entryToJson(entry) {
  return {
    publicKey: entry.publicKey,
    logId: entry.logId.toString(),
    seqNum: entry.seqNum.toString(),
    skiplink: optionalString(entry.skiplink),
    backlink: optionalString(entry.backlink),
    payloadSize: entry.payloadSize.toString(),
    payloadHash: entry.payloadHash,
    signature: entry.signature,
  };
}

// ------------------------------------------------------------------------------------------------
// Lipmaa, for `makeLog` (integer-only port of lipmaa-link 0.2.2; p2panda-js has no export for it).
// If it were wrong, p2panda-js itself would refuse to sign ("backlink and skiplink not valid").

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

// ------------------------------------------------------------------------------------------------
// Fresh random cases, generated by this process (Node's CSPRNG), not by the Python side.

function randomInt(below) {
  return crypto.randomInt(below);
}

function pick(items) {
  return items[randomInt(items.length)];
}

function randomHash() {
  return `0020${crypto.randomBytes(32).toString('hex')}`;
}

function randomU64() {
  return crypto.randomBytes(8).readBigUInt64BE(0);
}

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
const INT_EDGES = [
  0n, 1n, -1n, 23n, 24n, -24n, -25n, 255n, 256n, -256n, -257n, 65535n, 65536n, 2n ** 32n - 1n,
  2n ** 32n, -(2n ** 32n), I64_MAX, I64_MIN,
];
const FLOAT_EDGES = [
  0, -0, 0.5, 1, -1, 1.5, 3.5, 12.3, 0.1, 1e-8, 65504, 65505, 100000, 3.4028234663852886e38,
  5.960464477539063e-8, 6.103515625e-5, Number.MIN_VALUE, Number.MAX_VALUE, Infinity, -Infinity,
  NaN, Math.PI, 2 ** 53, -(2 ** 24),
];
const STRING_EDGES = [
  '', 'a', 'しろくま', '🐼🎋', 'null', '0', ' ', 'Zoë ❤ p2panda', '\u0000', 'x'.repeat(300),
];

function randomString() {
  if (randomInt(3) === 0) {
    return pick(STRING_EDGES);
  }
  const alphabet = ['a', 'Z', '_', '1', 'é', 'ß', '€', '中', '🐼', ' ', '"', '\\', '\n'];
  let out = '';
  const length = randomInt(24);
  for (let i = 0; i < length; i += 1) {
    out += pick(alphabet);
  }
  return out;
}

function randomFloat() {
  switch (randomInt(4)) {
    case 0:
      return pick(FLOAT_EDGES);
    case 1: {
      // Random non-NaN binary64 bit patterns: every width (f16/f32/f64) gets exercised.
      for (;;) {
        const value = bitsToFloat(crypto.randomBytes(8).toString('hex'));
        if (!Number.isNaN(value)) {
          return value;
        }
      }
    }
    case 2:
      // Exactly representable as f16 or f32 in many cases.
      return (randomInt(4096) - 2048) / 2 ** randomInt(12);
    default:
      return (Math.random() - 0.5) * 10 ** (randomInt(40) - 20);
  }
}

function randomInt64() {
  if (randomInt(2) === 0) {
    return pick(INT_EDGES);
  }
  return BigInt.asIntN(64, randomU64()) >> BigInt(randomInt(64));
}

function randomViewId() {
  const count = 1 + randomInt(3);
  const ids = [];
  for (let i = 0; i < count; i += 1) {
    ids.push(randomHash());
  }
  return ids; // unsorted on purpose: the encoder sorts
}

const FIELD_TYPES = [
  'bool',
  'int',
  'float',
  'str',
  'bytes',
  'relation',
  'relation_list',
  'pinned_relation',
  'pinned_relation_list',
];

// Returns [type, JSON value] in the typed-fields convention.
function randomField(type) {
  switch (type) {
    case 'bool':
      return [type, randomInt(2) === 1];
    case 'int':
      return [type, randomInt64().toString()];
    case 'float':
      return [type, floatToBits(randomFloat())];
    case 'str':
      return [type, randomString()];
    case 'bytes':
      return [type, crypto.randomBytes(pick([0, 1, 5, 23, 24, 34, randomInt(300)])).toString('hex')];
    case 'relation':
      return [type, randomHash()];
    case 'relation_list': {
      const ids = [];
      const count = randomInt(5);
      for (let i = 0; i < count; i += 1) {
        ids.push(ids.length > 0 && randomInt(4) === 0 ? pick(ids) : randomHash());
      }
      return [type, ids];
    }
    case 'pinned_relation':
      return [type, randomViewId()];
    case 'pinned_relation_list': {
      const views = [];
      const count = randomInt(4);
      for (let i = 0; i < count; i += 1) {
        views.push(views.length > 0 && randomInt(4) === 0 ? pick(views) : randomViewId());
      }
      return [type, views];
    }
    default:
      throw new Error(`oracle: unknown field type ${type}`);
  }
}

function randomFieldName(taken) {
  const first = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const rest = `${first}0123456789_`;
  for (;;) {
    let name = first[randomInt(first.length)];
    const length = randomInt(12);
    for (let i = 0; i < length; i += 1) {
      name += rest[randomInt(rest.length)];
    }
    if (!taken.has(name)) {
      taken.add(name);
      return name;
    }
  }
}

function randomFields() {
  const taken = new Set();
  const fields = [];
  const count = 1 + randomInt(10);
  for (let i = 0; i < count; i += 1) {
    const [type, value] = randomField(pick(FIELD_TYPES));
    fields.push([randomFieldName(taken), type, value]);
  }
  return fields;
}

function randomSchemaId() {
  switch (randomInt(3)) {
    case 0:
      return pick(['schema_definition_v1', 'schema_field_definition_v1', 'blob_v1', 'blob_piece_v1']);
    case 1:
      return `venue_${randomHash()}`;
    default: {
      const ids = randomViewId().sort();
      return `events_of_${randomInt(1000)}_${ids.join('_')}`;
    }
  }
}

function encodeSpec(spec) {
  const args = { action: spec.action, schemaId: spec.schemaId };
  if (spec.previous !== undefined && spec.previous !== null) {
    args.previous = spec.previous;
  }
  const fields = buildFields(spec.fields);
  if (fields !== undefined) {
    args.fields = fields;
  }
  return p2panda.encodeOperation(args);
}

function randomOperation(action, previous) {
  const spec = { action, schemaId: randomSchemaId(), previous: null, fields: null };
  if (action !== 'create') {
    spec.previous = previous || randomViewId().sort();
  }
  if (action !== 'delete') {
    spec.fields = randomFields();
  }
  return { spec, operation: encodeSpec(spec) };
}

// ------------------------------------------------------------------------------------------------
// Operations

function keyPairFrom(privateKey) {
  return privateKey ? new p2panda.KeyPair(privateKey) : new p2panda.KeyPair();
}

const OPS = {
  version() {
    return { version, node: process.version };
  },

  keyPair({ privateKey } = {}) {
    const keyPair = keyPairFrom(privateKey);
    return { privateKey: keyPair.privateKey(), publicKey: keyPair.publicKey() };
  },

  sign({ privateKey, data }) {
    return new p2panda.KeyPair(privateKey).sign(data);
  },

  signAndEncodeEntry({ privateKey, logId, seqNum, backlink, skiplink, operation }) {
    const args = { logId: toBigIntArg(logId, 0), seqNum: toBigIntArg(seqNum, 1), operation };
    if (backlink !== undefined && backlink !== null) {
      args.backlink = backlink;
    }
    if (skiplink !== undefined && skiplink !== null) {
      args.skiplink = skiplink;
    }
    const keyPair = new p2panda.KeyPair(privateKey);
    if (operation === '') {
      return wasm.signAndEncodeEntry(
        args.logId,
        args.seqNum,
        args.skiplink,
        args.backlink,
        '',
        keyPair.__internal,
      );
    }
    return p2panda.signAndEncodeEntry(args, keyPair);
  },

  decodeEntry({ entry }) {
    if (entry === '') {
      return entryToJson(wasm.decodeEntry(''));
    }
    return entryToJson(p2panda.decodeEntry(entry));
  },

  encodeOperation(spec) {
    return encodeSpec({ action: 'create', ...spec });
  },

  decodeOperation({ operation }) {
    if (operation === '') {
      wasm.decodeOperation(''); // throws the decoder's own error
    }
    const result = p2panda.decodeOperation(operation);
    return {
      version: result.version,
      action: result.action,
      schemaId: result.schemaId,
      previous: result.previous === undefined ? null : result.previous,
      fields:
        result.fields === undefined
          ? null
          : Array.from(result.fields.entries(), ([name, value]) => [name, tagPlainValue(value)]),
    };
  },

  generateHash({ data }) {
    return data === '' ? wasm.generateHash('') : p2panda.generateHash(data);
  },

  verifySignature({ publicKey, data, signature }) {
    if (data === '') {
      return wasm.verifySignature(publicKey, '', signature);
    }
    return p2panda.verifySignature(publicKey, data, signature);
  },

  // Random typed operations made up here; each with the typed spec and p2panda-js' encoding.
  randomOperations({ count }) {
    const out = [];
    for (let i = 0; i < count; i += 1) {
      out.push(randomOperation(pick(['create', 'create', 'update', 'delete'])));
    }
    return out;
  },

  // A whole log built by p2panda-js: links computed here from p2panda-js' own entry hashes.
  // Without `operations`, a CREATE followed by UPDATEs (each pointing at the previous operation)
  // with random fields is made up here. Without `privateKey` / `logId` they are random too.
  makeLog({ n, privateKey, logId, operations }) {
    const keyPair = keyPairFrom(privateKey);
    const log = logId === undefined || logId === null ? randomU64() : BigInt(logId);
    const count = operations ? operations.length : n;
    const entries = [];
    const hashes = [];
    const payloads = [];
    for (let seq = 1n; seq <= BigInt(count); seq += 1n) {
      const index = Number(seq) - 1;
      let operation;
      if (operations) {
        operation = operations[index];
      } else if (index === 0) {
        operation = randomOperation('create').operation;
      } else {
        operation = randomOperation('update', [hashes[index - 1]]).operation;
      }
      const args = { logId: log, seqNum: seq, operation };
      if (seq > 1n) {
        args.backlink = hashes[index - 1];
        const target = lipmaa(seq);
        if (target !== seq - 1n) {
          args.skiplink = hashes[Number(target) - 1];
        }
      }
      const entry = p2panda.signAndEncodeEntry(args, keyPair);
      entries.push(entry);
      hashes.push(p2panda.generateHash(entry));
      payloads.push(operation);
    }
    return {
      privateKey: keyPair.privateKey(),
      publicKey: keyPair.publicKey(),
      logId: log.toString(),
      entries,
      hashes,
      operations: payloads,
    };
  },

  // Many calls in one round trip; each answered with {"ok": …} or {"error": …}.
  batch({ calls }) {
    return calls.map(({ op, args }) => run(op, args));
  },
};

function run(op, args) {
  const handler = Object.prototype.hasOwnProperty.call(OPS, op) ? OPS[op] : undefined;
  if (handler === undefined || op === 'batch') {
    return { error: `oracle: unknown op ${JSON.stringify(op)}` };
  }
  try {
    return { ok: handler(args || {}) };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof WebAssembly.RuntimeError || /\bunreachable\b/.test(message)) {
      load();
      return { error: message, trapped: true };
    }
    return { error: message };
  }
}

function respond(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  if (line.trim() === '') {
    return;
  }
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    respond({ id: null, error: `oracle: invalid JSON request: ${error.message}` });
    return;
  }
  const { id, op, args } = request;
  if (op === 'batch') {
    try {
      respond({ id, ok: OPS.batch(args || {}) });
    } catch (error) {
      respond({ id, error: error instanceof Error ? error.message : String(error) });
    }
    return;
  }
  respond({ id, ...run(op, args) });
});
lines.on('close', () => process.exit(0));

respond({ ready: true, version, node: process.version });
