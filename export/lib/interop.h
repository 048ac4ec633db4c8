/* interop.h: the merged LoRAs plus an LC++ calibration as files other tools
 * load (export/INTEROP.md has the exact layouts and their sources):
 *
 *   - one PEFT adapter (adapter_config.json + adapter_model.safetensors),
 *     rank-concatenated, exactly equal to merged + LC++;
 *   - a GGUF v3 LoRA adapter for llama.cpp (`--lora FILE`), as llama.cpp's
 *     convert_lora_to_gguf.py writes it (tensor names, reversed dims, the
 *     Q/K row permutation of the llama architecture, adapter.* keys).
 *
 * A bias calibration (LC) cannot be written as a LoRA: B (A x) has no
 * constant term. It is refused with an error, never dropped; the project's
 * own bundle carries it. */
#ifndef INTEROP_H
#define INTEROP_H

#include "lc_err.h"
#include "model.h"

/* One LoRA exactly equal to `merged` (as the model applies it: weight *
 * coef * scale * B (A x)) plus the LC++ pair of `cb` (P2 (P1 x)):
 *   A = [A_merged ; P1]                       (rank r + k rows)
 *   B = [weight*coef*scale*B_merged , P2]     (columns)
 * with scale 1 (alpha = rank r + k, no rsLoRA), weight 1 and no coef. The
 * result covers the union of modules; when cb is given every layer is
 * adapted (a shared calibration is replicated into every layer, a
 * per-layer one uses its layer's slot), and a (layer, module) that one side
 * does not adapt gets zero rows/columns for that side. merged or cb may be
 * NULL (not both): NULL cb just folds weight, coef and scale into B.
 * Errors (LC_FAIL, err says why): cb is a bias calibration; r + k exceeds
 * min(out, in) of an adapted module; sizes do not match c. *out is
 * lora_init'd here (lora_free it). */
int lora_append_calib(const lora *merged, const calib *cb, const model_config *c, lora *out,
                      lc_err *err);

/* A PEFT folder for `l` (lora_save_peft). A LoRA with weight != 1 or
 * learned-merge coefficients is first folded into an equivalent scale-1
 * LoRA (lora_append_calib with no calibration), since PEFT's config has no
 * place for either. */
int peft_write_lora(const lora *l, const model_config *c, const char *dir, lc_err *err);

/* The GGUF architecture llama.cpp's HF converter gives a model type and
 * whether it permutes q/k rows: "llama" -> ("llama", 1), "mistral"
 * (MistralForCausalLM is converted by LlamaModel) -> ("llama", 1),
 * "qwen2" -> ("qwen2", 0). LC_FAIL for anything else. */
int gguf_lora_arch(const model_config *c, const char **gguf_arch, int *permute_qk, lc_err *err);

/* llama.cpp's LlamaModel.permute on the rows of a (rows, cols) row-major
 * matrix: w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)
 * .reshape(rows, cols), i.e. out[h*hd + 2*j + t] = in[h*hd + t*hd/2 + j]
 * (hd = rows/n_head): HF's rotate-half pairs (j, j + hd/2) become the
 * interleaved pairs (2j, 2j+1) llama.cpp's "llama" RoPE rotates. rows must
 * be a multiple of 2*n_head. */
void gguf_permute_rows(const float *in, float *out, int rows, int cols, int n_head);

/* Writes `l` as a GGUF v3 LoRA adapter (little-endian, alignment 32):
 *   keys: general.architecture, general.type = "adapter", general.name,
 *         adapter.type = "lora", adapter.lora.alpha (float32),
 *         general.quantization_version = 2 (uint32)
 *   tensors, per adapted layer i and module, in layer then q,k,v,o,gate,up,
 *   down order: blk.{i}.{attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|
 *   ffn_down}.weight.lora_a with dims [in, r] (ggml ne order: PyTorch
 *   (r, in) reversed) and .lora_b with dims [r, out];
 *   F32 (f16 = 0) or F16 (f16 = 1).
 * lora_b rows of q and k are permuted (gguf_permute_rows with n_heads for q,
 * n_kv_heads for k) when gguf_lora_arch says so. llama.cpp scales by
 * alpha / r, so alpha = scale * r; weight and coef are folded into lora_b.
 * Written to a temporary file beside `path` and renamed onto it. Errors
 * name the file (and the tensor). */
int gguf_write_lora(const lora *l, const model_config *c, const char *path, int f16, lc_err *err);

#endif
