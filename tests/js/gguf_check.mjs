#!/usr/bin/env node
// gguf_check.mjs: parses a GGUF file with Hugging Face's independent parser
// (@huggingface/gguf) and prints what it found as one JSON object, for
// tests/test_interop.c to compare with what the C writer meant to write:
//
//   node tests/js/gguf_check.mjs FILE
//   -> {"version": 3, "littleEndian": true, "tensorDataOffset": N,
//       "metadata": {"<key>": {"type": <gguf value type>, "value": ...}, ...},
//       "tensors": [{"name", "n_dims", "shape": [ne0, ne1, ...], "dtype", "offset"}, ...]}
//
// Shapes are in GGUF order (ne[0] innermost). BigInt values are printed as
// numbers (they are small here). Exit status 1 with a message on stderr when
// the parser rejects the file.
import { gguf } from "@huggingface/gguf";

const file = process.argv[2];
if (!file) {
  console.error("usage: gguf_check.mjs FILE.gguf");
  process.exit(2);
}

const num = (v) => (typeof v === "bigint" ? Number(v) : v);

try {
  const r = await gguf(file, { allowLocalFile: true, typedMetadata: true });
  const metadata = {};
  for (const [k, e] of Object.entries(r.typedMetadata)) {
    const v = Array.isArray(e.value) ? e.value.map(num) : num(e.value);
    metadata[k] = { type: e.type, value: v };
  }
  const out = {
    version: num(r.metadata.version),
    littleEndian: r.littleEndian,
    tensorDataOffset: num(r.tensorDataOffset),
    metadata,
    tensors: r.tensorInfos.map((t) => ({
      name: t.name,
      n_dims: t.n_dims,
      shape: t.shape.map(num),
      dtype: t.dtype,
      offset: num(t.offset),
    })),
  };
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (e) {
  console.error(`gguf_check: ${file}: ${e.message}`);
  process.exit(1);
}
