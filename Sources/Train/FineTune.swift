import Engine
import Foundation
import VitLensCore

public enum TrainError: Error, CustomStringConvertible {
    case nonFinite(step: Int, epoch: Int, loss: Double)
    case data(String)

    public var description: String {
        switch self {
        case let .nonFinite(step, epoch, loss):
            return "fine-tuning diverged: loss \(loss) at step \(step) (epoch \(epoch)); lower the learning rate "
                + "(nothing was saved)"
        case let .data(m): return m
        }
    }
}

/// One trainable tensor with its gradient and AdamW moments.
public final class Parameter {
    public let name: String
    public let value: Tensor
    public let grad: Tensor
    let m: Tensor
    let v: Tensor
    /// Decoupled weight decay applies (matrices only: not biases, norms, tokens, positions).
    public let decay: Bool
    /// Layer id for layer-wise learning-rate decay (0 embeddings, i + 1 block i, L + 1 norm and head).
    public let layer: Int
    public let frozen: Bool

    init(_ name: String, _ value: Tensor, decay: Bool, layer: Int, frozen: Bool = false) {
        self.name = name
        self.value = value
        grad = Tensor(shape: value.shape)
        m = Tensor(shape: value.shape)
        v = Tensor(shape: value.shape)
        self.decay = decay
        self.layer = layer
        self.frozen = frozen
    }
}

/// One block's trainable tensors, named as the block computes with them.
struct BlockParams {
    let norm1W, norm1B, qkvW, qkvB, projW, projB, norm2W, norm2B, fc1W, fc1B, fc2W, fc2B: Parameter
    /// LayerScale γ₁, γ₂ (DeiT III, DINOv2, BEiT), or nil.
    let ls1, ls2: Parameter?
    /// BEiT's relative position table of this block [(2g−1)² + 3, H], or nil.
    let table: Parameter?
    /// The norms on the attention output and inside the SwiGLU (EVA-02), or nil.
    let attnNormW, attnNormB, mlpNormW, mlpNormB: Parameter?

    /// Block `i` of `w` copied into parameters of layer i + 1 (layer 0 is the embeddings);
    /// weight matrices decay, the rest does not; a model without qkv bias keeps it frozen at 0.
    init(_ b: BlockWeights, index i: Int, config c: ViTConfig, table: Tensor?) {
        func p(_ part: ViTKeys.BlockPart, _ t: Tensor, decay: Bool = false, frozen: Bool = false) -> Parameter {
            Parameter(ViTKeys.block(i, part), t.copy(), decay: decay, layer: i + 1, frozen: frozen)
        }
        // Biases a model does not have (RMSNorm's, AIMv2's linear layers') stay frozen zeros.
        let rms = c.norm == .rmsNorm
        norm1W = p(.norm1Weight, b.norm1W); norm1B = p(.norm1Bias, b.norm1B, frozen: rms)
        qkvW = p(.qkvWeight, b.qkvW, decay: true); qkvB = p(.qkvBias, b.qkvB, frozen: !c.qkvBias)
        projW = p(.projWeight, b.projW, decay: true); projB = p(.projBias, b.projB, frozen: !c.projectionBias)
        norm2W = p(.norm2Weight, b.norm2W); norm2B = p(.norm2Bias, b.norm2B, frozen: rms)
        fc1W = p(.fc1Weight, b.fc1W, decay: true); fc1B = p(.fc1Bias, b.fc1B, frozen: !c.mlpBias)
        fc2W = p(.fc2Weight, b.fc2W, decay: true); fc2B = p(.fc2Bias, b.fc2B, frozen: !c.mlpBias)
        attnNormW = b.attnNormW.map { p(.attentionNormWeight, $0) }
        attnNormB = b.attnNormB.map { p(.attentionNormBias, $0, frozen: rms) }
        mlpNormW = b.mlpNormW.map { p(.mlpNormWeight, $0) }
        mlpNormB = b.mlpNormB.map { p(.mlpNormBias, $0, frozen: rms) }
        ls1 = b.ls1.map { p(.layerScale1, $0) }; ls2 = b.ls2.map { p(.layerScale2, $0) }
        self.table = table.map { p(.relativePositionTable, $0) }
    }

    var all: [Parameter] {
        [norm1W, norm1B, qkvW, qkvB, projW, projB, norm2W, norm2B, fc1W, fc1B, fc2W, fc2B]
            + [ls1, ls2, table, attnNormW, attnNormB, mlpNormW, mlpNormB].compactMap { $0 }
    }
}

/// Fine-tuning hyper-parameters (mae-lite's fine-tuning recipe where it applies: AdamW, warm-up
/// then cosine per step, layer-wise learning-rate decay 0.75, weight decay 0.05).
public struct FineTuneSettings: Sendable {
    public var epochs = 10
    public var batch = 32
    public var learningRate = 1e-3
    public var minLearningRate = 1e-6
    public var warmupEpochs = 1.0
    public var weightDecay = 0.05
    public var layerDecay = 0.75
    public var beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8
    public var seed: UInt64 = 0
    public var pooling: ProbePooling = .mean
    public init() {}

    /// The learning rate at fractional epoch e (MAE's util/lr_sched.adjust_learning_rate).
    public func learningRate(atEpoch e: Double) -> Double {
        if e < warmupEpochs { return learningRate * e / warmupEpochs }
        let span = max(1e-12, Double(epochs) - warmupEpochs)
        return minLearningRate
            + (learningRate - minLearningRate) * 0.5 * (1 + cos(Double.pi * (e - warmupEpochs) / span))
    }
}

/// A ViT truncated to its first k blocks plus the model's final norm, a pooling and a new linear
/// head: forward with the activations backward needs, backward, AdamW.
/// Where a training step spends its time (seconds, summed over steps), for
/// `vitlens bench --train --profile`.
public final class TrainProfile {
    public var linear = 0.0, attention = 0.0, norm = 0.0, gelu = 0.0, optimizer = 0.0, other = 0.0
    public init() {}
    public var total: Double { linear + attention + norm + gelu + optimizer + other }
    public var phases: [(String, Double)] {
        [("linear", linear), ("attention", attention), ("norm", norm), ("gelu", gelu), ("adamw", optimizer),
            ("other", other)]
    }
}

public final class TrainableViT {
    public let config: ViTConfig
    /// When set, the phases of forward, backward and AdamW are timed into it.
    public var profile: TrainProfile?
    private var last: UInt64 = 0
    @inline(__always) private func start() { if profile != nil { last = DispatchTime.now().uptimeNanoseconds } }
    @inline(__always) private func mark(_ phase: ReferenceWritableKeyPath<TrainProfile, Double>) {
        guard let profile else { return }
        let now = DispatchTime.now().uptimeNanoseconds
        profile[keyPath: phase] += Double(now &- last) / 1e9
        last = now
    }
    public let classes: Int
    public let pooling: ProbePooling
    let patchW, patchB, prefix, pos: Parameter
    /// CLIP's ln_pre, or nil.
    let preNormW, preNormB: Parameter?
    /// AIMv2's norm on the patch embeddings, or nil.
    let patchNormW, patchNormB: Parameter?
    /// BEiT's table shared by every block, or nil.
    let sharedTable: Parameter?
    /// The rotation of q and k at every patch position, per block (rotary models; empty otherwise);
    /// with learned frequencies rebuilt from them before every forward pass.
    private var rotary: [RotaryTable]
    /// Learned rotary frequencies [2, blocks kept, H, D/2] (timm's `rope.freqs`), or nil.
    let ropeFrequencies: Parameter?
    let blocks: [BlockParams]
    let normW, normB: Parameter?
    let headW, headB: Parameter
    public let parameters: [Parameter]
    /// BEiT's relative position index (T, T), when the model has tables.
    private let relativeIndex: [Int]

    /// Activations of one batch, sized for `capacity` images.
    private var capacity = 0
    private var cols = Tensor(shape: [1]), emb = Tensor(shape: [1])
    private var xs: [Tensor] = []           // residual stream: input of block l at xs[l], output of the last at xs[k]
    private var ln1: [Tensor] = [], ln1Stats: [Tensor] = [], qkv: [Tensor] = [], probs: [Tensor] = [],
        attn: [Tensor] = []
    private var mid: [Tensor] = [], ln2: [Tensor] = [], ln2Stats: [Tensor] = [], h1: [Tensor] = [], g: [Tensor] = []
    /// LayerScale: the branches before γ (proj and fc2 outputs); relative position bias per block (H, T, T).
    private var branch1: [Tensor] = [], branch2: [Tensor] = [], relBias: [Tensor] = []
    /// CLIP: the embeddings before ln_pre and its statistics.
    private var preX = Tensor(shape: [1]), preStats = Tensor(shape: [1])
    /// AIMv2: the normed patch embeddings and their statistics; EVA-02: the normed attention
    /// output and SwiGLU hidden layer, with theirs.
    private var embNormed = Tensor(shape: [1]), embStats = Tensor(shape: [1])
    private var attnNormed: [Tensor] = [], attnStats: [Tensor] = [], hiddenNormed: [Tensor] = [],
        hiddenStats: [Tensor] = []
    private var dbig3 = Tensor(shape: [1]), dsmall2 = Tensor(shape: [1]), dPatches = Tensor(shape: [1])
    private var normed = Tensor(shape: [1]), normStats = Tensor(shape: [1]), pooled = Tensor(shape: [1]),
        logits = Tensor(shape: [1])
    // Gradient buffers.
    private var dres = Tensor(shape: [1]), dbig = Tensor(shape: [1]), dbig2 = Tensor(shape: [1]),
        dqkv = Tensor(shape: [1])
    private var dsmall = Tensor(shape: [1]), dscratch = Tensor(shape: [1]), dlogits = Tensor(shape: [1]),
        dpooled = Tensor(shape: [1])
    private var dbranch = Tensor(shape: [1]), dattnLogits = Tensor(shape: [1])
    private var step = 0

    /// The first `keep` blocks of `weights`, a head for `classes` classes (truncated normal,
    /// σ = 2e−5, as MAE's fine-tuning initialises it; bias 0), seeded.
    public init(weights w: ViTWeights, keep: Int, classes: Int, pooling: ProbePooling, seed: UInt64) {
        var c = w.config
        c.depth = keep
        config = c
        ropeFrequencies = w.rotaryFrequencies.map { f in
            // The kept blocks' rows of each axis.
            let per = c.heads * c.headDim / 2, full = f.count / 2
            let values = Array(f.buffer[0..<(keep * per)]) + Array(f.buffer[full..<(full + keep * per)])
            return Parameter(ViTKeys.ropeFrequencies, Tensor(shape: [2, keep, c.heads, c.headDim / 2], values: values),
                             decay: false, layer: 0)
        }
        rotary = w.rotaryTables(depth: keep, frequencies: nil)
        self.classes = classes
        self.pooling = pooling
        let L = keep
        patchW = Parameter(ViTKeys.patchWeight, w.patchW.copy(), decay: true, layer: 0)
        patchB = Parameter(ViTKeys.patchBias, w.patchB.copy(), decay: false, layer: 0, frozen: !c.patchBias)
        prefix = Parameter("prefix", w.prefix.copy(), decay: false, layer: 0)
        // Prefix tokens without a position row (registers, or every token without an absolute
        // position embedding) keep zeros there: frozen rows, see `freezeFixedGradients`.
        pos = Parameter(ViTKeys.positions, w.pos.copy(), decay: false, layer: 0, frozen: !c.absolutePositions)
        preNormW = w.preNormW.map { Parameter(ViTKeys.preNormWeight, $0.copy(), decay: false, layer: 0) }
        preNormB = w.preNormB.map { Parameter(ViTKeys.preNormBias, $0.copy(), decay: false, layer: 0) }
        patchNormW = w.patchNormW.map { Parameter(ViTKeys.patchNormWeight, $0.copy(), decay: false, layer: 0) }
        patchNormB = w.patchNormB.map {
            Parameter(ViTKeys.patchNormBias, $0.copy(), decay: false, layer: 0, frozen: c.norm == .rmsNorm) }
        sharedTable = w.sharedRelativeTable.map {
            Parameter(ViTKeys.sharedRelativeTable, $0.copy(), decay: false, layer: 0) }
        blocks = (0..<keep).map { BlockParams(w.blocks[$0], index: $0, config: c, table: w.blocks[$0].relativeTable) }
        relativeIndex = c.relativePositionBias ? ViTWeights.relativePositionIndex(grid: c.runGrid) : []
        let normKeys = c.finalNorm.keys ?? .norm
        normW = w.normW.map { Parameter(normKeys.weight, $0.copy(), decay: false, layer: L + 1) }
        normB = w.normB.map {
            Parameter(normKeys.bias, $0.copy(), decay: false, layer: L + 1, frozen: c.norm == .rmsNorm) }
        let hw = Tensor(shape: [classes, c.dim])
        var rng = SplitMix64(seed: seed)
        for i in 0..<hw.count { hw[i] = Float(rng.truncatedNormal() * 2e-5) }
        headW = Parameter("head.weight", hw, decay: true, layer: L + 1)
        headB = Parameter("head.bias", Tensor(shape: [classes]), decay: false, layer: L + 1)
        parameters = [patchW, patchB, prefix, pos]
            + [preNormW, preNormB, patchNormW, patchNormB, sharedTable, ropeFrequencies].compactMap { $0 }
            + blocks.flatMap(\.all)
            + [normW, normB].compactMap { $0 } + [headW, headB]
    }

    private func reserve(_ B: Int) {
        guard B > capacity else { return }
        let c = config, T = c.tokens, C = c.dim, F = c.mlpHidden, H = c.heads, L = c.depth, R = B * T
        cols = Tensor(shape: [B * c.patches, 3 * c.patch * c.patch]); emb = Tensor(shape: [B * c.patches, C])
        xs = (0...L).map { _ in Tensor(shape: [R, C]) }
        ln1 = (0..<L).map { _ in Tensor(shape: [R, C]) }; ln1Stats = (0..<L).map { _ in Tensor(shape: [2, R]) }
        qkv = (0..<L).map { _ in Tensor(shape: [R, 3 * C]) }; probs = (0..<L).map { _ in Tensor(shape: [B, H, T, T]) }
        attn = (0..<L).map { _ in Tensor(shape: [R, C]) }; mid = (0..<L).map { _ in Tensor(shape: [R, C]) }
        ln2 = (0..<L).map { _ in Tensor(shape: [R, C]) }; ln2Stats = (0..<L).map { _ in Tensor(shape: [2, R]) }
        let up = c.swiGLU ? 2 * F : F
        h1 = (0..<L).map { _ in Tensor(shape: [R, up]) }; g = (0..<L).map { _ in Tensor(shape: [R, F]) }
        if c.patchNorm {
            embNormed = Tensor(shape: [B * c.patches, C]); embStats = Tensor(shape: [2, B * c.patches])
            dPatches = Tensor(shape: [B * c.patches, C])
        }
        if c.attentionNorm {
            attnNormed = (0..<L).map { _ in Tensor(shape: [R, C]) }
            attnStats = (0..<L).map { _ in Tensor(shape: [2, R]) }
            dsmall2 = Tensor(shape: [R, C])
        }
        if c.mlpNorm {
            hiddenNormed = (0..<L).map { _ in Tensor(shape: [R, F]) }
            hiddenStats = (0..<L).map { _ in Tensor(shape: [2, R]) }
            dbig3 = Tensor(shape: [R, F])
        }
        if c.layerScale {
            branch1 = (0..<L).map { _ in Tensor(shape: [R, C]) }; branch2 = (0..<L).map { _ in Tensor(shape: [R, C]) }
            dbranch = Tensor(shape: [R, C])
        }
        if c.relativePositionBias {
            relBias = (0..<L).map { _ in Tensor(shape: [H, T, T]) }
            dattnLogits = Tensor(shape: [B, H, T, T])
        }
        if c.preNorm { preX = Tensor(shape: [R, C]); preStats = Tensor(shape: [2, R]) }
        normed = Tensor(shape: [R, C]); normStats = Tensor(shape: [2, R]); pooled = Tensor(
            shape: [B, C]); logits = Tensor(shape: [B, classes])
        dres = Tensor(shape: [R, C]); dbig = Tensor(shape: [R, F]); dbig2 = Tensor(shape: [R, up]); dqkv = Tensor(
            shape: [R, 3 * C])
        dsmall = Tensor(shape: [R, C]); dscratch = Tensor(shape: [B, T, T]); dlogits = Tensor(
            shape: [B, classes]); dpooled = Tensor(shape: [B, C])
        capacity = B
    }

    /// Block l's relative position bias (H, T, T) from its table and the shared one (BEiT's gather).
    private func expandBias(_ l: Int) {
        let c = config, H = c.heads, TT = c.tokens * c.tokens, out = relBias[l].data
        let own = blocks[l].table?.value.data, shared = sharedTable?.value.data
        for h in 0..<H {
            for k in 0..<TT {
                let r = relativeIndex[k] * H + h
                out[h * TT + k] = (own?[r] ?? 0) + (shared?[r] ?? 0)
            }
        }
    }

    /// y = x + γ ⊙ branch (γ = 1 without LayerScale: the branch is the GEMM accumulated onto y).
    private func residualBranch(_ y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, input: UnsafePointer<Float>,
                                _ w: Parameter, _ b: Parameter, scale: Parameter?, keep: Tensor?, rows R: Int) {
        let C = config.dim
        guard let scale, let keep else {
            y.update(from: x, count: R * C)
            return Linear.accumulate(y, input, w.value, b.value, rows: R)
        }
        Linear.forward(keep.data, input, w.value, b.value, rows: R)
        let gm = scale.value.data, br = keep.data
        parallelChunks(R, minChunk: 64) { r in
            for row in r { for i in 0..<C { y[row * C + i] = x[row * C + i] + gm[i] * br[row * C + i] } }
        }
    }

    /// Logits for a batch, keeping every activation backward needs.  images: (B, 3, S, S) → (B, K).
    @discardableResult
    public func forward(_ images: Tensor) -> UnsafeMutablePointer<Float> {
        let c = config, B = images.shape[0], T = c.tokens, C = c.dim, P = c.patches, np = c.prefixTokens, R = B * T
        reserve(B)
        let blas = BLASRuntime.singleThreaded()
        defer { BLASRuntime.setThreads(blas) }
        start()
        patchify(cols.data, images.data, batch: B, size: c.imageSize, patch: c.patch)
        if let ropeFrequencies, let spec = c.rotary {
            rotary = spec.tables(grid: c.runGrid, headDim: c.headDim, heads: c.heads, depth: c.depth,
                                 frequencies: UnsafePointer(ropeFrequencies.value.data))
        }
        mark(\.other)
        Linear.forward(emb.data, cols.data, patchW.value, patchB.value, rows: B * P)
        mark(\.linear)
        var patches = UnsafePointer(emb.data)
        if let patchNormW, let patchNormB {
            Norm.forward(c.norm, embNormed.data, mean: embStats.data, rstd: embStats.data + B * P, emb.data,
                         patchNormW.value, patchNormB.value, rows: B * P, eps: c.eps)
            patches = UnsafePointer(embNormed.data)
        }
        let x0 = c.preNorm ? preX.data : xs[0].data, pv = pos.value.data, pre = prefix.value.data
        for b in 0..<B {
            for t in 0..<np { for i in 0..<C { x0[(b * T + t) * C + i] = pre[t * C + i] + pv[t * C + i] } }
            for t in 0..<P {
                for i in 0..<C { x0[(b * T + np + t) * C + i] = patches[(b * P + t) * C + i] + pv[(np + t) * C + i] } }
        }
        if let preNormW, let preNormB {
            LayerNorm.forward(
                xs[0].data, mean: preStats.data, rstd: preStats.data + R, preX.data, preNormW.value, preNormB.value,
                rows: R, eps: c.eps)
        }
        for (l, p) in blocks.enumerated() {
            let x = xs[l].data, out = xs[l + 1].data
            mark(\.other)
            Norm.forward(
                c.norm, ln1[l].data, mean: ln1Stats[l].data, rstd: ln1Stats[l].data + R, x, p.norm1W.value,
                p.norm1B.value, rows: R, eps: c.eps)
            mark(\.norm)
            Linear.forward(qkv[l].data, ln1[l].data, p.qkvW.value, p.qkvB.value, rows: R)
            if !rotary.isEmpty {
                applyRotary(qkv[l].data, rows: 0..<R, tokens: T, prefix: np, dim: C, heads: c.heads, table: rotary[l])
            }
            mark(\.linear)
            if c.relativePositionBias { expandBias(l) }
            SelfAttention.forward(
                attn[l].data, probs: probs[l].data, qkv: qkv[l].data, batch: B, tokens: T, heads: c.heads, dim: C,
                                  bias: c.relativePositionBias ? UnsafePointer(relBias[l].data) : nil)
            mark(\.attention)
            if let w = p.attnNormW, let b = p.attnNormB {
                Norm.forward(c.norm, attnNormed[l].data, mean: attnStats[l].data, rstd: attnStats[l].data + R,
                             attn[l].data, w.value, b.value, rows: R, eps: c.eps)
                mark(\.norm)
            }
            residualBranch(
                mid[l].data, x: x, input: projectionInput(l), p.projW, p.projB, scale: p.ls1,
                keep: branch1.isEmpty ? nil : branch1[l], rows: R)
            mark(\.linear)
            Norm.forward(
                c.norm, ln2[l].data, mean: ln2Stats[l].data, rstd: ln2Stats[l].data + R, mid[l].data, p.norm2W.value,
                p.norm2B.value, rows: R, eps: c.eps)
            mark(\.norm)
            Linear.forward(h1[l].data, ln2[l].data, p.fc1W.value, p.fc1B.value, rows: R)
            mark(\.linear)
            if c.swiGLU { SwiGLU.forward(g[l].data, h1[l].data, rows: R, hidden: c.mlpHidden) }
            else { Activation.forward(c.activation, g[l].data, h1[l].data, count: R * c.mlpHidden) }
            mark(\.gelu)
            if let w = p.mlpNormW, let b = p.mlpNormB {
                Norm.forward(c.norm, hiddenNormed[l].data, mean: hiddenStats[l].data, rstd: hiddenStats[l].data + R,
                             g[l].data, w.value, b.value, rows: R, eps: c.eps)
                mark(\.norm)
            }
            residualBranch(
                out, x: mid[l].data, input: fc2Input(l), p.fc2W, p.fc2B, scale: p.ls2,
                keep: branch2.isEmpty ? nil : branch2[l], rows: R)
            mark(\.linear)
        }
        let last = xs[c.depth].data
        if let normW, let normB {
            Norm.forward(
                c.norm, normed.data, mean: normStats.data, rstd: normStats.data + R, last, normW.value, normB.value,
                rows: R, eps: c.eps)
        } else {
            normed.data.update(from: last, count: R * C)
        }
        for b in 0..<B {
            let dst = pooled.data + b * C, img = normed.data + b * T * C
            switch pooling {
            case .cls: dst.update(from: img, count: C)
            case .mean:
                for i in 0..<C { dst[i] = 0 }
                for t in np..<T { for i in 0..<C { dst[i] += img[t * C + i] } }
                for i in 0..<C { dst[i] /= Float(P) }
            }
        }
        Linear.forward(logits.data, pooled.data, headW.value, headB.value, rows: B)
        mark(\.other)
        return logits.data
    }

    /// What block l's projection and fc2 read: the attention output and SwiGLU hidden layer, normed
    /// where the model norms them (EVA-02).
    private func projectionInput(_ l: Int) -> UnsafePointer<Float> {
        UnsafePointer(config.attentionNorm ? attnNormed[l].data : attn[l].data) }
    private func fc2Input(_ l: Int) -> UnsafePointer<Float> {
        UnsafePointer(config.mlpNorm ? hiddenNormed[l].data : g[l].data) }

    /// The pooled features of the last `forward`, (B, C): what the head sees.
    public func pooledFeatures(batch B: Int) -> [Float] {
        Array(UnsafeBufferPointer(start: pooled.data, count: B * config.dim)) }

    /// dγ += Σ_rows d ⊙ branch, and d ← d ⊙ γ into `dbranch` (returned), for a LayerScale branch;
    /// `d` itself when there is none.
    private func scaleBackward(
        _ d: UnsafePointer<Float>, scale: Parameter?, branch: [Tensor], layer l: Int,
        rows R: Int) -> UnsafePointer<Float> {
        guard let scale else { return d }
        let C = config.dim, br = branch[l].data, gm = scale.value.data, db = dbranch.data
        parallelChunks(C, minChunk: 32) { ch in
            for i in ch {
                var acc = 0.0
                for r in 0..<R { acc += Double(d[r * C + i] * br[r * C + i]) }
                scale.grad.data[i] += Float(acc)
            }
        }
        parallelChunks(R, minChunk: 64) { r in
            for row in r { for i in 0..<C { db[row * C + i] = d[row * C + i] * gm[i] } }
        }
        return UnsafePointer(db)
    }

    /// The relative position tables' gradient from dS of every image: dtable[index(i, j), h] += Σ_b dS[b, h, i, j].
    private func tableBackward(_ l: Int, batch B: Int) {
        let c = config, H = c.heads, TT = c.tokens * c.tokens, d = dattnLogits.data
        for target in [blocks[l].table, sharedTable].compactMap({ $0 }) {
            let gt = target.grad.data
            for h in 0..<H {
                for k in 0..<TT {
                    var acc: Float = 0
                    for b in 0..<B { acc += d[(b * H + h) * TT + k] }
                    gt[relativeIndex[k] * H + h] += acc
                }
            }
        }
    }

    /// Back through a norm inside a block (EVA-02's on the attention output and on the SwiGLU's hidden
    /// layer): the input's gradient into `into`; `dy` itself where the block has no such norm.
    private func innerNormBackward(_ w: Parameter?, _ b: Parameter?, dy: UnsafeMutablePointer<Float>, x: [Tensor],
                                   stats: [Tensor], layer l: Int, rows R: Int, into: Tensor) -> UnsafePointer<Float> {
        guard let w, let b else { return UnsafePointer(dy) }
        Norm.backward(config.norm, dx: into.data, dw: w.grad, db: b.grad, dy: dy, x: x[l].data, mean: stats[l].data,
                      rstd: stats[l].data + R, w: w.value, rows: R, accumulate: false)
        mark(\.norm)
        return UnsafePointer(into.data)
    }

    /// Learned rotary frequencies: block l's angle of pair i in head h at patch (x, y) is
    /// x·f[0, l, h, i] + y·f[1, l, h, i], so df[·, l, h, i] += Σ x (resp. y)·dL/dangle over the turned
    /// q and k of every image (dqkv still taken with respect to the turned values).
    private func frequencyBackward(_ f: Parameter, layer l: Int, rows R: Int) {
        let c = config, g = c.runGrid, H = c.heads, pairs = c.headDim / 2, P = g * g
        guard let spec = c.rotary else { return }
        var dangle = [Double](repeating: 0, count: P * H * pairs)
        dangle.withUnsafeMutableBufferPointer {
            rotaryAngleGradients(qkv[l].data, dqkv.data, rows: 0..<R, tokens: c.tokens, prefix: c.prefixTokens,
                                 dim: c.dim, heads: H, halfSplit: spec.halfSplit, into: $0.baseAddress!)
        }
        let stride = c.depth * H * pairs
        for p in 0..<P {
            let (row, col) = (p / g, p % g)
            let (x, y) = spec.columnFirst ? (Double(col), Double(row)) : (Double(row), Double(col))
            for h in 0..<H {
                for i in 0..<pairs {
                    let d = dangle[(p * H + h) * pairs + i], at = (l * H + h) * pairs + i
                    f.grad.data[at] += Float(x * d)
                    f.grad.data[stride + at] += Float(y * d)
                }
            }
        }
    }

    /// Parameters that must not move: the k slice of BEiT's qkv bias (it has none), position rows
    /// of prefix tokens that have no position embedding.
    private func freezeFixedGradients() {
        let c = config, C = c.dim
        if !c.keyBias && c.qkvBias { for p in blocks { (p.qkvB.grad.data + C).update(repeating: 0, count: C) } }
        if c.absolutePositions && c.positionSlots < c.prefixTokens {
            (pos.grad.data + c.positionSlots * C).update(repeating: 0, count: (c.prefixTokens - c.positionSlots) * C)
        }
    }

    /// Gradients of the mean cross-entropy of the last `forward` (accumulated into zeroed grads).
    public func backward(labels: [Int]) -> (loss: Double, correct: Int) {
        let c = config, B = labels.count, T = c.tokens, C = c.dim, P = c.patches, np = c.prefixTokens, R = B * T,
            F = c.mlpHidden
        let blas = BLASRuntime.singleThreaded()
        defer { BLASRuntime.setThreads(blas) }
        start()
        for p in parameters { p.grad.fill(0) }
        let (loss, correct) = CrossEntropy.forwardBackward(
            logits.data, labels: labels, classes: classes, dlogits: dlogits.data)
        Linear.backward(
            dx: dpooled.data, dw: headW.grad, db: headB.grad, dy: dlogits.data, x: pooled.data, w: headW.value, rows: B)
        // Pooling: the mean spreads 1/P to every patch token; cls sends all to token 0.
        let dn = dsmall.data
        dn.update(repeating: 0, count: R * C)
        for b in 0..<B {
            let src = dpooled.data + b * C
            switch pooling {
            case .cls: (dn + b * T * C).update(from: src, count: C)
            case .mean: for t in np..<T { for i in 0..<C { dn[(b * T + t) * C + i] = src[i] / Float(P) } }
            }
        }
        if let normW, let normB {
            Norm.backward(c.norm, dx: dres.data, dw: normW.grad, db: normB.grad, dy: dn, x: xs[c.depth].data,
                          mean: normStats.data, rstd: normStats.data + R, w: normW.value, rows: R, accumulate: false)
        } else {
            dres.data.update(from: dn, count: R * C)
        }
        for l in stride(from: c.depth - 1, through: 0, by: -1) {
            let p = blocks[l]
            mark(\.other)
            // MLP branch: out = mid + γ₂ ⊙ (act(ln2(mid)·W1ᵀ + b1)·W2ᵀ + b2).
            var dy = scaleBackward(dres.data, scale: p.ls2, branch: branch2, layer: l, rows: R)
            Linear.backward(
                dx: dbig.data, dw: p.fc2W.grad, db: p.fc2B.grad, dy: dy, x: fc2Input(l), w: p.fc2W.value, rows: R)
            mark(\.linear)
            let dhidden = innerNormBackward(p.mlpNormW, p.mlpNormB, dy: dbig.data, x: g, stats: hiddenStats, layer: l,
                                            rows: R, into: dbig3)
            if c.swiGLU { SwiGLU.backward(dx: dbig2.data, dy: dhidden, x: h1[l].data, rows: R, hidden: F) }
            else { Activation.backward(c.activation, dx: dbig2.data, dy: dhidden, x: h1[l].data, count: R * F) }
            mark(\.gelu)
            Linear.backward(
                dx: dsmall.data, dw: p.fc1W.grad, db: p.fc1B.grad, dy: dbig2.data, x: ln2[l].data, w: p.fc1W.value,
                rows: R)
            mark(\.linear)
            Norm.backward(c.norm, dx: dres.data, dw: p.norm2W.grad, db: p.norm2B.grad, dy: dsmall.data,
                          x: mid[l].data, mean: ln2Stats[l].data, rstd: ln2Stats[l].data + R, w: p.norm2W.value,
                          rows: R, accumulate: true)
            mark(\.norm)
            // Attention branch: mid = x + γ₁ ⊙ (attn(ln1(x))·Wpᵀ + bp).
            dy = scaleBackward(dres.data, scale: p.ls1, branch: branch1, layer: l, rows: R)
            Linear.backward(
                dx: dsmall.data, dw: p.projW.grad, db: p.projB.grad, dy: dy, x: projectionInput(l), w: p.projW.value,
                rows: R)
            mark(\.linear)
            let dout = innerNormBackward(p.attnNormW, p.attnNormB, dy: dsmall.data, x: attn, stats: attnStats,
                                         layer: l, rows: R, into: dsmall2)
            SelfAttention.backward(
                dqkv: dqkv.data, dout: dout, qkv: qkv[l].data, probs: probs[l].data, scratch: dscratch.data,
                                   batch: B, tokens: T, heads: c.heads, dim: C, dlogits: c.relativePositionBias
                                       ? dattnLogits.data : nil)
            if c.relativePositionBias { tableBackward(l, batch: B) }
            // dq, dk were taken with respect to the turned q, k: turn them back.
            if let ropeFrequencies { frequencyBackward(ropeFrequencies, layer: l, rows: R) }
            if !rotary.isEmpty {
                applyRotary(dqkv.data, rows: 0..<R, tokens: T, prefix: np, dim: C, heads: c.heads, table: rotary[l],
                            inverse: true)
            }
            mark(\.attention)
            Linear.backward(
                dx: dsmall.data, dw: p.qkvW.grad, db: p.qkvB.grad, dy: dqkv.data, x: ln1[l].data, w: p.qkvW.value,
                rows: R)
            mark(\.linear)
            Norm.backward(c.norm, dx: dres.data, dw: p.norm1W.grad, db: p.norm1B.grad, dy: dsmall.data,
                          x: xs[l].data, mean: ln1Stats[l].data, rstd: ln1Stats[l].data + R, w: p.norm1W.value,
                          rows: R, accumulate: true)
            mark(\.norm)
        }
        if let preNormW, let preNormB {
            // x0 = ln_pre(embeddings): back through it.
            dsmall.data.update(from: dres.data, count: R * C)
            LayerNorm.backward(dx: dres.data, dw: preNormW.grad, db: preNormB.grad, dy: dsmall.data, x: preX.data,
                               mean: preStats.data, rstd: preStats.data + R, w: preNormW.value, rows: R,
                                   accumulate: false)
        }
        // Embeddings: x0 = [prefix; patches·Wᵀ + b] + pos (the patches normed first in AIMv2). d(patches)
        // goes where the patches were (emb), or with a patch norm beside them.
        let d = dres.data, dpatches = c.patchNorm ? dPatches.data : emb.data
        for b in 0..<B {
            for t in 0..<T { for i in 0..<C { pos.grad.data[t * C + i] += d[(b * T + t) * C + i] } }
            for t in 0..<np { for i in 0..<C { prefix.grad.data[t * C + i] += d[(b * T + t) * C + i] } }
            (dpatches + b * P * C).update(from: d + (b * T + np) * C, count: P * C)
        }
        mark(\.other)
        if let patchNormW, let patchNormB {
            // Back through the patch norm (its input, emb, kept); embNormed takes d(patches).
            Norm.backward(c.norm, dx: embNormed.data, dw: patchNormW.grad, db: patchNormB.grad, dy: dpatches,
                          x: emb.data, mean: embStats.data, rstd: embStats.data + B * P, w: patchNormW.value,
                          rows: B * P, accumulate: false)
        }
        Linear.backward(
            dx: nil, dw: patchW.grad, db: patchB.grad, dy: c.patchNorm ? embNormed.data : emb.data, x: cols.data,
            w: patchW.value, rows: B * P)
        freezeFixedGradients()
        mark(\.linear)
        return (loss, correct)
    }

    /// One AdamW step (torch.optim.AdamW: decoupled decay p ← p·(1 − lr·wd), bias-corrected
    /// moments) at base learning rate `lr`, scaled per layer by decay^(L + 1 − layer).
    public func adamW(lr: Double, settings s: FineTuneSettings) {
        start()
        defer { mark(\.optimizer) }
        step += 1
        let L = config.depth + 1
        let bc1 = 1 - pow(s.beta1, Double(step)), bc2 = 1 - pow(s.beta2, Double(step))
        let b1 = Float(s.beta1), b2 = Float(s.beta2)
        for p in parameters where !p.frozen {
            let plr = lr * pow(s.layerDecay, Double(L - p.layer))
            let stepSize = Float(plr / bc1), root2 = Float(1 / bc2.squareRoot()), eps = Float(s.epsilon)
            let shrink = p.decay ? Float(1 - plr * s.weightDecay) : 1
            let w = p.value.data, gr = p.grad.data, m = p.m.data, v = p.v.data
            for i in 0..<p.value.count {
                m[i] = b1 * m[i] + (1 - b1) * gr[i]
                v[i] = b2 * v[i] + (1 - b2) * gr[i] * gr[i]
                w[i] = w[i] * shrink - stepSize * m[i] / ((v[i]).squareRoot() * root2 + eps)
            }
        }
    }

    /// Predicted classes of a batch (forward only; ties to the lowest index).
    public func predict(_ images: Tensor) -> [Int] {
        let z = forward(images)
        return (0..<images.shape[0]).map { b in
            var best = 0
            for c in 1..<classes where z[b * classes + c] > z[b * classes + best] { best = c }
            return best
        }
    }

    /// The weights under timm's names for the model's family — timm's `VisionTransformer` names,
    /// or its `Beit` names for BEiT / mae-lite RPE (q_bias and v_bias, gamma_1/gamma_2, the
    /// relative position tables) — for a safetensors file every vitlens command loads (and timm).
    public func stateDict() -> [(String, [Int], Tensor)] {
        // timm's Eva (rope ViTs) names LayerScale as BEiT does.
        // timm's names for the family (its definition in Families says which differ).
        let c = config, C = c.dim, names = c.saveNames
        func rows(_ t: Tensor, _ r: Range<Int>) -> Tensor {
            Tensor(shape: [r.count, C], values: Array(t.buffer[(r.lowerBound * C)..<(r.upperBound * C)])) }
        var out: [(String, [Int], Tensor)] = [(ViTKeys.patchWeight, [C, 3, c.patch, c.patch], patchW.value)]
        if c.patchBias { out.append((ViTKeys.patchBias, [C], patchB.value)) }
        if c.absolutePositions {
            // The rows the checkpoint had: its prefix slots (all, none, or the class token's), then the grid.
            let slots = rows(pos.value, 0..<c.positionSlots), grid = rows(pos.value, c.prefixTokens..<c.tokens)
            out.append(
                (ViTKeys.positions, [1, c.positionSlots + c.patches, C],
                Tensor(shape: [c.positionSlots + c.patches, C], values: slots.array + grid.array)))
        }
        var t = 0
        if c.classToken { out.append((ViTKeys.classToken, [1, 1, C], rows(prefix.value, 0..<1))); t = 1 }
        if c.registers > 0 {
            out.append((ViTKeys.registerTokens, [1, c.registers, C], rows(prefix.value, t..<(t + c.registers))))
        } else if c.prefixTokens > t {
            out.append((ViTKeys.distillationToken, [1, 1, C], rows(prefix.value, t..<(t + 1))))
        }
        if let preNormW,
            let preNormB { out += [(preNormW.name, [C], preNormW.value), (preNormB.name, [C], preNormB.value)] }
        for q in [patchNormW, patchNormB].compactMap({ $0 }) where !q.frozen { out.append((q.name, [C], q.value)) }
        if let sharedTable { out.append((sharedTable.name, sharedTable.value.shape, sharedTable.value)) }
        if let f = ropeFrequencies { out.append((f.name, f.value.shape, f.value)) }
        // Pieces of a stacked tensor: rows r of a (n, k) weight or (n) bias.
        func piece(_ t: Tensor, _ r: Range<Int>) -> ([Int], Tensor) {
            let k = t.shape.count == 2 ? t.shape[1] : 1
            let values = Array(t.buffer[(r.lowerBound * k)..<(r.upperBound * k)])
            return (t.shape.count == 2 ? [r.count, k] : [r.count], Tensor(shape: [values.count], values: values))
        }
        let F = c.mlpHidden
        for (i, p) in blocks.enumerated() {
            for q in p.all where !q.frozen {
                if names.separateQKV && (q === p.qkvW || q === p.qkvB) {
                    // q, k, v as separate projections (EVA-02 base/large and CLIP in timm's names).
                    let kind = q === p.qkvW ? "weight" : "bias"
                    for (j, name) in ["q", "k", "v"].enumerated() where kind == "weight" || name != "k" || c.keyBias {
                        let (shape, t) = piece(q.value, (j * C)..<((j + 1) * C))
                        out.append(("blocks.\(i).attn.\(name)_proj.\(kind)", shape, t))
                    }
                } else if names.separateGLU && (q === p.fc1W || q === p.fc1B) {
                    // SwiGLU's gate and up as timm's SwiGLU holds them (fc1_g, fc1_x).
                    let kind = q === p.fc1W ? "weight" : "bias"
                    for (j, name) in ["g", "x"].enumerated() {
                        let (shape, t) = piece(q.value, (j * F)..<((j + 1) * F))
                        out.append(("blocks.\(i).mlp.fc1_\(name).\(kind)", shape, t))
                    }
                } else if names.qvBiases && q === p.qkvB {
                    let b = q.value.array
                    out.append(("blocks.\(i).attn.q_bias", [C], Tensor(shape: [C], values: Array(b[0..<C]))))
                    out.append(
                        ("blocks.\(i).attn.v_bias", [C], Tensor(shape: [C], values: Array(b[(2 * C)..<(3 * C)]))))
                } else if names.layerScaleAsGamma && (q === p.ls1 || q === p.ls2) {
                    out.append(("blocks.\(i).\(q === p.ls1 ? "gamma_1" : "gamma_2")", [C], q.value))
                } else {
                    out.append((q.name, q.value.shape, q.value))
                }
            }
        }
        for q in [normW, normB].compactMap({ $0 }) where !q.frozen { out.append((q.name, [C], q.value)) }
        out += [("head.weight", [classes, C], headW.value), ("head.bias", [classes], headB.value)]
        return out
    }
}

func addBias(_ x: UnsafeMutablePointer<Float>, _ b: Tensor, rows: Int) {
    let n = b.count
    for r in 0..<rows { let xr = x + r * n; for i in 0..<n { xr[i] += b.data[i] } }
}


/// One epoch of fine-tuning, as logged.
public struct EpochLog: Sendable {
    public var epoch: Int
    public var meanLoss: Double
    public var trainAccuracy: Double
    public var learningRate: Double
    public var seconds: Double
}

/// The training loop: seeded shuffles per epoch, AdamW steps with the warm-up + cosine schedule
/// evaluated per step, a stop with an error naming the step when the loss is not finite.
/// `load(indices)` returns the normalised images (B, 3, S, S) of those train indices.
public func fineTune(_ model: TrainableViT, labels: [Int], settings s: FineTuneSettings,
                     load: ([Int]) throws -> Tensor, onEpoch: (EpochLog) -> Void = { _ in },
                     onStep: (Int, Int) -> Void = { _, _ in }) throws -> [EpochLog] {
    let n = labels.count
    guard n > 0 else { throw TrainError.data("no train images") }
    let steps = (n + s.batch - 1) / s.batch
    var logs: [EpochLog] = [], step = 0
    for epoch in 0..<s.epochs {
        let start = Date()
        var rng = SplitMix64(seed: s.seed &+ UInt64(epoch) &* 0x9E37_79B9)
        let order = rng.permutation(n)
        var lossSum = 0.0, correct = 0, lr = 0.0
        for i in 0..<steps {
            let idx = Array(order[(i * s.batch)..<min(n, (i + 1) * s.batch)])
            let x = try load(idx)
            model.forward(x)
            let (loss, c) = model.backward(labels: idx.map { labels[$0] })
            step += 1
            guard loss.isFinite else { throw TrainError.nonFinite(step: step, epoch: epoch + 1, loss: loss) }
            lr = s.learningRate(atEpoch: Double(epoch) + Double(i) / Double(steps))
            model.adamW(lr: lr, settings: s)
            lossSum += loss * Double(idx.count)
            correct += c
            onStep(step, s.epochs * steps)
        }
        let log = EpochLog(epoch: epoch + 1, meanLoss: lossSum / Double(n), trainAccuracy: Double(correct) / Double(n),
                           learningRate: lr, seconds: Date().timeIntervalSince(start))
        logs.append(log)
        onEpoch(log)
    }
    return logs
}

/// Accuracy of the model over `labels.count` images loaded in batches of `batch`.
public func evaluate(
    _ model: TrainableViT, labels: [Int], batch: Int, load: ([Int]) throws -> Tensor) throws -> Double {
    guard !labels.isEmpty else { return .nan }
    var correct = 0
    var start = 0
    while start < labels.count {
        let idx = Array(start..<min(labels.count, start + batch))
        let p = model.predict(try load(idx))
        correct += zip(p, idx).filter { $0 == labels[$1] }.count
        start += batch
    }
    return Double(correct) / Double(labels.count)
}
