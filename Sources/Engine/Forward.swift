import Foundation
import VitLensCore

/// Receives the engine's intermediate tensors (SPEC §4). Pointers are valid only during the call.
/// A tap that asks for nothing costs nothing: the engine skips the copies it does not need.
public protocol ForwardTaps: AnyObject {
    var wantsRepresentations: Bool { get }
    var wantsAttentionLogits: Bool { get }
    var wantsAttentionProbabilities: Bool { get }
    /// Representation `index` (0…L) of the whole batch.  x: (B, T, C).
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int)
    /// Attention of block `layer` (0-based) for image `image` of the batch.
    /// logits (pre-softmax q·kᵀ/√D) and probabilities: (H, T, T); logits nil unless asked for.
    /// Called concurrently from several threads, each time for a different image: a tap must
    /// be safe for that (write per-image slots, or lock).
    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>)
}

/// Which representation the taps see (SPEC §4).
public enum RepresentationKind: String, Sendable, CaseIterable {
    /// blocks[i].norm1 outputs, then the final norm: what the paper's CKA compares.
    case normed
    /// The raw residual stream: embeddings, then each block's output.
    case residual
}

/// Where a forward pass spends its time (seconds, summed over calls), for `vitlens bench --profile`.
public final class ForwardProfile {
    public var linear = 0.0, attention = 0.0, norm = 0.0, gelu = 0.0, other = 0.0
    public init() {}
    public var total: Double { linear + attention + norm + gelu + other }
}

/// A plain ViT, forward only, float32, batched.
public final class ViTEngine {
    public let weights: ViTWeights
    public var config: ViTConfig { weights.config }
    public var representation: RepresentationKind = .normed
    /// When set, phases are timed into it (costs a clock read per phase).
    public var profile: ForwardProfile?
    /// After `forward`: the first point where the residual stream held NaN or ±∞ — 0 for the
    /// embeddings, i for the output of block i (1-based) — or nil if every value was finite.
    public private(set) var nonFiniteAt: Int?
    private var clock: UInt64 = 0

    /// Adds the time since the last mark to a phase of the profile.
    @inline(__always) private func mark(_ phase: ReferenceWritableKeyPath<ForwardProfile, Double>) {
        guard let profile else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        profile[keyPath: phase] += Double(now &- clock) / 1e9
        clock = now
    }

    private var workspaceBatch = -1
    private var cols, x, h, qkv, attnOut, mlp: Tensor?
    /// One (H, T, T) scores buffer and one logits copy per attention worker.
    private var scores: [Tensor] = [], logitsCopy: [Tensor] = [], probsCopy: [Tensor] = [], rowSums: [Tensor] = []

    public init(weights: ViTWeights) { self.weights = weights }

    /// Buffers sized once per batch shape: no allocation inside the per-batch loop.
    private func reserve(_ B: Int) {
        guard B != workspaceBatch else { return }
        let c = config, T = c.tokens, C = c.dim
        cols = Tensor(shape: [B * c.patches, 3 * c.patch * c.patch])
        x = Tensor(shape: [B, T, C])
        h = Tensor(shape: [B, T, C])
        qkv = Tensor(shape: [B, T, 3 * C])
        attnOut = Tensor(shape: [B, T, C])
        mlp = Tensor(shape: [B, T, c.mlpHidden])
        let w = max(1, min(Workers.count, B))
        scores = (0..<w).map { _ in Tensor(shape: [c.heads, T, T]) }
        logitsCopy = (0..<w).map { _ in Tensor(shape: [c.heads, T, T]) }
        rowSums = (0..<w).map { _ in Tensor(shape: [c.heads, T]) }
        probsCopy = (0..<w).map { _ in Tensor(shape: [c.heads, T, T]) }
        workspaceBatch = B
    }

    /// Runs the model on a batch.  images: (B, 3, S, S), normalised.
    /// Returns the final normed tokens (B, T, C) (the raw last block output if the model has no norm);
    /// the returned tensor is reused by the next call.
    @discardableResult
    public func forward(_ images: Tensor, taps: ForwardTaps? = nil) -> Tensor {
        let c = config, B = images.shape[0], T = c.tokens, C = c.dim, P = c.patches
        precondition(images.shape == [B, 3, c.imageSize, c.imageSize], "images must be (B, 3, \(c.imageSize), \(c.imageSize))")
        reserve(B)
        clock = DispatchTime.now().uptimeNanoseconds
        let cols = cols!, x = x!, h = h!
        let reps = taps?.wantsRepresentations ?? false

        // Patch embedding (a stride-p convolution as one GEMM), prefix tokens, positions.
        patchify(cols.data, images.data, batch: B, size: c.imageSize, patch: c.patch)
        mark(\.other)
        linearForward(h.data, cols.data, weights.patchW, weights.patchB, rows: B * P)
        mark(\.linear)
        let pos = weights.pos.data, pre = weights.prefix.data, np = c.prefixTokens
        for b in 0..<B {
            let xb = x.data + b * T * C
            for t in 0..<np { for i in 0..<C { xb[t * C + i] = pre[t * C + i] + pos[t * C + i] } }
            let eb = h.data + b * P * C
            for t in 0..<P { for i in 0..<C { xb[(np + t) * C + i] = eb[t * C + i] + pos[(np + t) * C + i] } }
        }
        if reps && representation == .residual { taps!.representation(0, x.data, batch: B) }
        nonFiniteAt = allFinite(x.data, B * T * C) ? nil : 0
        mark(\.other)

        for (i, blk) in weights.blocks.enumerated() {
            layerNormForward(h.data, x.data, blk.norm1W, blk.norm1B, rows: B * T, eps: c.eps)
            mark(\.norm)
            if reps && representation == .normed { taps!.representation(i, h.data, batch: B) }
            attention(i, blk, B: B, taps: taps)
            mlpBlock(blk, B: B)
            if reps && representation == .residual { taps!.representation(i + 1, x.data, batch: B) }
            if nonFiniteAt == nil && !allFinite(x.data, B * T * C) { nonFiniteAt = i + 1 }
            mark(\.other)
        }
        if let w = weights.normW, let b = weights.normB {
            layerNormForward(h.data, x.data, w, b, rows: B * T, eps: c.eps)
        } else {
            h.data.update(from: x.data, count: B * T * C)
        }
        mark(\.norm)
        if reps && representation == .normed { taps!.representation(c.depth, h.data, batch: B) }
        mark(\.other)
        return h
    }

    /// x += proj(softmax(q·kᵀ/√D)·v), reading the normed input from h.
    ///
    /// The per-image, per-head products are small (T×T×D): OpenBLAS's own threads would spend
    /// more time synchronising than computing (and stall badly on a loaded machine), so images
    /// are spread over vitlens's workers with OpenBLAS single-threaded for this phase.
    private func attention(_ layer: Int, _ blk: BlockWeights, B: Int, taps: ForwardTaps?) {
        let c = config, T = c.tokens, C = c.dim, H = c.heads, D = c.headDim
        let qkv = qkv!, out = attnOut!
        mark(\.other)  // the representation tap, if any
        linearForward(qkv.data, h!.data, blk.qkvW, blk.qkvB, rows: B * T)
        mark(\.linear)
        let scale = 1 / Float(D).squareRoot()
        let wantLogits = taps?.wantsAttentionLogits ?? false
        let wantProbs = wantLogits || (taps?.wantsAttentionProbabilities ?? false)
        let workers = scores.count
        let blasThreads = BLASRuntime.threads
        if workers > 1 { BLASRuntime.setThreads(1) }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let s = scores[w], lc = logitsCopy[w]
            var b = w
            while b < B {
                let base = qkv.data + b * T * 3 * C
                for hd in 0..<H {
                    // scores_h = scale · q_h k_hᵀ  (T, T); q at column hd·D, k at C + hd·D, v at 2C + hd·D.
                    sgemm(transB: true, m: T, n: T, k: D, alpha: scale, a: base + hd * D, lda: 3 * C,
                          b: base + C + hd * D, ldb: 3 * C, c: s.data + hd * T * T, ldc: T)
                }
                if wantLogits { lc.data.update(from: s.data, count: H * T * T) }
                // Softmax without its division: P·V is scaled by 1/Σ afterwards (T×D values per
                // head instead of T×T). Taps get normalised probabilities in a copy, so the
                // outputs are the same bits with or without taps.
                let sums = rowSums[w].data
                expRows(s.data, rows: H * T, cols: T, sums: sums)
                if wantProbs {
                    let pc = probsCopy[w].data
                    for r in 0..<(H * T) {
                        let src = s.data + r * T, dst = pc + r * T, inv = 1 / sums[r]
                        for i in 0..<T { dst[i] = src[i] * inv }
                    }
                    taps!.attention(layer: layer, image: b, logits: wantLogits ? UnsafePointer(lc.data) : nil,
                                    probabilities: pc)
                }
                let ob = out.data + b * T * C
                for hd in 0..<H {
                    sgemm(m: T, n: D, k: T, a: s.data + hd * T * T, lda: T, b: base + 2 * C + hd * D, ldb: 3 * C,
                          c: ob + hd * D, ldc: C)
                }
                for t in 0..<T {
                    let row = ob + t * C
                    for hd in 0..<H {
                        let inv = 1 / sums[hd * T + t]
                        for i in 0..<D { row[hd * D + i] *= inv }
                    }
                }
                b += workers
            }
        }
        if workers > 1 { BLASRuntime.setThreads(blasThreads) }
        let x = x!
        mark(\.attention)
        // x += out·Wpᵀ + bp (bias first, then the GEMM accumulates onto the residual).
        addBiasRows(x.data, blk.projB, rows: B * T)
        sgemm(transB: true, m: B * T, n: C, k: C, a: out.data, lda: C, b: blk.projW.data, ldb: C,
              beta: 1, c: x.data, ldc: C)
        mark(\.linear)
    }

    /// x += fc2(gelu(fc1(norm2(x)))).
    private func mlpBlock(_ blk: BlockWeights, B: Int) {
        let c = config, T = c.tokens, C = c.dim, F = c.mlpHidden
        let x = x!, h = h!, m = mlp!
        layerNormForward(h.data, x.data, blk.norm2W, blk.norm2B, rows: B * T, eps: c.eps)
        mark(\.norm)
        linearForward(m.data, h.data, blk.fc1W, blk.fc1B, rows: B * T)
        mark(\.linear)
        geluForward(m.data, count: B * T * F)
        mark(\.gelu)
        addBiasRows(x.data, blk.fc2B, rows: B * T)
        sgemm(transB: true, m: B * T, n: C, k: F, a: m.data, lda: F, b: blk.fc2W.data, ldb: F,
              beta: 1, c: x.data, ldc: C)
        mark(\.linear)
    }
}

/// Whether n floats are all finite: v·0 is 0 for finite v and NaN for NaN or ±∞, and a sum of
/// zeros cannot overflow (a vectorised pass, negligible next to a block).
func allFinite(_ x: UnsafePointer<Float>, _ n: Int) -> Bool {
    var acc = SIMD8<Float>()
    var i = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self) * 0
        i += 8
    }
    var s = acc.sum()
    while i < n { s += x[i] * 0; i += 1 }
    return s == 0
}

/// x[r, :] += b for every row.  x: (R, N), b: (N).
func addBiasRows(_ x: UnsafeMutablePointer<Float>, _ b: Tensor, rows: Int) {
    let n = b.count
    for r in 0..<rows {
        let xr = x + r * n
        for i in 0..<n { xr[i] += b.data[i] }
    }
}
