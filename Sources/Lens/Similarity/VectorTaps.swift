import Analysis
import Engine
import Foundation
import VitLensCore

/// Each layer's samples of one batch as `similarity` compares them: one vector per image (the
/// mean of the patch tokens, or the class token) or, with `patches`, every patch token a row;
/// and, for the `cka` measure, each layer's minibatch Gram matrix exactly as `vitlens cka` takes it.
struct BatchVectors {
    /// Per layer: rows × D, float32. (`cka` with `--tokens patches` takes the flattened patch
    /// tokens, as `vitlens cka --tokens patches`.)
    var layers: [[Float]] = []
    var rows = 0
    var grams: [Gram] = []
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
                                         prefix: config.prefixTokens, selection: selection, scratch: &scratch))
        }
    }

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

/// A side's per-image vectors of the selected layers, appended batch by batch to a scratch file,
/// for the measures that need every image at once: N × L × D floats (800 MB for ViT-B's 13
/// representations at N = 10,000) need not be resident.
final class ScratchLayers: LayerStore {
    let dims: [Int]
    private(set) var rows = 0
    private let file: ScratchFile, capacity: Int, offsets: [Int]

    /// Room for `capacity` rows of each layer.
    init(dims: [Int], capacity: Int) throws {
        (self.dims, self.capacity) = (dims, capacity)
        file = try ScratchFile()
        offsets = dims.indices.map { l in dims[..<l].reduce(0) { $0 + $1 * capacity * 4 } }
    }

    /// The next rows: layer l's r × dims[l] values in layers[l].
    func append(_ layers: [[Float]], rows r: Int) throws {
        precondition(layers.count == dims.count && rows + r <= capacity)
        for (l, v) in layers.enumerated() {
            try v.withUnsafeBufferPointer {
                try file.write($0.baseAddress!, count: r * dims[l], at: offsets[l] + rows * dims[l] * 4)
            }
        }
        rows += r
    }

    func read(_ l: Int, rows r: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        precondition(r.upperBound <= rows)
        try file.read(into: out, count: r.count * dims[l], at: offsets[l] + r.lowerBound * dims[l] * 4)
    }
}
