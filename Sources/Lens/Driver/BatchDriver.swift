import Engine
import Foundation
import Images
import VitLensCore

// The one loop every analysis runs through. An image goes one way: the listing is cut into
// minibatches; the driver keeps this shard's batches, decodes the next one on a background
// thread while the current one is handed to every source (a checkpoint through its taps, or
// rows of an array read from disk); then the run's hand-off reads what the sources kept of the
// batch (Gram matrices, attention sums, features) and the batch's tensors are reused.

/// One minibatch as the driver hands it on.
public struct BatchStep {
    /// The batch's index k in the listing, and the row of its first image (k · batch).
    public let index: Int, start: Int
    /// Images in the batch: those decoded (unreadable ones skipped with --skip-bad-images), or
    /// the rows read when every source is an array.
    public let count: Int
    /// The decoded images, (count, 3, S, S) normalised; nil when no source runs a model.
    public let images: Tensor?
    /// The listing indices of the images decoded (every row of the batch for arrays).
    public let kept: [Int]
}

/// What one side of a run gives for each batch: a checkpoint run through its taps, or the same
/// rows of an array computed elsewhere.
public protocol BatchSource: AnyObject {
    /// Whether the source needs the decoded images (a model) or reads its own rows (an array).
    var needsImages: Bool { get }
    func feed(_ step: BatchStep) throws
}

/// Taps that are told where each batch starts and ends; `end` throws what went wrong while the
/// engine called them (a write that failed, say).
protocol BatchTaps: ForwardTaps {
    func begin(_ step: BatchStep)
    func end(_ step: BatchStep) throws
}

extension BatchTaps {
    func begin(_ step: BatchStep) {}
    func end(_ step: BatchStep) throws {}
}

/// A checkpoint and the taps that keep what the analysis needs of each batch.
final class ModelSource: BatchSource {
    let model: AnalysisModel
    let taps: ForwardTaps
    init(_ model: AnalysisModel, taps: ForwardTaps) { (self.model, self.taps) = (model, taps) }
    var needsImages: Bool { true }
    func feed(_ step: BatchStep) throws {
        let t = taps as? BatchTaps
        t?.begin(step)
        if step.count > 0, let images = step.images { try model.run(images, taps: taps, batch: step.index) }
        try t?.end(step)
    }
}

/// Rows of an array on disk, read by a closure for each batch.
final class ArraySource: BatchSource {
    private let read: (BatchStep) throws -> Void
    init(_ read: @escaping (BatchStep) throws -> Void) { self.read = read }
    var needsImages: Bool { false }
    func feed(_ step: BatchStep) throws { try read(step) }
}

/// Sharding, prefetch, progress, cancellation and the per-batch hand-off, for every analysis.
struct BatchDriver {
    /// The images models run on; nil when every source is an array.
    let images: ImageBatches?
    /// Images (rows) in all, and per minibatch.
    let count: Int, batch: Int
    /// With a shard, only the batches it owns run.
    var shard: ShardSpec?
    /// The phase name progress is reported under.
    var label: String
    /// A batch with fewer images is not fed to the sources but given to `onDropped` (CKA needs 4).
    var minimumBatch = 0
    var onDropped: (BatchStep) -> Void = { _ in }

    init(images: ImageBatches?, count: Int, batch: Int, shard: ShardSpec? = nil, label: String) {
        self.images = images
        (self.count, self.batch, self.shard, self.label) = (count, images?.batch ?? batch, shard, label)
    }

    var batchCount: Int { (count + batch - 1) / batch }
    /// The batches this run owns, in order.
    var owned: [Int] { (0..<batchCount).filter { shard?.owns($0) ?? true } }
    /// Images of batch k before any is skipped.
    func listed(_ k: Int) -> Int { min(batch, count - k * batch) }

    /// Feeds every owned batch to every source, then hands it to `handoff` (a batch below the
    /// minimum goes to `onDropped` instead).
    func run(_ sources: [BatchSource], _ context: RunContext, handoff: (BatchStep) throws -> Void = { _ in }) throws {
        let mine = owned, observer = context.observer
        let total = mine.reduce(0) { $0 + listed($1) }
        var done = 0
        func step(_ k: Int, _ images: Tensor?, kept: [Int]) throws {
            try context.checkCancelled()
            let s = BatchStep(
                index: k, start: k * batch, count: images?.shape[0] ?? listed(k), images: images, kept: kept)
            if s.count < minimumBatch {
                onDropped(s)
            } else {
                for source in sources { try source.feed(s) }
                try handoff(s)
            }
            done += listed(k)
            observer.progress(label, done: done, total: total)
        }
        if let images, sources.contains(where: \.needsImages) {
            try images.forEach(batches: mine) { try step($0.index, $0.images, kept: $0.kept) }
        } else {
            for k in mine { try step(k, nil, kept: Array((k * batch)..<(k * batch + listed(k)))) }
        }
        observer.progressEnded()
    }
}
