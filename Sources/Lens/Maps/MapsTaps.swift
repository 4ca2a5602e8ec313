import Analysis
import Engine
import Foundation

/// Class attention and rollout of each image of a batch, from the engine's attention taps
/// (called concurrently for different images; each image has its own state).
final class MapsTaps: BatchTaps {
    let tokens, prefix, heads, layers: Int
    let classToken: Bool
    let fusion: HeadFusion
    let discard: Double
    var maps: [AttentionMaps] = []
    /// (B, L, H, P). Raw storage: the taps of different images write their own slots at once,
    /// which Swift arrays (with their exclusivity checks) do not allow.
    private(set) var classAttention: UnsafeMutablePointer<Float>
    private var capacity = 0
    var perImage: Int { layers * heads * (tokens - prefix) }

    init(tokens: Int, prefix: Int, heads: Int, layers: Int, classToken: Bool, fusion: HeadFusion, discard: Double) {
        (self.tokens, self.prefix, self.heads, self.layers, self.classToken, self.fusion, self.discard) = (
            tokens, prefix, heads, layers, classToken, fusion, discard)
        classAttention = .allocate(capacity: 1)
    }

    deinit { classAttention.deallocate() }

    func begin(_ step: BatchStep) {
        let count = step.count
        maps = (0..<count).map { _ in
            AttentionMaps(
                tokens: tokens, prefix: prefix, heads: heads, classToken: classToken, fusion: fusion, discard: discard)
        }
        if count * perImage > capacity {
            classAttention.deallocate()
            capacity = count * perImage
            classAttention = .allocate(capacity: capacity)
        }
        classAttention.update(repeating: 0, count: count * perImage)
    }

    var wantsRepresentations: Bool { false }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { true }
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {}

    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        let m = maps[image], P = tokens - prefix
        m.classAttention(probabilities, into: classAttention + image * perImage + layer * heads * P)
        m.addBlock(probabilities)
    }
}
