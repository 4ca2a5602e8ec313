// See include/vitlens_bf16.h. oneDNN's C API is resolved with dlsym from libdnnl.so.2 on first
// use; its OpenMP runtime is told to use one thread (OMP_NUM_THREADS=1 before the load, and
// omp_set_num_threads(1) on each calling thread): vitlens's own workers call in parallel, each
// on its own tile of rows, as they call OpenBLAS.
#define _GNU_SOURCE
#include "vitlens_bf16.h"

#include <cpuid.h>
#include <dlfcn.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

// ---- the CPU -------------------------------------------------------------------------------

int vl_cpu_has_avx512_bf16(void) {
    // Tests simulate a CPU without the instructions (the refusal path on every machine).
    const char *no = getenv("VITLENS_CPU_NO_BF16");
    if (no && *no && *no != '0') return 0;
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    if (!(b & (1u << 16))) return 0;                  // AVX512F
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d) || !(c & (1u << 27))) return 0;  // OSXSAVE
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xE6) != 0xE6) return 0;               // XMM, YMM, opmask, ZMM state saved by the OS
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
    return (a >> 5) & 1;                              // AVX512_BF16
}

// ---- conversion ----------------------------------------------------------------------------

// Subnormal inputs become ±0, as AVX512_BF16's vcvtne2ps2bf16 makes them: both paths give the
// same bits on every machine.
static inline uint16_t bf16_scalar(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    if ((u & 0x7F800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);        // ±0, subnormals
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

__attribute__((target("avx512f,avx512bf16,avx512vl")))
static void to_bf16_avx512(const float *x, uint16_t *y, long n) {
    long i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        _mm512_storeu_si512((void *)(y + i), (__m512i)v);
    }
    for (; i < n; i++) y[i] = bf16_scalar(x[i]);
}

void vl_to_bf16(const float *x, uint16_t *y, long n) {
    static int fast = -1;
    if (fast < 0) fast = vl_cpu_has_avx512_bf16();
    if (fast) to_bf16_avx512(x, y, n);
    else for (long i = 0; i < n; i++) y[i] = bf16_scalar(x[i]);
}

// ---- oneDNN, loaded on demand --------------------------------------------------------------

#define DNNL_FUNCTIONS(X) \
    X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_memory_desc_init_by_tag) \
    X(dnnl_memory_desc_init_by_strides) X(dnnl_matmul_desc_init) X(dnnl_primitive_attr_create) \
    X(dnnl_primitive_attr_destroy) X(dnnl_primitive_attr_set_scratchpad_mode) X(dnnl_post_ops_create) \
    X(dnnl_post_ops_append_sum) X(dnnl_primitive_attr_set_post_ops) X(dnnl_post_ops_destroy) \
    X(dnnl_primitive_desc_create) X(dnnl_primitive_desc_destroy) X(dnnl_primitive_desc_query_md) \
    X(dnnl_primitive_desc_query) X(dnnl_memory_desc_get_size) X(dnnl_primitive_create) \
    X(dnnl_primitive_destroy) X(dnnl_memory_create) X(dnnl_memory_destroy) X(dnnl_primitive_execute) \
    X(dnnl_stream_wait) X(dnnl_reorder_primitive_desc_create)

#define DECLARE(f) static __typeof__(f) *p_##f;
DNNL_FUNCTIONS(DECLARE)
static void (*p_omp_set_num_threads)(int);

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[256];
static dnnl_engine_t engine;
static char implementation[128] = "unknown";

static void load(void) {
    if (!vl_cpu_has_avx512_bf16()) {
        snprintf(load_error, sizeof load_error, "this CPU has no AVX512_BF16 (lscpu lists avx512_bf16 where it has)");
        return;
    }
    setenv("OMP_NUM_THREADS", "1", 0);
    void *h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_error, sizeof load_error, "oneDNN (libdnnl.so.2, Debian package libdnnl2) cannot be loaded: %s", dlerror());
        return;
    }
#define RESOLVE(f) \
    if (!(p_##f = (__typeof__(f) *)dlsym(h, #f))) { \
        snprintf(load_error, sizeof load_error, "libdnnl.so.2 lacks %s", #f); \
        return; \
    }
    DNNL_FUNCTIONS(RESOLVE)
    p_omp_set_num_threads = (void (*)(int))dlsym(h, "omp_set_num_threads");
    if (p_dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) {
        snprintf(load_error, sizeof load_error, "oneDNN cannot create a CPU engine");
        engine = NULL;
    }
}

int vl_bf16_load(char *why, int why_len) {
    pthread_once(&load_once, load);
    if (engine) return 0;
    if (why && why_len > 0) snprintf(why, (size_t)why_len, "%s", load_error);
    return -1;
}

const char *vl_bf16_implementation(void) { return implementation; }

// ---- per-thread state: a stream, the rounded input, the scratchpad ---------------------------

static __thread dnnl_stream_t stream;
static __thread uint16_t *xb;
static __thread long xb_cap;
static __thread void *scratch;
static __thread size_t scratch_cap;
static __thread int thread_slot = -1;
static int next_slot;

static int prepare_thread(void) {
    if (thread_slot < 0) {
        thread_slot = __atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED);
        if (p_omp_set_num_threads) p_omp_set_num_threads(1);
    }
    if (!stream && p_dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) return -1;
    return 0;
}

// ---- the layer -----------------------------------------------------------------------------

typedef struct {
    long m, ldy;
    int flags;  // 1: bias, 2: accumulate
    int slot;
    dnnl_primitive_t prim;
    size_t scratch_size;
} entry;

struct vl_linear {
    long n, k;
    dnnl_memory_desc_t wmd;  // the packed weights' layout
    dnnl_memory_t weights;
    pthread_mutex_t lock;
    entry *cache;
    int count, cap;
};

/// A matmul primitive descriptor for m rows: weights in `w` (or any layout when NULL).
static dnnl_status_t describe(long m, long n, long k, long ldy, const dnnl_memory_desc_t *w, int flags,
                              dnnl_primitive_desc_t *pd) {
    dnnl_memory_desc_t src, any, dst, bias;
    dnnl_dims_t ds = {m, k}, dw = {k, n}, dd = {m, n}, db = {1, n}, sy = {ldy, 1};
    p_dnnl_memory_desc_init_by_tag(&src, 2, ds, dnnl_bf16, dnnl_ab);
    // Made for the output's row stride: the memory given at execution must match it.
    p_dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_f32, sy);
    p_dnnl_memory_desc_init_by_tag(&bias, 2, db, dnnl_f32, dnnl_ab);
    if (!w) p_dnnl_memory_desc_init_by_tag(&any, 2, dw, dnnl_bf16, dnnl_format_tag_any);
    dnnl_matmul_desc_t md;
    dnnl_status_t s = p_dnnl_matmul_desc_init(&md, &src, w ? w : &any, (flags & 1) ? &bias : NULL, &dst);
    if (s != dnnl_success) return s;
    dnnl_primitive_attr_t attr;
    p_dnnl_primitive_attr_create(&attr);
    p_dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (flags & 2) {
        dnnl_post_ops_t ops;
        p_dnnl_post_ops_create(&ops);
        p_dnnl_post_ops_append_sum(ops, 1.0f);
        p_dnnl_primitive_attr_set_post_ops(attr, ops);
        p_dnnl_post_ops_destroy(ops);
    }
    s = p_dnnl_primitive_desc_create(pd, &md, attr, engine, NULL);
    p_dnnl_primitive_attr_destroy(attr);
    return s;
}

vl_linear *vl_linear_create(const float *w, long n, long k, char *why, int why_len) {
    if (vl_bf16_load(why, why_len) != 0) return NULL;
    vl_linear *l = calloc(1, sizeof *l);
    l->n = n;
    l->k = k;
    pthread_mutex_init(&l->lock, NULL);
    dnnl_primitive_desc_t pd;
    if (describe(512, n, k, n, NULL, 1, &pd) != dnnl_success) {
        snprintf(why, (size_t)why_len, "oneDNN has no bf16 matmul for %ld x %ld weights", n, k);
        free(l);
        return NULL;
    }
    const char *impl = NULL;
    if (p_dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(implementation, sizeof implementation, "%s", impl);
    l->wmd = *p_dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    p_dnnl_primitive_desc_destroy(pd);
    // W (n, k) row-major is Wᵀ (k, n) with strides (1, k): rounded to bf16, then reordered.
    uint16_t *wb = malloc(sizeof(uint16_t) * (size_t)(n * k));
    vl_to_bf16(w, wb, n * k);
    dnnl_memory_desc_t plain;
    dnnl_dims_t dims = {k, n}, strides = {1, k};
    p_dnnl_memory_desc_init_by_strides(&plain, 2, dims, dnnl_bf16, strides);
    dnnl_memory_t from;
    dnnl_primitive_desc_t rpd;
    dnnl_primitive_t reorder;
    int ok = p_dnnl_memory_create(&from, &plain, engine, wb) == dnnl_success &&
             p_dnnl_memory_create(&l->weights, &l->wmd, engine, DNNL_MEMORY_ALLOCATE) == dnnl_success &&
             p_dnnl_reorder_primitive_desc_create(&rpd, &plain, engine, &l->wmd, engine, NULL) == dnnl_success;
    if (ok) {
        ok = p_dnnl_primitive_create(&reorder, rpd) == dnnl_success;
        p_dnnl_primitive_desc_destroy(rpd);
    }
    if (ok) {
        dnnl_stream_t s;
        ok = p_dnnl_stream_create(&s, engine, dnnl_stream_default_flags) == dnnl_success;
        if (ok) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, l->weights}};
            ok = p_dnnl_primitive_execute(reorder, s, 2, args) == dnnl_success && p_dnnl_stream_wait(s) == dnnl_success;
        }
        p_dnnl_primitive_destroy(reorder);
    }
    p_dnnl_memory_destroy(from);
    free(wb);
    if (!ok) {
        snprintf(why, (size_t)why_len, "oneDNN could not pack %ld x %ld bf16 weights", n, k);
        free(l);
        return NULL;
    }
    return l;
}

void vl_linear_destroy(vl_linear *l) {
    if (!l) return;
    for (int i = 0; i < l->count; i++) p_dnnl_primitive_destroy(l->cache[i].prim);
    free(l->cache);
    p_dnnl_memory_destroy(l->weights);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

/// The primitive for m rows, output rows ldy apart, with `flags` on this thread (created once),
/// copied into `out`.
static int primitive(vl_linear *l, long m, long ldy, int flags, entry *out) {
    pthread_mutex_lock(&l->lock);
    for (int i = 0; i < l->count; i++) {
        entry *e = &l->cache[i];
        if (e->m == m && e->ldy == ldy && e->flags == flags && e->slot == thread_slot) {
            *out = *e;
            pthread_mutex_unlock(&l->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&l->lock);
    dnnl_primitive_desc_t pd;
    if (describe(m, l->n, l->k, ldy, &l->wmd, flags, &pd) != dnnl_success) return -1;
    entry e = {m, ldy, flags, thread_slot, NULL, 0};
    const dnnl_memory_desc_t *sp = p_dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    e.scratch_size = sp ? p_dnnl_memory_desc_get_size(sp) : 0;
    dnnl_status_t s = p_dnnl_primitive_create(&e.prim, pd);
    p_dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return -1;
    pthread_mutex_lock(&l->lock);
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->cache = realloc(l->cache, sizeof(entry) * (size_t)l->cap);
    }
    l->cache[l->count++] = e;
    pthread_mutex_unlock(&l->lock);
    *out = e;
    return 0;
}

int vl_linear_forward(vl_linear *l, const float *x, long m, long ldx, float *y, long ldy,
                      const float *bias, int accumulate) {
    if (m <= 0) return 0;
    if (prepare_thread() != 0) return -1;
    long n = l->n, k = l->k;
    if (xb_cap < m * k) {
        free(xb);
        xb_cap = m * k;
        xb = malloc(sizeof(uint16_t) * (size_t)xb_cap);
    }
    if (ldx == k) vl_to_bf16(x, xb, m * k);
    else for (long r = 0; r < m; r++) vl_to_bf16(x + r * ldx, xb + r * k, k);
    int flags = (bias ? 1 : 0) | (accumulate ? 2 : 0);
    entry here;
    if (primitive(l, m, ldy, flags, &here) != 0) return -1;
    if (scratch_cap < here.scratch_size) {
        free(scratch);
        scratch_cap = here.scratch_size;
        scratch = malloc(scratch_cap);
    }
    dnnl_memory_desc_t src, dst, bmd, smd;
    dnnl_dims_t ds = {m, k}, dd = {m, n}, sd = {ldy, 1}, db = {1, n};
    p_dnnl_memory_desc_init_by_tag(&src, 2, ds, dnnl_bf16, dnnl_ab);
    p_dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_f32, sd);
    p_dnnl_memory_desc_init_by_tag(&bmd, 2, db, dnnl_f32, dnnl_ab);
    dnnl_dims_t dsz = {(dnnl_dim_t)here.scratch_size};
    p_dnnl_memory_desc_init_by_tag(&smd, 1, dsz, dnnl_u8, dnnl_a);
    dnnl_memory_t ms = NULL, md = NULL, mb = NULL, mp = NULL;
    int ok = p_dnnl_memory_create(&ms, &src, engine, xb) == dnnl_success &&
             p_dnnl_memory_create(&md, &dst, engine, y) == dnnl_success &&
             (!bias || p_dnnl_memory_create(&mb, &bmd, engine, (void *)bias) == dnnl_success) &&
             (!here.scratch_size || p_dnnl_memory_create(&mp, &smd, engine, scratch) == dnnl_success);
    if (ok) {
        dnnl_exec_arg_t args[5];
        int na = 0;
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, ms};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, l->weights};
        args[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, md};
        if (mb) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mb};
        if (mp) args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, mp};
        ok = p_dnnl_primitive_execute(here.prim, stream, na, args) == dnnl_success && p_dnnl_stream_wait(stream) == dnnl_success;
    }
    if (ms) p_dnnl_memory_destroy(ms);
    if (md) p_dnnl_memory_destroy(md);
    if (mb) p_dnnl_memory_destroy(mb);
    if (mp) p_dnnl_memory_destroy(mp);
    return ok ? 0 : -1;
}

// ---- activations × activations (attention) --------------------------------------------------

typedef struct {
    long m, n, k, ldc;
    int trans;
    dnnl_primitive_t prim;
    size_t scratch_size;
} product;

// Per thread: primitives by shape, the two rounded operands.
static __thread product *products;
static __thread int product_count, product_cap;
static __thread uint16_t *ab, *bb;
static __thread long ab_cap, bb_cap;

static int product_for(long m, long n, long k, long ldc, int trans, product *out) {
    for (int i = 0; i < product_count; i++) {
        product *p = &products[i];
        if (p->m == m && p->n == n && p->k == k && p->ldc == ldc && p->trans == trans) { *out = *p; return 0; }
    }
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {m, k}, db = {k, n}, dc = {m, n}, sb = {1, k}, scs = {ldc, 1};
    p_dnnl_memory_desc_init_by_tag(&a, 2, da, dnnl_bf16, dnnl_ab);
    if (trans) p_dnnl_memory_desc_init_by_strides(&b, 2, db, dnnl_bf16, sb);
    else p_dnnl_memory_desc_init_by_tag(&b, 2, db, dnnl_bf16, dnnl_ab);
    // The primitive is made for the output's row stride: memory given at execution must match.
    p_dnnl_memory_desc_init_by_strides(&c, 2, dc, dnnl_f32, scs);
    dnnl_matmul_desc_t md;
    if (p_dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) != dnnl_success) return -1;
    dnnl_primitive_attr_t attr;
    p_dnnl_primitive_attr_create(&attr);
    p_dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    dnnl_primitive_desc_t pd;
    dnnl_status_t s = p_dnnl_primitive_desc_create(&pd, &md, attr, engine, NULL);
    p_dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return -1;
    product p = {m, n, k, ldc, trans, NULL, 0};
    const dnnl_memory_desc_t *sp = p_dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    p.scratch_size = sp ? p_dnnl_memory_desc_get_size(sp) : 0;
    s = p_dnnl_primitive_create(&p.prim, pd);
    p_dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) return -1;
    if (product_count == product_cap) {
        product_cap = product_cap ? 2 * product_cap : 8;
        products = realloc(products, sizeof(product) * (size_t)product_cap);
    }
    products[product_count++] = p;
    *out = p;
    return 0;
}

static uint16_t *grow(uint16_t **buf, long *cap, long n) {
    if (*cap < n) {
        free(*buf);
        *cap = n;
        *buf = malloc(sizeof(uint16_t) * (size_t)n);
    }
    return *buf;
}

int vl_matmul_bf16(const float *a, long m, long k, long lda, const float *b, long n, long ldb, int trans_b,
                   float *c, long ldc) {
    if (m <= 0 || n <= 0) return 0;
    if (!engine || prepare_thread() != 0) return -1;
    uint16_t *x = grow(&ab, &ab_cap, m * k);
    for (long r = 0; r < m; r++) vl_to_bf16(a + r * lda, x + r * k, k);
    // b rounded into (n, k) when transposed (read as (k, n) with strides (1, k)), else (k, n).
    long rows = trans_b ? n : k, cols = trans_b ? k : n;
    uint16_t *y = grow(&bb, &bb_cap, rows * cols);
    for (long r = 0; r < rows; r++) vl_to_bf16(b + r * ldb, y + r * cols, cols);
    product p;
    if (product_for(m, n, k, ldc, trans_b, &p) != 0) return -1;
    if (scratch_cap < p.scratch_size) {
        free(scratch);
        scratch_cap = p.scratch_size;
        scratch = malloc(scratch_cap);
    }
    dnnl_memory_desc_t da, db, dc, ds;
    dnnl_dims_t sa = {m, k}, sb = {k, n}, sc = {m, n}, stb = {1, k}, stc = {ldc, 1}, ss = {(dnnl_dim_t)p.scratch_size};
    p_dnnl_memory_desc_init_by_tag(&da, 2, sa, dnnl_bf16, dnnl_ab);
    if (trans_b) p_dnnl_memory_desc_init_by_strides(&db, 2, sb, dnnl_bf16, stb);
    else p_dnnl_memory_desc_init_by_tag(&db, 2, sb, dnnl_bf16, dnnl_ab);
    p_dnnl_memory_desc_init_by_strides(&dc, 2, sc, dnnl_f32, stc);
    p_dnnl_memory_desc_init_by_tag(&ds, 1, ss, dnnl_u8, dnnl_a);
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, mp = NULL;
    int ok = p_dnnl_memory_create(&ma, &da, engine, x) == dnnl_success &&
             p_dnnl_memory_create(&mb, &db, engine, y) == dnnl_success &&
             p_dnnl_memory_create(&mc, &dc, engine, c) == dnnl_success &&
             (!p.scratch_size || p_dnnl_memory_create(&mp, &ds, engine, scratch) == dnnl_success);
    if (ok) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}, {DNNL_ARG_SCRATCHPAD, mp}};
        ok = p_dnnl_primitive_execute(p.prim, stream, mp ? 4 : 3, args) == dnnl_success && p_dnnl_stream_wait(stream) == dnnl_success;
    }
    if (ma) p_dnnl_memory_destroy(ma);
    if (mb) p_dnnl_memory_destroy(mb);
    if (mc) p_dnnl_memory_destroy(mc);
    if (mp) p_dnnl_memory_destroy(mp);
    return ok ? 0 : -1;
}
