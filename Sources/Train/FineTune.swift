import Engine
import Foundation
import VitLensCore

public enum TrainError: Error, CustomStringConvertible {
    case nonFinite(step: Int, epoch: Int, loss: Double)
    case data(String)

    public var description: String {
        switch self {
        case let .nonFinite(step, epoch, loss):
            return "fine-tuning diverged: loss \(loss) at step \(step) (epoch \(epoch)); lower the learning rate (nothing was saved)"
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

    /// Block `i` of `w` copied into parameters of layer i + 1 (layer 0 is the embeddings);
    /// weight matrices decay, the rest does not; a model without qkv bias keeps it frozen at 0.
    init(_ b: BlockWeights, index i: Int, qkvBias: Bool) {
        func p(_ part: ViTKeys.BlockPart, _ t: Tensor, decay: Bool = false, frozen: Bool = false) -> Parameter {
            Parameter(ViTKeys.block(i, part), t.copy(), decay: decay, layer: i + 1, frozen: frozen)
        }
        norm1W = p(.norm1Weight, b.norm1W); norm1B = p(.norm1Bias, b.norm1B)
        qkvW = p(.qkvWeight, b.qkvW, decay: true); qkvB = p(.qkvBias, b.qkvB, frozen: !qkvBias)
        projW = p(.projWeight, b.projW, decay: true); projB = p(.projBias, b.projB)
        norm2W = p(.norm2Weight, b.norm2W); norm2B = p(.norm2Bias, b.norm2B)
        fc1W = p(.fc1Weight, b.fc1W, decay: true); fc1B = p(.fc1Bias, b.fc1B)
        fc2W = p(.fc2Weight, b.fc2W, decay: true); fc2B = p(.fc2Bias, b.fc2B)
    }

    var all: [Parameter] { [norm1W, norm1B, qkvW, qkvB, projW, projB, norm2W, norm2B, fc1W, fc1B, fc2W, fc2B] }
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
        return minLearningRate + (learningRate - minLearningRate) * 0.5 * (1 + cos(Double.pi * (e - warmupEpochs) / span))
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
        [("linear", linear), ("attention", attention), ("norm", norm), ("gelu", gelu), ("adamw", optimizer), ("other", other)]
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
    let blocks: [BlockParams]
    let normW, normB: Parameter?
    let headW, headB: Parameter
    public let parameters: [Parameter]

    /// Activations of one batch, sized for `capacity` images.
    private var capacity = 0
    private var cols = Tensor(shape: [1]), emb = Tensor(shape: [1])
    private var xs: [Tensor] = []           // residual stream: input of block l at xs[l], output of the last at xs[k]
    private var ln1: [Tensor] = [], ln1Stats: [Tensor] = [], qkv: [Tensor] = [], probs: [Tensor] = [], attn: [Tensor] = []
    private var mid: [Tensor] = [], ln2: [Tensor] = [], ln2Stats: [Tensor] = [], h1: [Tensor] = [], g: [Tensor] = []
    private var normed = Tensor(shape: [1]), normStats = Tensor(shape: [1]), pooled = Tensor(shape: [1]), logits = Tensor(shape: [1])
    // Gradient buffers.
    private var dres = Tensor(shape: [1]), dbig = Tensor(shape: [1]), dbig2 = Tensor(shape: [1]), dqkv = Tensor(shape: [1])
    private var dsmall = Tensor(shape: [1]), dscratch = Tensor(shape: [1]), dlogits = Tensor(shape: [1]), dpooled = Tensor(shape: [1])
    private var step = 0

    /// What this module cannot train yet, or nil: its kernels have no LayerScale, relative position
    /// bias or activation other than exact GELU, and its saved files no register tokens.
    public static func unsupported(_ c: ViTConfig) -> String? {
        if c.relativePositionBias { return "relative position bias (\(c.family))" }
        if !c.classToken { return "no class token (\(c.family))" }
        if c.layerScale { return "LayerScale (\(c.family))" }
        if c.preNorm { return "ln_pre and QuickGELU (\(c.family))" }
        if c.registers > 0 { return "register tokens (\(c.family))" }
        if c.activation != .gelu { return "the \(c.activation.rawValue) activation (\(c.family))" }
        return nil
    }

    /// The first `keep` blocks of `weights`, a head for `classes` classes (truncated normal,
    /// σ = 2e−5, as MAE's fine-tuning initialises it; bias 0), seeded.
    public init(weights w: ViTWeights, keep: Int, classes: Int, pooling: ProbePooling, seed: UInt64) {
        var c = w.config
        c.depth = keep
        config = c
        self.classes = classes
        self.pooling = pooling
        let L = keep
        func copy(_ t: Tensor) -> Tensor { t.copy() }
        patchW = Parameter(ViTKeys.patchWeight, w.patchW.copy(), decay: true, layer: 0)
        patchB = Parameter(ViTKeys.patchBias, w.patchB.copy(), decay: false, layer: 0)
        prefix = Parameter("prefix", w.prefix.copy(), decay: false, layer: 0)
        pos = Parameter(ViTKeys.positions, w.pos.copy(), decay: false, layer: 0)
        blocks = (0..<keep).map { BlockParams(w.blocks[$0], index: $0, qkvBias: c.qkvBias) }
        let normKeys = c.finalNorm.keys ?? .norm
        normW = w.normW.map { Parameter(normKeys.weight, $0.copy(), decay: false, layer: L + 1) }
        normB = w.normB.map { Parameter(normKeys.bias, $0.copy(), decay: false, layer: L + 1) }
        let hw = Tensor(shape: [classes, c.dim])
        var rng = SplitMix64(seed: seed)
        for i in 0..<hw.count { hw[i] = Float(rng.truncatedNormal() * 2e-5) }
        headW = Parameter("head.weight", hw, decay: true, layer: L + 1)
        headB = Parameter("head.bias", Tensor(shape: [classes]), decay: false, layer: L + 1)
        parameters = [patchW, patchB, prefix, pos] + blocks.flatMap(\.all) + [normW, normB].compactMap { $0 } + [headW, headB]
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
        h1 = (0..<L).map { _ in Tensor(shape: [R, F]) }; g = (0..<L).map { _ in Tensor(shape: [R, F]) }
        normed = Tensor(shape: [R, C]); normStats = Tensor(shape: [2, R]); pooled = Tensor(shape: [B, C]); logits = Tensor(shape: [B, classes])
        dres = Tensor(shape: [R, C]); dbig = Tensor(shape: [R, F]); dbig2 = Tensor(shape: [R, F]); dqkv = Tensor(shape: [R, 3 * C])
        dsmall = Tensor(shape: [R, C]); dscratch = Tensor(shape: [B, T, T]); dlogits = Tensor(shape: [B, classes]); dpooled = Tensor(shape: [B, C])
        capacity = B
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
        mark(\.other)
        Linear.forward(emb.data, cols.data, patchW.value, patchB.value, rows: B * P)
        mark(\.linear)
        let x0 = xs[0].data, pv = pos.value.data, pre = prefix.value.data
        for b in 0..<B {
            for t in 0..<np { for i in 0..<C { x0[(b * T + t) * C + i] = pre[t * C + i] + pv[t * C + i] } }
            for t in 0..<P { for i in 0..<C { x0[(b * T + np + t) * C + i] = emb.data[(b * P + t) * C + i] + pv[(np + t) * C + i] } }
        }
        for (l, p) in blocks.enumerated() {
            let x = xs[l].data, out = xs[l + 1].data
            mark(\.other)
            LayerNorm.forward(ln1[l].data, mean: ln1Stats[l].data, rstd: ln1Stats[l].data + R, x, p.norm1W.value, p.norm1B.value, rows: R, eps: c.eps)
            mark(\.norm)
            Linear.forward(qkv[l].data, ln1[l].data, p.qkvW.value, p.qkvB.value, rows: R)
            mark(\.linear)
            SelfAttention.forward(attn[l].data, probs: probs[l].data, qkv: qkv[l].data, batch: B, tokens: T, heads: c.heads, dim: C)
            mark(\.attention)
            mid[l].data.update(from: x, count: R * C)
            Linear.accumulate(mid[l].data, attn[l].data, p.projW.value, p.projB.value, rows: R)
            mark(\.linear)
            LayerNorm.forward(ln2[l].data, mean: ln2Stats[l].data, rstd: ln2Stats[l].data + R, mid[l].data, p.norm2W.value, p.norm2B.value, rows: R, eps: c.eps)
            mark(\.norm)
            Linear.forward(h1[l].data, ln2[l].data, p.fc1W.value, p.fc1B.value, rows: R)
            mark(\.linear)
            GELU.forward(g[l].data, h1[l].data, count: R * c.mlpHidden)
            mark(\.gelu)
            out.update(from: mid[l].data, count: R * C)
            Linear.accumulate(out, g[l].data, p.fc2W.value, p.fc2B.value, rows: R)
            mark(\.linear)
        }
        let last = xs[c.depth].data
        if let normW, let normB {
            LayerNorm.forward(normed.data, mean: normStats.data, rstd: normStats.data + R, last, normW.value, normB.value, rows: R, eps: c.eps)
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

    /// The pooled features of the last `forward`, (B, C): what the head sees.
    public func pooledFeatures(batch B: Int) -> [Float] { Array(UnsafeBufferPointer(start: pooled.data, count: B * config.dim)) }

    /// Gradients of the mean cross-entropy of the last `forward` (accumulated into zeroed grads).
    public func backward(labels: [Int]) -> (loss: Double, correct: Int) {
        let c = config, B = labels.count, T = c.tokens, C = c.dim, P = c.patches, np = c.prefixTokens, R = B * T, F = c.mlpHidden
        let blas = BLASRuntime.singleThreaded()
        defer { BLASRuntime.setThreads(blas) }
        start()
        for p in parameters { p.grad.fill(0) }
        let (loss, correct) = CrossEntropy.forwardBackward(logits.data, labels: labels, classes: classes, dlogits: dlogits.data)
        Linear.backward(dx: dpooled.data, dw: headW.grad, db: headB.grad, dy: dlogits.data, x: pooled.data, w: headW.value, rows: B)
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
            LayerNorm.backward(dx: dres.data, dw: normW.grad, db: normB.grad, dy: dn, x: xs[c.depth].data,
                               mean: normStats.data, rstd: normStats.data + R, w: normW.value, rows: R, accumulate: false)
        } else {
            dres.data.update(from: dn, count: R * C)
        }
        for l in stride(from: c.depth - 1, through: 0, by: -1) {
            let p = blocks[l]
            mark(\.other)
            // MLP branch: out = mid + gelu(ln2(mid)·W1ᵀ + b1)·W2ᵀ + b2.
            Linear.backward(dx: dbig.data, dw: p.fc2W.grad, db: p.fc2B.grad, dy: dres.data, x: g[l].data, w: p.fc2W.value, rows: R)
            mark(\.linear)
            GELU.backward(dx: dbig2.data, dy: dbig.data, x: h1[l].data, count: R * F)
            mark(\.gelu)
            Linear.backward(dx: dsmall.data, dw: p.fc1W.grad, db: p.fc1B.grad, dy: dbig2.data, x: ln2[l].data, w: p.fc1W.value, rows: R)
            mark(\.linear)
            LayerNorm.backward(dx: dres.data, dw: p.norm2W.grad, db: p.norm2B.grad, dy: dsmall.data, x: mid[l].data,
                               mean: ln2Stats[l].data, rstd: ln2Stats[l].data + R, w: p.norm2W.value, rows: R, accumulate: true)
            mark(\.norm)
            // Attention branch: mid = x + attn(ln1(x))·Wpᵀ + bp.
            Linear.backward(dx: dsmall.data, dw: p.projW.grad, db: p.projB.grad, dy: dres.data, x: attn[l].data, w: p.projW.value, rows: R)
            mark(\.linear)
            SelfAttention.backward(dqkv: dqkv.data, dout: dsmall.data, qkv: qkv[l].data, probs: probs[l].data, scratch: dscratch.data,
                                   batch: B, tokens: T, heads: c.heads, dim: C)
            mark(\.attention)
            Linear.backward(dx: dsmall.data, dw: p.qkvW.grad, db: p.qkvB.grad, dy: dqkv.data, x: ln1[l].data, w: p.qkvW.value, rows: R)
            mark(\.linear)
            LayerNorm.backward(dx: dres.data, dw: p.norm1W.grad, db: p.norm1B.grad, dy: dsmall.data, x: xs[l].data,
                               mean: ln1Stats[l].data, rstd: ln1Stats[l].data + R, w: p.norm1W.value, rows: R, accumulate: true)
            mark(\.norm)
        }
        // Embeddings: x0 = [prefix; patches·Wᵀ + b] + pos.
        let d = dres.data
        for b in 0..<B {
            for t in 0..<T { for i in 0..<C { pos.grad.data[t * C + i] += d[(b * T + t) * C + i] } }
            for t in 0..<np { for i in 0..<C { prefix.grad.data[t * C + i] += d[(b * T + t) * C + i] } }
            (emb.data + b * P * C).update(from: d + (b * T + np) * C, count: P * C)
        }
        mark(\.other)
        Linear.backward(dx: nil, dw: patchW.grad, db: patchB.grad, dy: emb.data, x: cols.data, w: patchW.value, rows: B * P)
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

    /// The weights under timm's names, for a safetensors file every vitlens command loads.
    public func stateDict() -> [(String, [Int], Tensor)] {
        let c = config, C = c.dim
        var out: [(String, [Int], Tensor)] = [
            (ViTKeys.patchWeight, [C, 3, c.patch, c.patch], patchW.value), (ViTKeys.patchBias, [C], patchB.value),
            (ViTKeys.positions, [1, c.tokens, C], pos.value),
        ]
        let cls = Tensor(shape: [1, 1, C], values: Array(prefix.value.buffer[0..<C]))
        out.append((ViTKeys.classToken, [1, 1, C], cls))
        if c.prefixTokens > 1 { out.append((ViTKeys.distillationToken, [1, 1, C], Tensor(shape: [1, 1, C], values: Array(prefix.value.buffer[C..<(2 * C)])))) }
        for p in blocks {
            for q in p.all where !q.frozen { out.append((q.name, q.value.shape, q.value)) }
        }
        if let normW, let normB { out += [(normW.name, [C], normW.value), (normB.name, [C], normB.value)] }
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
public func evaluate(_ model: TrainableViT, labels: [Int], batch: Int, load: ([Int]) throws -> Tensor) throws -> Double {
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
