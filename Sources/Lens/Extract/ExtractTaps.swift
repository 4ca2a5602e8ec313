import Engine
import Foundation
import VitLensCore

/// Which tokens `extract` writes of each representation.
public enum ExtractTokens: String, Sendable, CaseIterable {
    /// Every token, prefix tokens first: [L', N, T, D].
    case all
    /// The patch tokens: [L', N, P, D].
    case patches
    /// The class token: [L', N, D].
    case cls
    /// The mean of the patch tokens: [L', N, D].
    case mean
}
/// Streams the taps of each batch into the .npy files of `extract` at their final offsets.
final class ExtractTaps: BatchTaps {
    let features: NpyWriter
    let attention: NpyWriter?
    let N, T, C, H, prefix: Int
    let tokens: ExtractTokens
    /// Output slot of each representation index 0…L (nil: not written).
    let slot: [Int?]
    let representationKind: RepresentationKind
    /// The row of the current batch's first image.
    private var batchStart = 0
    private let failure = FirstError()
    private var error: Error? { failure.error }
    private func record(_ e: Error) { failure.record(e) }

    /// Tokens written per image.
    static func rows(_ t: ExtractTokens, T: Int, prefix: Int) -> Int {
        switch t { case .all: return T; case .patches: return T - prefix; case .cls, .mean: return 1 }
    }

    /// features: (L', N, T', D) or (L', N, D); attention (L, N, H, T, T) unless nil.
    init(features: String, attention: String?, layers: [Int], depth L: Int, N: Int, T: Int, C: Int, H: Int, prefix: Int,
         tokens: ExtractTokens, half: Bool, representation: RepresentationKind) throws {
        representationKind = representation
        let rows = Self.rows(tokens, T: T, prefix: prefix)
        let shape = tokens == .cls || tokens == .mean ? [layers.count, N, C] : [layers.count, N, rows, C]
        self.features = try NpyWriter(path: features, shape: shape, half: half)
        self.attention = try attention.map { try NpyWriter(path: $0, shape: [L, N, H, T, T], half: half) }
        var slot = [Int?](repeating: nil, count: L + 1)
        for (k, l) in layers.enumerated() { slot[l] = k }
        self.slot = slot
        (self.N, self.T, self.C, self.H, self.prefix, self.tokens) = (N, T, C, H, prefix, tokens)
    }

    func begin(_ step: BatchStep) { batchStart = step.start }
    /// A write that failed while the engine called the taps.
    func end(_ step: BatchStep) throws { if let error { throw error } }

    var wantsRepresentations: Bool { true }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { attention != nil }

    /// x: (B, T, C).
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {
        guard let k = slot[index] else { return }
        let rows = Self.rows(tokens, T: T, prefix: prefix)
        do {
            switch tokens {
            case .all:
                try features.write(x, count: batch * T * C, at: (k * N + batchStart) * T * C)
            case .patches:
                for b in 0..<batch {
                    try features.write(
                        x + (b * T + prefix) * C, count: rows * C, at: ((k * N + batchStart + b) * rows) * C)
                }
            case .cls:
                for b in 0..<batch { try features.write(x + b * T * C, count: C, at: (k * N + batchStart + b) * C) }
            case .mean:
                var m = [Float](repeating: 0, count: C)
                for b in 0..<batch {
                    for i in 0..<C {
                        var s = 0.0
                        for t in prefix..<T { s += Double(x[(b * T + t) * C + i]) }
                        m[i] = Float(s / Double(T - prefix))
                    }
                    try m.withUnsafeBufferPointer {
                        try features.write($0.baseAddress!, count: C, at: (k * N + batchStart + b) * C) }
                }
            }
        } catch { record(error) }
    }

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        // Called concurrently for different images: positional writes need no lock.
        do { try attention?.write(
            probabilities, count: H * T * T, at: (layer * N + batchStart + image) * H * T * T) } catch { record(error) }
    }
}
