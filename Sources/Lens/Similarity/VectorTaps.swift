import Analysis
import Engine
import Foundation
import VitLensCore

/// Each layer's samples of one batch as `similarity` compares them: one vector per image (the
/// mean of the patch tokens, or the class token) or, with `patches`, every patch token a row;
/// and, for the `cka` measure, each layer's minibatch Gram matrix exactly as `vitlens cka` takes it.
struct BatchVectors {
    /// Per layer: rows × D, float32.
    var layers: [[Float]] = []
    var rows = 0
    var grams: [Gram] = []
}

/// The rows of a representation x (B, T, C) a selection gives: B pooled vectors, or B·(T − prefix)
/// patch tokens. The mean is taken in float64, as `vitlens cka` takes it.
func sampleRows(_ x: UnsafePointer<Float>, batch b: Int, tokens t: Int, channels c: Int, prefix: Int,
                selection: TokenSelection) -> [Float] {
    switch selection {
    case .cls:
        var out = [Float](repeating: 0, count: b * c)
        for i in 0..<b { for ch in 0..<c { out[i * c + ch] = x[i * t * c + ch] } }
        return out
    case .mean:
        var out = [Float](repeating: 0, count: b * c)
        let p = t - prefix
        for i in 0..<b {
            for ch in 0..<c {
                var s: Double = 0
                for tok in prefix..<t { s += Double(x[(i * t + tok) * c + ch]) }
                out[i * c + ch] = Float(s / Double(p))
            }
        }
        return out
    case .patches:
        var out = [Float](); out.reserveCapacity(b * (t - prefix) * c)
        for i in 0..<b { out.append(contentsOf: UnsafeBufferPointer(start: x + (i * t + prefix) * c, count: (t - prefix) * c)) }
        return out
    }
}

/// Refuses a NaN or infinity in a batch's rows, naming the layer and the image.
func checkFinite(_ v: [Float], layer: Int, firstImage: Int, rowsPerImage: Int, dim: Int, path: String) throws {
    for (i, x) in v.enumerated() where !x.isFinite {
        throw ArrayError.nonFinite(path: path, value: x, layer: layer, image: firstImage + i / (rowsPerImage * dim))
    }
}

protocol VectorSource: BatchSource {
    var current: BatchVectors { get }
}

final class VectorTaps: BatchTaps {
    let config: ViTConfig
    let selection: TokenSelection, representationKind: RepresentationKind
    let wantsGrams: Bool
    let path: String
    var current = BatchVectors()
    private var scratch: [Float] = []
    private var step: BatchStep?
    private var failure: Error?

    init(model: AnalysisModel, selection: TokenSelection, representation: RepresentationKind, grams: Bool) {
        (config, self.selection, representationKind, wantsGrams) = (model.config, selection, representation, grams)
        path = model.request.path
    }
    var wantsRepresentations: Bool { true }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { false }

    func begin(_ step: BatchStep) { self.step = step; current = BatchVectors(); failure = nil }
    func end(_ step: BatchStep) throws { if let failure { throw failure } }

    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {
        let rows = sampleRows(x, batch: batch, tokens: config.tokens, channels: config.dim,
                              prefix: config.prefixTokens, selection: selection)
        if failure == nil {
            do {
                try checkFinite(rows, layer: index, firstImage: step?.start ?? 0,
                                rowsPerImage: selection == .patches ? config.patches : 1, dim: config.dim, path: path)
            } catch { failure = error }
        }
        current.layers.append(rows)
        current.rows = rows.count / config.dim
        if wantsGrams {
            current.grams.append(Gram.of(x, batch: batch, tokens: config.tokens, channels: config.dim,
                                         prefix: config.prefixTokens, selection: ckaSelection, scratch: &scratch))
        }
    }
    /// `cka` with `--tokens patches` is `vitlens cka --tokens patches` (the flattened patch tokens).
    var ckaSelection: TokenSelection { selection }

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {}
}

final class ModelVectors: VectorSource {
    let source: ModelSource
    let taps: VectorTaps
    init(_ model: AnalysisModel, selection: TokenSelection, representation: RepresentationKind, grams: Bool) {
        taps = VectorTaps(model: model, selection: selection, representation: representation, grams: grams)
        source = ModelSource(model, taps: taps)
    }
    var needsImages: Bool { true }
    func feed(_ step: BatchStep) throws { try source.feed(step) }
    var current: BatchVectors { taps.current }
}

final class FeatureVectors: VectorSource {
    let file: FeatureFile
    let selection: TokenSelection
    let wantsGrams: Bool
    private(set) var current = BatchVectors()
    private var scratch: [Float] = []
    init(_ file: FeatureFile, selection: TokenSelection, grams: Bool) {
        (self.file, self.selection, wantsGrams) = (file, selection, grams)
    }
    var needsImages: Bool { false }
    func feed(_ step: BatchStep) throws {
        var v = BatchVectors()
        for l in 0..<file.layers {
            let x = try file.slice(layer: l, from: step.start, count: step.count)
            v.layers.append(sampleRows(x, batch: step.count, tokens: file.tokens, channels: file.channels,
                                       prefix: file.prefixTokens, selection: selection))
            if wantsGrams {
                v.grams.append(Gram.of(x, batch: step.count, tokens: file.tokens, channels: file.channels,
                                       prefix: file.prefixTokens, selection: selection, scratch: &scratch))
            }
        }
        v.rows = (v.layers.first?.count ?? 0) / file.channels
        current = v
    }
}

extension RunSide where Array == FeatureFile {
    var width: Int {
        switch self { case let .model(m): return m.config.dim; case let .array(f): return f.channels }
    }
}
