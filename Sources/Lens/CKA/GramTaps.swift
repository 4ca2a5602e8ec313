import Analysis
import Engine
import Foundation
import VitLensCore

// The taps each analysis puts on the engine: what it keeps of every batch, and nothing more.

/// What one side of a CKA run gives for each batch: every representation's Gram matrix.
protocol GramSource: BatchSource {
    /// The current batch's Gram matrices, one per representation.
    var grams: [Gram] { get }
}

/// Each representation's Gram matrix as the engine produces it (CKA); nothing else is kept.
final class GramTaps: ForwardTaps {
    let config: ViTConfig
    let selection: TokenSelection
    let representationKind: RepresentationKind
    var grams: [Gram] = []
    private var scratch: [Float] = []

    init(config: ViTConfig, selection: TokenSelection, representation: RepresentationKind) {
        (self.config, self.selection, representationKind) = (config, selection, representation)
    }

    var wantsRepresentations: Bool { true }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { false }

    /// x: (B, T, C) → one (B, B) Gram matrix.
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {
        if index == 0 { grams.removeAll(keepingCapacity: true) }
        grams.append(Gram.of(x, batch: batch, tokens: config.tokens, channels: config.dim,
                             prefix: config.prefixTokens, selection: selection, scratch: &scratch))
    }

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {}
}

/// A checkpoint run through Gram taps.
final class ModelGrams: GramSource {
    let source: ModelSource
    let taps: GramTaps
    init(_ model: AnalysisModel, selection: TokenSelection, representation: RepresentationKind) {
        taps = GramTaps(config: model.config, selection: selection, representation: representation)
        source = ModelSource(model, taps: taps)
    }
    var needsImages: Bool { true }
    func feed(_ step: BatchStep) throws { try source.feed(step) }
    var grams: [Gram] { taps.grams }
}

/// The same rows of a feature array, as Gram matrices.
final class FeatureGrams: GramSource {
    let file: FeatureFile
    let selection: TokenSelection
    private(set) var grams: [Gram] = []
    private var scratch: [Float] = []
    init(_ file: FeatureFile, selection: TokenSelection) { (self.file, self.selection) = (file, selection) }
    var needsImages: Bool { false }
    func feed(_ step: BatchStep) throws {
        grams = try file.grams(from: step.start, count: step.count, selection: selection, scratch: &scratch)
    }
}
