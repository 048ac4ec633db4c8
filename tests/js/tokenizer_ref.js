#!/usr/bin/env node
// tokenizer_ref.js: reference encodings from Hugging Face's `tokenizers`
// (the Rust library, prebuilt in the npm package) for tests/test_tokenizer.c.
//
//   node tokenizer_ref.js TOKENIZER_JSON STRINGS_JSONL OUT_JSONL
//
// STRINGS_JSONL holds one JSON string per line. OUT_JSONL gets one JSON object
// per input line, in order:
//   {"ids": [...],          encode(s, addSpecialTokens=false)
//    "ids_special": [...],  encode(s, addSpecialTokens=true)
//    "decode": "...",       decode(ids, skipSpecialTokens=false)
//    "decode_special": "...",  decode(ids_special, false)
//    "decode_skip": "..."}     decode(ids_special, true)
// Exits non-zero with a message on any error.
'use strict';
const fs = require('fs');
const path = require('path');

async function main() {
  const [tokPath, inPath, outPath] = process.argv.slice(2);
  if (!tokPath || !inPath || !outPath) {
    console.error('usage: node tokenizer_ref.js TOKENIZER_JSON STRINGS_JSONL OUT_JSONL');
    process.exit(2);
  }
  let Tokenizer;
  try {
    ({ Tokenizer } = require(path.join(__dirname, 'node_modules', 'tokenizers')));
  } catch (e) {
    console.error('tokenizer_ref.js: cannot load the npm package "tokenizers" from ' +
      path.join(__dirname, 'node_modules') + ': ' + e.message + ' (run scripts/setup.sh)');
    process.exit(3);
  }
  const tok = Tokenizer.fromFile(tokPath);
  const lines = fs.readFileSync(inPath, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    let s;
    try {
      s = JSON.parse(lines[i]);
    } catch (e) {
      throw new Error(`${inPath}:${i + 1}: not a JSON string: ${e.message}`);
    }
    if (typeof s !== 'string') throw new Error(`${inPath}:${i + 1}: not a JSON string`);
    const ids = Array.from((await tok.encode(s, null, { addSpecialTokens: false })).getIds());
    const idsSpecial = Array.from((await tok.encode(s, null, { addSpecialTokens: true })).getIds());
    out.push(JSON.stringify({
      ids,
      ids_special: idsSpecial,
      decode: await tok.decode(ids, false),
      decode_special: await tok.decode(idsSpecial, false),
      decode_skip: await tok.decode(idsSpecial, true),
    }));
  }
  fs.writeFileSync(outPath, out.join('\n') + '\n', 'utf8');
}

main().catch((e) => {
  console.error('tokenizer_ref.js: ' + (e && e.stack ? e.stack : e));
  process.exit(1);
});
