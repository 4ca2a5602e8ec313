import Analysis
import Engine
import Foundation

/// Attention probabilities into the distance/entropy sums of a collector, batch by batch.
final class AttentionTaps: BatchTaps {
    let collector: AttentionCollector
    init(_ c: AttentionCollector) { collector = c }
    func begin(_ step: BatchStep) { collector.begin(index: step.index, size: step.count) }
    var wantsRepresentations: Bool { false }
    var wantsAttentionLogits: Bool { false }
    var wantsAttentionProbabilities: Bool { true }
    func representation(_ index: Int, _ x: UnsafePointer<Float>, batch: Int) {}
    /// probabilities: (H, T, T) of one image.
    func attention(layer: Int, image: Int, logits: UnsafePointer<Float>?, probabilities: UnsafePointer<Float>) {
        collector.add(layer: layer, image: image, probabilities: probabilities)
    }
}
