import Engine
import Foundation
import VitLensCore

/// How a truncated model's tokens become one feature vector (docs/reference.md, "`vitlens probe`").
public enum ProbePooling: String, Sendable, CaseIterable {
    /// The mean of the patch tokens (prefix tokens excluded), after the final norm.
    case mean
    /// The class token, after the final norm.
    case cls
}

/// Collects the probe's features for every depth k = 1…L from one forward pass: the engine's
/// residual taps (the output of block k), the model's final norm applied to every token, then
/// pooled. The same norm weights serve every k, as keeping blocks 0…k−1 and the final norm does.
public final class ProbeFeatureTaps: ForwardTaps {
    public let config: ViTConfig
    public let pooling: ProbePooling
    let normW, normB: Tensor?
    /// features[k − 1]: (images so far, C), row-major, in the order batches were run.
    public private(set) var features: [[Float]]
    private var normed = Tensor(shape: [1])

    public init(engine: ViTEngine, pooling: ProbePooling) {
        config = engine.config
        self.pooling = pooling
        normW = engine.weights.normW
        normB = engine.weights.normB
        features = [[Float]](repeating: [], count: engine.config.depth)
    }

    /// The output of block k is the residual stream after it.
    public var representationKind: RepresentationKind { .residual }

    public var wantsRepresentations: Bool { true }
    public var wantsAttentionLogits: Bool { false }
    public var wantsAttentionProbabilities: Bool { false }
    public var images: Int { features.first.map { $0.count / config.dim } ?? 0 }

    /// x: (B, T, C), the output of block `index` (index 0, the embeddings, is not a depth).
    public func representation(_ index: Int, _ x: UnsafePointer<Float>, batch B: Int) {
        guard index >= 1 else { return }
        let T = config.tokens, C = config.dim, np = config.prefixTokens, P = config.patches
        var src = x
        if let normW, let normB {
            if normed.count != B * T * C { normed = Tensor(shape: [B * T, C]) }
            layerNormForward(normed.data, x, normW, normB, rows: B * T, eps: config.eps)
            src = UnsafePointer(normed.data)
        }
        var out = [Float](repeating: 0, count: B * C)
        for b in 0..<B {
            let img = src + b * T * C
            switch pooling {
            case .cls:
                for i in 0..<C { out[b * C + i] = img[i] }
            case .mean:
                // Sum in float64: 196 tokens, and the mean must not depend on summation order much.
                var acc = [Double](repeating: 0, count: C)
                for t in np..<T { let row = img + t * C; for i in 0..<C { acc[i] += Double(row[i]) } }
                for i in 0..<C { out[b * C + i] = Float(acc[i] / Double(P)) }
            }
        }
        features[index - 1] += out
    }

    public func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {}
}

/// One depth's linear probe: standardise with the train statistics, fit, score.
public struct LinearProbeFit: Sendable {
    public var layersKept: Int
    public var trainAccuracy: Double
    public var testAccuracy: Double
    public var solver: MinimizeResult
}

/// Fits the probe on (train rows of) features of dimension `dim` and scores train and test.
public func linearProbe(train: [Float], trainLabels: [Int], test: [Float], testLabels: [Int], dim: Int, classes: Int,
                        layersKept: Int, C: Double = 1, gtol: Double = 1e-7,
                            maxIterations: Int = 2000) -> LinearProbeFit {
    let n = trainLabels.count, nt = testLabels.count
    let s = Standardizer(fitting: train, rows: n, cols: dim)
    let xtr = s.transform(train, rows: n), xte = s.transform(test, rows: nt)
    let m = LogisticRegression.fit(
        xtr, labels: trainLabels, rows: n, cols: dim, classes: classes, C: C, gtol: gtol, maxIterations: maxIterations)
    return LinearProbeFit(layersKept: layersKept,
                       trainAccuracy: LogisticRegression.accuracy(m.predict(xtr, rows: n), trainLabels),
                       testAccuracy: nt > 0 ? LogisticRegression.accuracy(m.predict(xte, rows: nt), testLabels) : .nan,
                       solver: m.solver)
}
