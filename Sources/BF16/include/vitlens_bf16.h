// bfloat16 linear layers for vitlens's engine (--precision bf16): weights stored in bf16, inputs
// rounded to bf16, products accumulated in float32 by oneDNN's matmul (AVX512_BF16 vdpbf16ps).
// oneDNN (Debian's libdnnl2) is loaded on first use with dlopen, so a vitlens without it, or a
// CPU without AVX512_BF16, runs float32 exactly as before and refuses bf16 with a reason.
#ifndef VITLENS_BF16_H
#define VITLENS_BF16_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Whether the CPU executes AVX512_BF16 (and the OS saves AVX-512 state).
int vl_cpu_has_avx512_bf16(void);

/// Loads oneDNN once; 0 on success, else -1 with the reason in `why`.
int vl_bf16_load(char *why, int why_len);

/// The oneDNN implementation chosen for bf16 matmul (e.g. "brg:avx512_core_bf16"), after a load.
const char *vl_bf16_implementation(void);

/// float32 → bfloat16, rounded to nearest even (NaN stays NaN).
void vl_to_bf16(const float *x, uint16_t *y, long n);

typedef struct vl_linear vl_linear;

/// A linear layer's weight W (n, k) row-major (PyTorch's (out, in)), stored in bf16 in the
/// layout oneDNN's matmul wants. NULL on failure, with the reason in `why`.
vl_linear *vl_linear_create(const float *w, long n, long k, char *why, int why_len);
void vl_linear_destroy(vl_linear *l);

/// y (m, n), rows ldy apart: y = x·Wᵀ (+ bias), or with `accumulate` y += x·Wᵀ (+ bias).
/// x (m, k) float32, rows ldx apart, is rounded to bf16 first. Runs on the calling thread
/// (one OpenMP thread); safe to call from several threads at once. 0 on success.
int vl_linear_forward(vl_linear *l, const float *x, long m, long ldx, float *y, long ldy,
                      const float *bias, int accumulate);

/// c (m, n), rows ldc apart, = a·b with both operands rounded to bf16 and products accumulated
/// in float32: a (m, k) rows lda apart; b (k, n) rows ldb apart, or with `trans_b` b (n, k) rows
/// ldb apart and its transpose used (attention's q·kᵀ and P·V, one head at a time). Same
/// threading as vl_linear_forward. 0 on success.
int vl_matmul_bf16(const float *a, long m, long k, long lda, const float *b, long n, long ldb, int trans_b,
                   float *c, long ldc);

#ifdef __cplusplus
}
#endif
#endif
