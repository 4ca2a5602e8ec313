import Analysis
import Engine
import Foundation
import VitLensCore

// The taps each analysis puts on the engine: what it keeps of every batch, and nothing more.

/// Each representation's Gram matrix as the engine produces it (CKA); nothing else is kept.
final class GramTaps: ForwardTaps {
    let config: ViTConfig
    let selection: TokenSelection
    var grams: [Gram] = []
    private var scratch: [Float] = []

    init(config: ViTConfig, selection: TokenSelection) { self.config = config; self.selection = selection }

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

/// Attention probabilities into the distance/entropy sums of a collector.
final class AttentionTaps: ForwardTaps {
    let collector: AttentionCollector
    init(_ c: AttentionCollector) { collector = c }
    var wantsRepresentations: Bool { false }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { true }
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {}
    /// probabilities: (H, T, T) of one image.
    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        collector.add(layer: layer, image: image, probabilities: probabilities)
    }
}

/// Streams the taps of each batch into the two .npy files of `extract` at their final offsets.
final class ExtractTaps: ForwardTaps {
    let features: NpyWriter
    let attention: NpyWriter
    let N, T, C, H: Int
    var batchStart = 0
    private let lock = NSLock()
    private var firstError: Error?
    var error: Error? { lock.lock(); defer { lock.unlock() }; return firstError }
    private func record(_ e: Error) { lock.lock(); if firstError == nil { firstError = e }; lock.unlock() }

    /// features: (L+1, N, T, C); attention: (L, N, H, T, T).
    init(features: String, attention: String, L: Int, N: Int, T: Int, C: Int, H: Int) throws {
        self.features = try NpyWriter(path: features, shape: [L + 1, N, T, C])
        self.attention = try NpyWriter(path: attention, shape: [L, N, H, T, T])
        self.N = N; self.T = T; self.C = C; self.H = H
    }

    var wantsRepresentations: Bool { true }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { true }

    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {
        do { try features.write(x, count: batch * T * C, at: (index * N + batchStart) * T * C) } catch { record(error) }
    }

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        // Called concurrently for different images: positional writes need no lock.
        do { try attention.write(probabilities, count: H * T * T, at: (layer * N + batchStart + image) * H * T * T) } catch { record(error) }
    }
}
