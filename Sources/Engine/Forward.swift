import BF16
import Foundation
import VitLensCore
import KernelsAVX2

/// Receives the engine's intermediate tensors (docs/reference.md, "Definitions").
/// Pointers are valid only during the call. A tap that asks for nothing costs nothing: the
/// engine skips the copies it does not need. What a run taps is the taps' own property.
public protocol ForwardTaps: AnyObject {
    /// Which representation `representation(_:_:batch:)` receives (default: the normed one).
    var representationKind: RepresentationKind { get }
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

extension ForwardTaps {
    public var representationKind: RepresentationKind { .normed }
}

/// Why a forward pass gave no valid output.
public enum ForwardFailure: Error, Equatable {
    /// NaN or ±∞ in the residual stream: `at` 0 for the embeddings, i for block i's output.
    case nonFinite(at: Int)
    /// A bf16 product oneDNN could not run.
    case bf16MatmulFailed
}

/// Which representation the taps see (docs/reference.md, "Definitions").
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

    /// Adds another profile's times and zeroes it.
    func absorb(_ p: ForwardProfile) {
        linear += p.linear; attention += p.attention; norm += p.norm; gelu += p.gelu; other += p.other
        p.linear = 0; p.attention = 0; p.norm = 0; p.gelu = 0; p.other = 0
    }
}

/// Times the phases of one thread's work into a profile: `mark(phase)` adds the time since the
/// previous mark. Off (one branch per mark) unless profiling.
final class PhaseClock {
    let profile = ForwardProfile()
    var timing = false
    private var last: UInt64 = 0

    /// Starts a new interval now.
    @inline(__always) func start() { if timing { last = DispatchTime.now().uptimeNanoseconds } }

    @inline(__always) func mark(_ phase: ReferenceWritableKeyPath<ForwardProfile, Double>) {
        guard timing else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        profile[keyPath: phase] += Double(now &- last) / 1e9
        last = now
    }
}

/// A plain ViT, forward only, float32, batched.
///
/// Threads: each of vitlens's workers runs every step of a block on its own rows with OpenBLAS
/// single-threaded — one sgemm per linear layer over the rows, attention for their queries, the
/// MLP — in tiles of whole images (4 for ViT-Tiny) whose hidden activations stay in cache, taken
/// by whichever worker is free. With fewer images than workers (batch 1 on two cores) the
/// token rows are split instead, with one barrier per block where attention needs every key
/// and value of the image. OpenBLAS's own threads, which would spin between calls and take the
/// cores from vitlens's loops, are not used.
public final class ViTEngine {
    public let weights: ViTWeights
    public var config: ViTConfig { weights.config }
    /// When set, phases are timed into it (costs a clock read per phase); times are summed
    /// over the workers.
    public var profile: ForwardProfile?
    /// During `forward`: the first point where the residual stream held NaN or ±∞ — 0 for the
    /// embeddings, i for the output of block i (1-based) — or nil while every value is finite.
    private var nonFiniteAt: Int?
    /// Rows per tile of the MLP, rounded down to whole images (4 ViT-Tiny images, 788 rows: the
    /// tile's 2.4 MB of hidden activations stay in L3; 394 to 1576 measured within noise).
    public var tileRowsTarget = 800 {
        didSet { workspaceBatch = -1 }
    }
    /// The calling thread's phase clock (each worker has its own in its scratch).
    private let clock = PhaseClock()
    @inline(__always) private func mark(_ phase: ReferenceWritableKeyPath<ForwardProfile, Double>) { clock.mark(phase) }

    /// One worker's buffers: attention scores for up to one image, the MLP's tile, its clock.
    final class Scratch {
        let scores, logits, probs, sums, attn, normed, hidden: Tensor
        /// The AVX2 attention kernel's packed queries, key panels, padded scores.
        let packedQ, packedK, padded: Tensor
        var nonFinite = false
        /// A bf16 product failed (oneDNN reported an error) on this worker.
        var failed = false
        let clock = PhaseClock()
        init(_ c: ViTConfig, tileRows: Int) {
            let T = c.tokens, H = c.heads
            scores = Tensor(shape: [H, T, T])
            logits = Tensor(shape: [H, T, T])
            probs = Tensor(shape: [H, T, T])
            sums = Tensor(shape: [H, T])
            attn = Tensor(shape: [tileRows, c.dim])
            normed = Tensor(shape: [tileRows, c.dim])
            hidden = Tensor(shape: [tileRows, (c.swiGLU ? 2 : 1) * c.mlpHidden])
            let nqPad = roundUp(T, attentionRowBlock), tPad = roundUp(T, attentionColBlock)
            packedQ = Tensor(shape: [nqPad, c.headDim])
            packedK = Tensor(shape: [tPad, c.headDim])
            padded = Tensor(shape: [nqPad, tPad])
        }
        @inline(__always) func mark(_ phase: ReferenceWritableKeyPath<ForwardProfile, Double>) { clock.mark(phase) }
    }

    private var workspaceBatch = -1, workspaceWorkers = -1
    private var tileRows = 0
    private var cols, x, h, qkv: Tensor?
    private var scratch: [Scratch] = []

    /// How attention's per-head products run.
    public enum AttentionPath: Sendable {
        /// OpenBLAS sgemm per head (any head width): the reference the kernel is tested against;
        /// in a bf16 engine, oneDNN's bf16 matmul per head.
        case blas
        /// vitlens's register-blocked AVX2 + FMA kernels (KernelsAVX2/Attention.swift); needs a
        /// head width that is a multiple of 8 and a CPU with AVX2 + FMA.
        case avx2
    }
    /// The AVX2 kernels where the CPU and head width allow them, else OpenBLAS.
    public var attentionPath: AttentionPath

    /// The arithmetic of the linear layers (attention and the rest are float32 either way).
    public let precision: Precision
    /// The rotation of q and k at every patch position of the run's grid, per block (rotary
    /// models; empty otherwise).
    private let rotary: [RotaryTable]
    /// The linear layers' weights in bf16 (empty for f32).
    private let packedPatch: PackedLinear?
    private let packedBlocks: [PackedBlock]

    public init(weights: ViTWeights) {
        self.weights = weights
        attentionPath = CPUKernels.avx2 && weights.config.headDim % 8 == 0 ? .avx2 : .blas
        precision = .f32
        (packedPatch, packedBlocks) = (nil, [])
        rotary = weights.rotaryTables()
    }

    /// An engine of the given precision; bf16 packs every linear layer's weights once (refused,
    /// with the reason, where the CPU or oneDNN cannot run it).
    public init(weights: ViTWeights, precision: Precision) throws {
        self.weights = weights
        rotary = weights.rotaryTables()
        // bf16 runs attention's products per head through oneDNN (the library path).
        attentionPath = precision == .f32 && CPUKernels.avx2 && weights.config.headDim % 8 == 0 ? .avx2 : .blas
        self.precision = precision
        if precision == .bf16 {
            let patch = Tensor(shape: [weights.config.dim, weights.patchW.count / weights.config.dim])
            patch.data.update(from: weights.patchW.data, count: patch.count)
            packedPatch = try PackedLinear(patch)
            packedBlocks = try weights.blocks.map(PackedBlock.init)
        } else {
            (packedPatch, packedBlocks) = (nil, [])
        }
    }

    /// out (rows, n) = x·Wᵀ (+ b), or with `accumulate` out += x·Wᵀ (+ b): OpenBLAS sgemm in
    /// float32, oneDNN's bf16 matmul when `packed` is given.  x: (rows, k), W: (n, k).
    @inline(__always)
    private func linear(_ packed: PackedLinear?, _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>,
                        _ w: Tensor, _ b: Tensor?, rows: Int, accumulate: Bool = false, _ s: Scratch) {
        let n = w.shape[0], k = w.count / n
        if let packed {
            if !packed.forward(
                out, ldy: n, x, ldx: k, rows: rows, bias: b.map { UnsafePointer($0.data) }, accumulate: accumulate) {
                s.failed = true
            }
            return
        }
        if accumulate {
            if let b { addBiasRows(out, b, rows: rows) }
            sgemm(transB: true, m: rows, n: n, k: k, a: x, lda: k, b: w.data, ldb: k, beta: 1, c: out, ldc: n)
        } else if let b {
            linearForward(out, x, w, b, rows: rows)
        } else {
            sgemm(transB: true, m: rows, n: n, k: k, a: x, lda: k, b: w.data, ldb: k, c: out, ldc: n)
        }
    }

    /// Buffers sized once per batch shape: no allocation inside the per-batch loop.
    private func reserve(_ B: Int) {
        let workers = max(1, Workers.count)
        guard B != workspaceBatch || workers != workspaceWorkers else { return }
        let c = config, T = c.tokens, C = c.dim
        cols = Tensor(shape: [B * c.patches, 3 * c.patch * c.patch])
        x = Tensor(shape: [B, T, C])
        h = Tensor(shape: [B, T, C])
        qkv = Tensor(shape: [B, T, 3 * C])
        tileRows = max(1, tileRowsTarget / T) * T
        scratch = (0..<workers).map { _ in Scratch(c, tileRows: tileRows) }
        workspaceBatch = B
        workspaceWorkers = workers
    }

    /// The rows (of B·T) each worker takes, and whether every range is whole images.
    private func split(_ B: Int, wholeImages: Bool) -> (ranges: [Range<Int>], aligned: Bool) {
        let T = config.tokens, W = max(1, Workers.count)
        if W == 1 { return ([0..<(B * T)], true) }
        if B >= W || wholeImages {
            let n = min(W, B)
            return ((0..<n).map { w in (w * B / n * T)..<((w + 1) * B / n * T) }, true)
        }
        let rows = B * T
        return ((0..<W).map { w in (w * rows / W)..<((w + 1) * rows / W) }, false)
    }

    /// Runs body(worker, rows) for each range, concurrently when there are several.
    private func run(_ ranges: [Range<Int>], _ body: (Int, Range<Int>) -> Void) {
        if ranges.count == 1 { return body(0, ranges[0]) }
        DispatchQueue.concurrentPerform(iterations: ranges.count) { w in body(w, ranges[w]) }
    }

    /// The tiles of a range: at most `tileRows` rows each.
    @inline(__always) private func tiles(_ range: Range<Int>, _ body: (Range<Int>) -> Void) {
        var lo = range.lowerBound
        while lo < range.upperBound {
            let hi = min(range.upperBound, lo + tileRows)
            body(lo..<hi)
            lo = hi
        }
    }

    /// Runs the model on a batch.  images: (B, 3, S, S), normalised.
    /// Returns the final normed tokens (B, T, C) (the raw last block output if the model has no norm);
    /// the returned tensor is reused by the next call. Throws when the output is not valid: a
    /// non-finite residual stream (never report numbers computed from it) or a failed bf16 product.
    @discardableResult
    public func forward(_ images: Tensor, taps: ForwardTaps? = nil) throws -> Tensor {
        let c = config, B = images.shape[0], T = c.tokens, C = c.dim
        precondition(
            images.shape == [B, 3, c.imageSize, c.imageSize], "images must be (B, 3, \(c.imageSize), \(c.imageSize))")
        reserve(B)
        clock.timing = profile != nil
        clock.start()
        let x = x!, h = h!
        let reps = taps?.wantsRepresentations ?? false
        let representation = taps?.representationKind ?? .normed
        let wantProbs = (taps?.wantsAttentionLogits ?? false) || (taps?.wantsAttentionProbabilities ?? false)
        let (ranges, aligned) = split(B, wholeImages: wantProbs)
        let blasThreads = BLASRuntime.threads
        if blasThreads != 1 { BLASRuntime.setThreads(1) }
        defer { if blasThreads != 1 { BLASRuntime.setThreads(blasThreads) } }
        for s in scratch {
            s.clock.timing = profile != nil
            s.nonFinite = false
            s.failed = false
        }

        embed(images, workers: ranges.count)
        if let w = weights.preNormW, let b = weights.preNormB {
            // CLIP's ln_pre: the residual stream starts from the normed embeddings.
            run(ranges) {
                _, r in layerNormRows(
                h.data + r.lowerBound * C, x.data + r.lowerBound * C, w, b, rows: r.count, eps: c.eps) }
            x.data.update(from: h.data, count: B * T * C)
        }
        if reps && representation == .residual { taps!.representation(0, x.data, batch: B) }
        nonFiniteAt = allFinite(x.data, B * T * C) ? nil : 0
        mark(\.other)
        for (i, blk) in weights.blocks.enumerated() {
            block(i, blk, batch: B, ranges: ranges, aligned: aligned, taps: taps)
            clock.start()
            if reps {
                // h still holds this block's norm1 output for every row (norm2 goes to scratch).
                if representation == .normed { taps!.representation(i, h.data, batch: B) }
                else { taps!.representation(i + 1, x.data, batch: B) }
            }
            if nonFiniteAt == nil && scratch.contains(where: { $0.nonFinite }) { nonFiniteAt = i + 1 }
            mark(\.other)
        }
        if let w = weights.normW, let b = weights.normB {
            run(ranges) { _, r in normRows(h.data + r.lowerBound * C, x.data + r.lowerBound * C, w, b, rows: r.count) }
        } else {
            h.data.update(from: x.data, count: B * T * C)
        }
        mark(\.norm)
        if reps && representation == .normed { taps!.representation(c.depth, h.data, batch: B) }
        mark(\.other)
        if let profile {
            profile.absorb(clock.profile)
            for s in scratch { profile.absorb(s.clock.profile) }
        }
        if scratch.contains(where: { $0.failed }) { throw ForwardFailure.bf16MatmulFailed }
        if let at = nonFiniteAt { throw ForwardFailure.nonFinite(at: at) }
        return h
    }

    /// x = [prefix tokens; patches·Wᵀ + b] + positions: the patch embedding (a stride-p
    /// convolution as one GEMM) split over `workers`.  images: (B, 3, S, S) → x: (B, T, C).
    private func embed(_ images: Tensor, workers W: Int) {
        let c = config, B = images.shape[0], T = c.tokens, C = c.dim, P = c.patches
        let cols = cols!, x = x!, h = h!
        let kk = 3 * c.patch * c.patch, plane = 3 * c.imageSize * c.imageSize
        parallelChunks(B) { r in
            patchify(cols.data + r.lowerBound * P * kk, images.data + r.lowerBound * plane,
                     batch: r.count, size: c.imageSize, patch: c.patch)
        }
        mark(\.other)
        run((0..<W).map { w in (w * B * P / W)..<((w + 1) * B * P / W) }) { w, r in
            linear(packedPatch, h.data + r.lowerBound * C, cols.data + r.lowerBound * kk, weights.patchW,
                weights.patchB, rows: r.count, scratch[w])
        }
        mark(\.linear)
        if let w = weights.patchNormW, let b = weights.patchNormB {
            // AIMv2: the patch embeddings normed before the positions are added.
            parallelChunks(B * P) { r in
                normRows(h.data + r.lowerBound * C, h.data + r.lowerBound * C, w, b, rows: r.count)
            }
            mark(\.norm)
        }
        let pos = weights.pos.data, pre = weights.prefix.data, np = c.prefixTokens
        parallelChunks(B) { r in
            for b in r {
                let xb = x.data + b * T * C
                for t in 0..<np { for i in 0..<C { xb[t * C + i] = pre[t * C + i] + pos[t * C + i] } }
                let eb = h.data + b * P * C
                for t in 0..<P { for i in 0..<C { xb[(np + t) * C + i] = eb[t * C + i] + pos[(np + t) * C + i] } }
            }
        }
    }

    /// Block i on the whole batch, x ← x + attn(norm1(x)), then x ← x + mlp(norm2(x)), its rows
    /// spread over the workers; h keeps norm1(x) for the taps.
    private func block(
        _ i: Int, _ blk: BlockWeights, batch B: Int, ranges: [Range<Int>], aligned: Bool, taps: ForwardTaps?) {
        let T = config.tokens
        if aligned {
            // Tiles of whole images, taken by whichever worker is free: a worker slowed by
            // something else on its core (image decoding, another process) takes fewer.
            let perTile = max(1, min(tileRows / T, (B + ranges.count - 1) / ranges.count))
            let count = (B + perTile - 1) / perTile
            let counter = TileCounter()
            run(ranges) { w, _ in
                let s = scratch[w]
                while let k = counter.next(below: count) {
                    let t = (k * perTile * T)..<(min(B, (k + 1) * perTile) * T)
                    blockHead(blk, rows: t, s)
                    blockTail(i, blk, rows: t, s, taps: taps)
                }
            }
        } else {
            // Attention needs every key and value of an image: a barrier after the heads.
            run(ranges) { w, range in tiles(range) { t in blockHead(blk, rows: t, scratch[w]) } }
            run(ranges) { w, range in tiles(range) { t in blockTail(i, blk, rows: t, scratch[w], taps: taps) } }
        }
    }

    /// h = norm1(x) and qkv = h·Wᵀ + b for the rows of one tile.
    private func blockHead(_ blk: BlockWeights, rows t: Range<Int>, _ s: Scratch) {
        let C = config.dim, r0 = t.lowerBound
        s.clock.start()
        normRows(h!.data + r0 * C, x!.data + r0 * C, blk.norm1W, blk.norm1B, rows: t.count)
        s.mark(\.norm)
        linear(packed(blk)?.qkv, qkv!.data + r0 * 3 * C, h!.data + r0 * C, blk.qkvW, blk.qkvB, rows: t.count, s)
        s.mark(\.linear)
        // Rotary positions turn q and k where they are written, before any attention path reads them.
        if !rotary.isEmpty {
            applyRotary(qkv!.data, rows: t, tokens: config.tokens, prefix: config.prefixTokens, dim: C,
                        heads: config.heads, table: rotary[blk.index])
            s.mark(\.other)
        }
    }

    /// The rest of a block for the rows of one tile: attention of its queries, the projection
    /// onto the residual, norm2 and the MLP.  x += proj(attn); x += fc2(gelu(fc1(norm2(x)))).
    private func blockTail(_ layer: Int, _ blk: BlockWeights, rows t: Range<Int>, _ s: Scratch, taps: ForwardTaps?) {
        let c = config, T = c.tokens, C = c.dim, n = t.count
        s.clock.start()
        // The tile's queries, one image at a time.
        var r = t.lowerBound
        while r < t.upperBound {
            let b = r / T, q0 = r - b * T, nq = min(t.upperBound, (b + 1) * T) - r
            attend(layer, image: b, queries: q0, count: nq, out: s.attn.data + (r - t.lowerBound) * C, s, taps: taps)
            r += nq
        }
        s.mark(\.attention)
        if let w = blk.attnNormW, let b = blk.attnNormB {
            // EVA-02 CLIP: the attention's output normed before the projection.
            normRows(s.attn.data, s.attn.data, w, b, rows: n)
            s.mark(\.norm)
        }
        let xr = x!.data + t.lowerBound * C
        // x += γ₁ ⊙ (attn·Wpᵀ + bp)
        let pb = packed(blk)
        addBranch(xr, s.attn.data, pb?.proj, blk.projW, blk.projB, scale: blk.ls1, rows: n, s)
        s.mark(\.linear)
        normRows(s.normed.data, xr, blk.norm2W, blk.norm2B, rows: n)
        s.mark(\.norm)
        linear(pb?.fc1, s.hidden.data, s.normed.data, blk.fc1W, nil, rows: n, s)
        s.mark(\.linear)
        switch c.activation {
        case .gelu: biasGeluRows(s.hidden.data, blk.fc1B, rows: n)
        case .quickGelu: biasQuickGeluRows(s.hidden.data, blk.fc1B, rows: n)
        case .geluTanh: biasTanhGeluRows(s.hidden.data, blk.fc1B, rows: n)
        case .silu: biasSwiGLURows(s.hidden.data, blk.fc1B, rows: n)
        }
        s.mark(\.gelu)
        if let w = blk.mlpNormW, let b = blk.mlpNormB {
            // EVA-02's ffn_ln: SwiGLU's hidden layer normed before fc2.
            normRows(s.hidden.data, s.hidden.data, w, b, rows: n)
            s.mark(\.norm)
        }
        // x += γ₂ ⊙ (gelu(…)·W2ᵀ + b2)
        addBranch(xr, s.hidden.data, pb?.fc2, blk.fc2W, blk.fc2B, scale: blk.ls2, rows: n, s)
        s.mark(\.linear)
        if !allFinite(xr, n * C) { s.nonFinite = true }
        s.mark(\.other)
    }

    /// The model's norm (LayerNorm, or RMSNorm with the weight only) of `rows` rows of w.count
    /// values on the calling thread; `out` may be `x`.
    @inline(__always)
    private func normRows(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Tensor, _ b: Tensor,
                          rows: Int) {
        if config.norm == .rmsNorm { rmsNormRows(out, x, w, rows: rows, eps: config.eps) }
        else { layerNormRows(out, x, w, b, rows: rows, eps: config.eps) }
    }

    /// x += γ ⊙ (y·Wᵀ + b) for a tile's rows, γ = 1 without LayerScale.  y: (n, K), W: (C, K).
    /// Without γ the GEMM accumulates straight onto the residual (bias first); with γ the branch
    /// goes to `normed` (free at both call sites: before norm2, and after fc1 has read it) and
    /// is added scaled in one pass.
    private func addBranch(
        _ xr: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ p: PackedLinear?, _ w: Tensor, _ b: Tensor,
                           scale g: Tensor?, rows n: Int, _ s: Scratch) {
        if let g {
            linear(p, s.normed.data, y, w, b, rows: n, s)
            addScaledRows(xr, s.normed.data, g, rows: n)
        } else {
            linear(p, xr, y, w, b, rows: n, accumulate: true, s)
        }
    }

    /// Block `blk`'s bf16 weights (nil in float32).
    @inline(__always) private func packed(_ blk: BlockWeights) -> PackedBlock? {
        packedBlocks.isEmpty ? nil : packedBlocks[blk.index]
    }

    /// softmax(q·kᵀ/√D)·v for queries q0..<q0+nq of image b, every head, into out (nq, C).
    /// The softmax skips its division: P·V is scaled by 1/Σ afterwards (nq×D values per head
    /// instead of nq×T). Taps get normalised probabilities in a copy, so the outputs are the
    /// same bits with or without taps; they see whole images only (the split guarantees it).
    private func attend(_ layer: Int, image b: Int, queries q0: Int, count nq: Int,
                        out: UnsafeMutablePointer<Float>, _ s: Scratch, taps: ForwardTaps?) {
        let c = config, T = c.tokens, C = c.dim, H = c.heads, D = c.headDim
        let scale = 1 / Float(D).squareRoot()
        let wantLogits = taps?.wantsAttentionLogits ?? false
        let wantProbs = wantLogits || (taps?.wantsAttentionProbabilities ?? false)
        let base = qkv!.data + b * T * 3 * C, sc = s.scores.data
        // BEiT's relative position bias (H, T, ld), part of the logits (BEiT; timm `beit.py`).
        let relBias = weights.blocks[layer].relativeBias, ld = weights.relativeBiasStride
        if attentionPath == .avx2 {
            precondition(D % 8 == 0, "the AVX2 attention kernel needs a head width that is a multiple of 8")
            let nqPad = roundUp(nq, attentionRowBlock), tPad = roundUp(T, attentionColBlock)
            let sp = s.padded.data, inv = s.sums.data
            for hd in 0..<H {
                attentionPackAVX2(q: base + q0 * 3 * C + hd * D, lq: 3 * C, nq: nq, k: base + C + hd * D, lk: 3 * C,
                                  T: T, D: D, qp: s.packedQ.data, kp: s.packedK.data)
                attentionScoresAVX2(
                    qp: s.packedQ.data, kp: s.packedK.data, nqPad: nqPad, Tpad: tPad, D: D, alpha: scale, s: sp,
                                    bias: relBias.map { UnsafePointer($0.data + (hd * T + q0) * tPad) }, nq: nq)
                if wantLogits {
                    for i in 0..<nq { (s.logits.data + (hd * T + i) * T).update(from: sp + i * tPad, count: T) }
                }
                expRowsPaddedAVX2(sp, rows: nq, cols: T, ld: tPad, sums: inv)
                for i in 0..<nq { inv[i] = 1 / inv[i] }
                if wantProbs {
                    for i in 0..<nq {
                        let src = sp + i * tPad, dst = s.probs.data + (hd * T + i) * T, w = inv[i]
                        for j in 0..<T { dst[j] = src[j] * w }
                    }
                }
                attentionValuesAVX2(p: sp, nq: nq, nqPad: nqPad, Tpad: tPad, T: T, v: base + 2 * C + hd * D, lv: 3 * C,
                                    D: D, inv: inv, out: out + hd * D, ldo: C)
            }
            if wantProbs {
                precondition(q0 == 0 && nq == T, "attention taps need whole images")
                taps!.attention(layer: layer, image: b, logits: wantLogits ? UnsafePointer(s.logits.data) : nil,
                                probabilities: s.probs.data)
            }
            return
        }
        for hd in 0..<H {
            // scores_h = scale · q_h k_hᵀ  (nq, T); q at column hd·D, k at C + hd·D, v at 2C + hd·D.
            if precision == .bf16 {
                // bf16 products, float32 accumulation; the scale applied after, in float32.
                let scores = sc + hd * nq * T
                if vl_matmul_bf16(
                    base + q0 * 3 * C + hd * D, nq, D, 3 * C, base + C + hd * D, T, 3 * C, 1, scores, T) != 0 {
                    s.failed = true }
                for i in 0..<(nq * T) { scores[i] *= scale }
            } else {
                sgemm(transB: true, m: nq, n: T, k: D, alpha: scale, a: base + q0 * 3 * C + hd * D, lda: 3 * C,
                      b: base + C + hd * D, ldb: 3 * C, c: sc + hd * nq * T, ldc: T)
            }
        }
        if let relBias {
            for hd in 0..<H {
                for i in 0..<nq {
                    let row = sc + (hd * nq + i) * T, bias = relBias.data + (hd * T + q0 + i) * ld
                    for j in 0..<T { row[j] += bias[j] }
                }
            }
        }
        if wantLogits { s.logits.data.update(from: sc, count: H * nq * T) }
        let sums = s.sums.data
        expRows(sc, rows: H * nq, cols: T, sums: sums)
        if wantProbs {
            precondition(q0 == 0 && nq == T, "attention taps need whole images")
            let pc = s.probs.data
            for r in 0..<(H * T) {
                let src = sc + r * T, dst = pc + r * T, inv = 1 / sums[r]
                for i in 0..<T { dst[i] = src[i] * inv }
            }
            taps!.attention(layer: layer, image: b, logits: wantLogits ? UnsafePointer(s.logits.data) : nil,
                            probabilities: pc)
        }
        for hd in 0..<H {
            if precision == .bf16 {
                if vl_matmul_bf16(
                    sc + hd * nq * T, nq, T, T, base + 2 * C + hd * D, D, 3 * C, 0, out + hd * D, C) != 0 {
                    s.failed = true }
            } else {
                sgemm(m: nq, n: D, k: T, a: sc + hd * nq * T, lda: T, b: base + 2 * C + hd * D, ldb: 3 * C,
                      c: out + hd * D, ldc: C)
            }
        }
        for t in 0..<nq {
            let row = out + t * C
            for hd in 0..<H {
                let inv = 1 / sums[hd * nq + t]
                for i in 0..<D { row[hd * D + i] *= inv }
            }
        }
    }
}

/// Hands out 0, 1, 2, … to whichever worker asks next.
final class TileCounter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next(below n: Int) -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard value < n else { return nil }
        value += 1
        return value - 1
    }
}

@inline(__always) func roundUp(_ n: Int, _ m: Int) -> Int { (n + m - 1) / m * m }

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

/// x[r, :] += g ⊙ y[r, :] for every row (LayerScale's residual add).  x, y: (R, N), g: (N).
func addScaledRows(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ g: Tensor, rows: Int) {
    let n = g.count
    for r in 0..<rows {
        let xr = x + r * n, yr = y + r * n
        for i in 0..<n { xr[i] += g.data[i] * yr[i] }
    }
}

/// x[r, :] += b for every row.  x: (R, N), b: (N).
func addBiasRows(_ x: UnsafeMutablePointer<Float>, _ b: Tensor, rows: Int) {
    let n = b.count
    for r in 0..<rows {
        let xr = x + r * n
        for i in 0..<n { xr[i] += b.data[i] }
    }
}
