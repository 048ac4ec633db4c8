/* lcmt.h: the on-device runtime of LC++ bundles, the one public header of
 * liblcmt_runtime (static and shared). An app opens a base model once,
 * opens a bundle made for it (export/BUNDLE.md), and answers requests as
 * one of the bundle's compositional tasks, switching tasks at will.
 *
 *   lcmt_model   *m;  lcmt_model_open(path, NULL, &m, msg, sizeof msg);
 *   lcmt_bundle  *b;  lcmt_bundle_open(m, "tasks.lcb", NULL, &b, msg, sizeof msg);
 *   lcmt_session *s;  lcmt_session_new(m, b, "summary+formal", NULL, &s, msg, sizeof msg);
 *   lcmt_session_answer(s, dialogue, &stream, &answer);   ... lcmt_free(answer);
 *   lcmt_session_set_task(s, "summary+spanish");           (microseconds)
 *   lcmt_session_free(s); lcmt_bundle_free(b); lcmt_model_free(m);
 *
 * Ownership. Every *_open / *_new has its *_free (NULL is accepted).
 * A bundle refers to its model and a session to its model and bundle:
 * free sessions before their bundle, bundles before their model. Strings
 * returned by the library are owned by the object they come from (valid
 * until it is freed) except answers, which the caller frees with lcmt_free.
 *
 * Memory. The base's float32 weights are used in place from the file
 * mapping (safetensors F32; other stored types are converted once at
 * open). A bundle's tasks are all prepared at lcmt_bundle_open (LoRA views
 * into the bundle mapping, merged LoRAs, calibrations), so a session only
 * adds its KV cache and a task switch only swaps pointers. Any number of
 * sessions share one model and one bundle without copying them.
 *
 * Threading. A model and a bundle are immutable once opened: any number of
 * threads may use them at once (open sessions over them, query them). A
 * session is used by one thread at a time; lcmt_session_cancel is the one
 * call that may be made on a session from another thread while it answers.
 * The library has no global mutable state and starts no threads (unless
 * built with LCMT_OPENMP, where the kernels use OpenMP's pool).
 *
 * Errors. Every call that can fail returns an lcmt_status. Functions that
 * create an object write the message (one line naming the file and what is
 * wrong) into the caller's buffer msg[msg_cap] (may be NULL); a session
 * keeps the message of its last failed call (lcmt_session_last_error).
 * Bad input never aborts. */
#ifndef LCMT_H
#define LCMT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LCMT_BUILD) && defined(__GNUC__)
#define LCMT_API __attribute__((visibility("default")))
#else
#define LCMT_API
#endif

#define LCMT_VERSION_MAJOR 0
#define LCMT_VERSION_MINOR 1

typedef enum {
    LCMT_OK = 0,
    LCMT_ERR_ARG,         /* a NULL or out-of-range argument */
    LCMT_ERR_IO,          /* a file cannot be read or is malformed */
    LCMT_ERR_WRONG_BASE,  /* the bundle was made for another base model */
    LCMT_ERR_NO_TASK,     /* no such task in the bundle */
    LCMT_ERR_UNSUPPORTED, /* the task's merge cannot run here (a dense merge would need a
                           * copy of the base; an SVD merge needs LAPACK, not in the runtime) */
    LCMT_ERR_CANCELLED,   /* lcmt_session_cancel ended the answer */
    LCMT_ERR_NOMEM,
    LCMT_ERR_FAIL,        /* any other failure (the message says what) */
    LCMT_ERR_INTEGRITY    /* a file's SHA-256 is not the one pinned */
} lcmt_status;

/* "ok", "invalid argument", ... (static strings). */
LCMT_API const char *lcmt_status_str(lcmt_status s);

typedef struct lcmt_model lcmt_model;
typedef struct lcmt_bundle lcmt_bundle;
typedef struct lcmt_session lcmt_session;

/* ---- base model ---------------------------------------------------------- */

typedef struct {
    const char *tokenizer_path; /* NULL: the model's own (folder's tokenizer.json, or
                                 * tokenizer.bin / tok<vocab>.bin beside a checkpoint) */
    int tokenizer_optional;     /* 1: open without a tokenizer when none is found (then only
                                 * lcmt_session_answer_ids, without stop strings, works) */
    int copy_weights;           /* 1: read the weights into memory (huge pages where possible)
                                 * instead of mapping them: costs a copy and private memory,
                                 * but on systems where touching mapped 4 kB pages the first
                                 * time is slow it can bring the first token sooner */
    const char *base_type;      /* NULL or "f32": the weights as the file has them (a GGUF
                                 * whose matrices share one type keeps it); "f16",
                                 * "bf16", "q8_0", "q4_0", "q4_k", "q6_k": the matrices are
                                 * held in that type (quantized bit-exactly as llama.cpp does)
                                 * and decoded with quantized matrix-vector kernels (the
                                 * file's mapping is then released). A bundle made for the
                                 * float32 base still belongs to it. The type a GGUF already
                                 * holds changes nothing; another type for a stored GGUF is
                                 * refused. */
} lcmt_model_params;

LCMT_API lcmt_model_params lcmt_model_default_params(void);

/* Opens a base: a Hugging Face folder (config.json + safetensors, mapped),
 * a llama2.c checkpoint (read into memory) or a GGUF file: when its
 * matrices share one stored type (Q8_0, Q4_0, F16, ...; F16 for rows that
 * are not whole blocks) they are used in place from the mapping, nothing
 * converted (llama's q/k rows are copied back into HF order); a float32
 * or mixed-type GGUF is read into memory as float32. params may be NULL. */
LCMT_API lcmt_status lcmt_model_open(const char *path, const lcmt_model_params *params,
                                     lcmt_model **out, char *msg, size_t msg_cap);
LCMT_API void lcmt_model_free(lcmt_model *m);

typedef struct {
    int n_layers, dim, n_heads, n_kv_heads, hidden_dim, vocab_size, max_seq_len;
    size_t n_params;
    size_t mapped_bytes; /* weights used in place from the file */
    size_t owned_bytes;  /* weights held in memory (converted or read) */
    int has_tokenizer;
} lcmt_model_info;

LCMT_API void lcmt_model_get_info(const lcmt_model *m, lcmt_model_info *info);

/* ---- bundle --------------------------------------------------------------- */

typedef enum {
    /* Shapes, parameter count and the CRC-32 of a fixed sample of the
     * weights (8 blocks of 1 KiB per tensor): refuses another base or a
     * wrong file for 0.4 ms of CRC work at 110M parameters; a base edited only outside
     * the sample passes. Bundles without the sample get LCMT_VERIFY_FULL. */
    LCMT_VERIFY_SAMPLE = 0,
    /* Also the CRC-32 of every weight byte (0.28 s for 438 MB in memory with the CRC tables; about 5x faster with PCLMULQDQ). */
    LCMT_VERIFY_FULL,
    /* LCMT_VERIFY_FULL, and the SHA-256 of the base's files (re-read from
     * the path lcmt_model_open was given) against the base.sha256 the
     * bundle's manifest records (export/BUNDLE.md, Integrity): the exact
     * files export saw, not only the same weights. Bundles without it are
     * refused (LCMT_ERR_WRONG_BASE). */
    LCMT_VERIFY_SHA256
} lcmt_verify;

typedef struct {
    lcmt_verify verify;
    /* 1: prepare dense-merge tasks too, each in a private copy of the base
     * weights (n_params * 4 bytes per task); 0 (default): they are listed
     * as unsupported. */
    int allow_dense_copy;
    /* non-NULL: prepare only this task (the others are listed, unsupported) */
    const char *only_task;
    /* Pins (SHA-256, 64 hex digits, or the path of a sha256sum-style file
     * such as the BUNDLE.lcb.sha256 export writes). NULL: not checked.
     * bundle_sha256: the whole bundle file (hashed from its mapping, about
     * 1.5 GB/s here); base_sha256: the base's files as integrity.h defines
     * the digest (the bundle's base.sha256). A mismatch is LCMT_ERR_INTEGRITY.
     * Builds without libcrypto (-DLCMT_SHA256=OFF) refuse a pin with
     * LCMT_ERR_UNSUPPORTED. */
    const char *bundle_sha256;
    const char *base_sha256;
} lcmt_bundle_params;

LCMT_API lcmt_bundle_params lcmt_bundle_default_params(void);

/* Maps and validates the bundle, checks it belongs to model (else
 * LCMT_ERR_WRONG_BASE), and prepares every task it can run. params may be
 * NULL. The model must outlive the bundle. */
LCMT_API lcmt_status lcmt_bundle_open(const lcmt_model *model, const char *path,
                                      const lcmt_bundle_params *params, lcmt_bundle **out,
                                      char *msg, size_t msg_cap);
LCMT_API void lcmt_bundle_free(lcmt_bundle *b);

typedef struct {
    const char *name;            /* e.g. "summary+formal" */
    const char *method;          /* the evaluated method, e.g. "LC++" */
    const char *merge;           /* the merge recipe's method, e.g. "concat" */
    const char *prompt_template; /* e.g. "{dialogue}\nFormal summary:"; NULL if none */
    const char *results_json;    /* the evaluation results calibrate measured (JSON) */
    int supported;               /* 1 if a session can run it */
    const char *unsupported_why; /* NULL when supported */
    size_t adapter_bytes;        /* bytes of the task's prepared adapters */
    /* the generation settings it was evaluated with (-1 where the results do not say) */
    int max_new_tokens;
    float temperature, top_p;
    int n_stop;
} lcmt_task_info;

typedef struct {
    size_t file_bytes;      /* the bundle file */
    size_t mapped_bytes;    /* adapter bytes used in place from the mapping (f32) */
    size_t converted_bytes; /* adapter bytes converted at open (f16, i8) */
} lcmt_bundle_info;

LCMT_API void lcmt_bundle_get_info(const lcmt_bundle *b, lcmt_bundle_info *info);
LCMT_API int lcmt_bundle_n_tasks(const lcmt_bundle *b);
/* Task i (0 <= i < n_tasks); the strings live as long as b. */
LCMT_API lcmt_status lcmt_bundle_task(const lcmt_bundle *b, int i, lcmt_task_info *info);
/* The index of the named task, or -1. */
LCMT_API int lcmt_bundle_find_task(const lcmt_bundle *b, const char *name);

/* ---- session -------------------------------------------------------------- */

typedef struct {
    /* Generation settings; negative = the task's own (what calibrate
     * evaluated with; without a task: 256 tokens, greedy). */
    int max_new_tokens;
    float temperature; /* 0 = greedy */
    float top_p;
    uint64_t seed;     /* sampling seed, reset at every answer (answers are reproducible) */
    int raw_prompt;    /* 1: the input is the whole prompt (no task template) */
    int no_stop;       /* 1: no stop strings */
    int n_ctx;         /* KV-cache positions; 0 = the model's max_seq_len */
    const char *stop[8]; /* n_stop > 0: these stop strings instead of the task's */
    int n_stop;
    /* Prompt text and tokens (data-loaders/prompt.h): a task calibrated with
     * the chat prompt format renders its prompt with the model's chat
     * template (tokenizer_config.json) unless raw_prompt; chat = 1 does so
     * for any input. BOS is put first once, unless no_bos or the task was
     * calibrated without it. */
    int chat;
    const char *system; /* the chat system message; NULL = the task's (if any) */
    int no_bos;
} lcmt_session_params;

LCMT_API lcmt_session_params lcmt_session_default_params(void);

/* A session over model, answering as bundle's task (bundle and task may be
 * NULL: the base alone; task may be NULL when the bundle has one task).
 * LCMT_ERR_NO_TASK / LCMT_ERR_UNSUPPORTED name the task. */
LCMT_API lcmt_status lcmt_session_new(const lcmt_model *model, const lcmt_bundle *bundle,
                                      const char *task, const lcmt_session_params *params,
                                      lcmt_session **out, char *msg, size_t msg_cap);
LCMT_API void lcmt_session_free(lcmt_session *s);

/* Adapters from files instead of a bundle: PEFT LoRA folders
 * (adapter_config.json + adapter_model.safetensors) with a merge weight,
 * and calibrations (safetensors), all active at once. */
typedef struct {
    const char *path;
    float weight;       /* LoRA merge weight (1 = as trained); unused for calibrations */
    int is_calibration; /* 0: LoRA; 1: calibration (LC / LC++) */
} lcmt_adapter_spec;

LCMT_API lcmt_status lcmt_session_new_with_adapters(const lcmt_model *model, const lcmt_adapter_spec *specs,
                                                    int n_specs, const lcmt_session_params *params,
                                                    lcmt_session **out, char *msg, size_t msg_cap);

/* Switches to another task of the session's bundle: swaps adapter
 * pointers and settings (no allocation unless the new task's rank exceeds
 * every earlier one). On failure the session keeps its task. */
LCMT_API lcmt_status lcmt_session_set_task(lcmt_session *s, const char *task);
/* The current task's name (NULL without a bundle). */
LCMT_API const char *lcmt_session_task(const lcmt_session *s);

typedef struct {
    /* text that became final (never a stop string or what follows it,
     * never half a UTF-8 character); may be NULL */
    void (*on_text)(void *user, const char *text, size_t len);
    /* every generated token id; may be NULL */
    void (*on_token)(void *user, int id);
    void *user;
} lcmt_stream;

/* Answers input (filled into the task's prompt template unless
 * raw_prompt) from an empty KV cache. stream may be NULL. *answer (if
 * answer is non-NULL) receives the whole answer, malloc'd: free it with
 * lcmt_free. After lcmt_session_cancel: LCMT_ERR_CANCELLED, with the text
 * generated so far in *answer. */
LCMT_API lcmt_status lcmt_session_answer(lcmt_session *s, const char *input,
                                         const lcmt_stream *stream, char **answer);
/* The same from token ids (no template, no BOS added; prompt_ids[i] in
 * [0, vocab_size)). */
LCMT_API lcmt_status lcmt_session_answer_ids(lcmt_session *s, const int *prompt_ids, int n_ids,
                                             const lcmt_stream *stream, char **answer);

typedef struct {
    int n_prompt;         /* prompt tokens used */
    int n_new;            /* tokens generated */
    int n_steps;          /* decoder positions run (prompt tokens, prefilled, included) */
    double seconds;       /* the whole answer */
    double first_seconds; /* from the call to the end of the prompt's prefill (time to
                           * first token) */
} lcmt_answer_stats;

/* Statistics of the session's last answer. */
LCMT_API void lcmt_session_last_stats(const lcmt_session *s, lcmt_answer_stats *stats);

/* The logits (vocab_size floats, into out[0..n_out)) after the prompt made
 * from input as lcmt_session_answer makes it: for scoring and tests. */
LCMT_API lcmt_status lcmt_session_prompt_logits(lcmt_session *s, const char *input, float *out,
                                                int n_out);
/* Ends the answer in progress at the next token (or the next answer, if
 * none is in progress: the flag is cleared when an answer returns). Safe
 * from any thread. */
LCMT_API void lcmt_session_cancel(lcmt_session *s);
/* The message of the session's last failed call ("" if none). */
LCMT_API const char *lcmt_session_last_error(const lcmt_session *s);

LCMT_API void lcmt_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
