import Analysis
import Engine
import Foundation
import Images
import Render
import VitLensCore

extension RunSide where Array == AttentionFile {
    var layers: Int {
        switch self { case let .model(m): return m.config.depth; case let .array(a): return a.layers }
    }
    var heads: Int {
        switch self { case let .model(m): return m.config.heads; case let .array(a): return a.heads }
    }
    var grid: Int {
        switch self { case let .model(m): return m.config.runGrid; case let .array(a): return a.grid }
    }
    var prefix: Int {
        switch self { case let .model(m): return m.config.prefixTokens; case let .array(a): return a.prefixTokens }
    }
    /// Pixels per patch (nil: an array that does not say).
    var patch: Int? {
        switch self { case let .model(m): return m.config.patch; case let .array(a): return a.patch }
    }
}
/// Attention distance and entropy per layer and head of one model, and optionally further
/// models on the same decoded batches (or the same rows of their attention arrays).
public struct AttentionRun {
    public let sides: [AttentionSide]
    /// The images the models run on (nil when every side is an attention array).
    public let images: ImageBatches?
    public let folder: String
    public var convention: DistanceConvention
    public var perImage: Bool
    public var shard: ShardSpec?
    /// Images per minibatch, and how many there are.
    public let batch: Int, count: Int

    public init(model: AnalysisModel, compare: AnalysisModel?, images: ImageBatches, folder: String,
                convention: DistanceConvention, perImage: Bool, shard: ShardSpec?) throws {
        try self.init(
            model: model, others: compare.map { [$0] } ?? [], images: images, folder: folder, convention: convention,
            perImage: perImage, shard: shard)
    }

    public init(model: AnalysisModel, others: [AnalysisModel] = [], images: ImageBatches, folder: String,
                convention: DistanceConvention, perImage: Bool, shard: ShardSpec?) throws {
        try self.init(sides: ([model] + others).map { .model($0) }, images: images, folder: folder, batch: images.batch,
                      convention: convention, perImage: perImage, shard: shard)
    }

    /// Checks that every side can be measured: images for the models, one image count for all,
    /// a patch size wherever distances are in pixels.
    public init(sides: [AttentionSide], images: ImageBatches?, folder: String, batch: Int,
                convention: DistanceConvention, perImage: Bool, shard: ShardSpec?) throws {
        precondition(!sides.isEmpty, "attention of nothing")
        let arrays = sides.compactMap(\.array)
        let n = try commonImageCount(sides, images: images, kind: .attention)
        if convention == .pixels,
            let a = arrays.first(where: { $0.patch == nil }) { throw LensError.patchSizeNeeded(path: a.path) }
        guard n > 0 else { throw ImageError.folder(path: folder, reason: "no readable images") }
        (self.sides, self.images, self.folder, self.convention, self.perImage, self.shard) = (
            sides, images, folder, convention, perImage, shard)
        (self.batch, self.count) = (images?.batch ?? batch, n)
    }

    /// The loop every batch of this run goes through.
    var driver: BatchDriver {
        BatchDriver(images: images, count: count, batch: batch, shard: shard, label: "attention") }
    var batchCount: Int { driver.batchCount }

    /// The report's setup for one side (the same for a single run, shards and merge).
    func setup(_ side: AttentionSide) -> AttentionSetup {
        var size: Int?
        if case let .model(m) = side { size = m.config.imageSize }
        let definitions = AttentionSetup.Definitions(
            convention: convention, patch: side.patch ?? 0, perImage: perImage, batch: batch,
            resize: images?.mode.rawValue ?? "none (attention arrays)", imageSize: size,
            skipBadImages: images?.skipBad ?? false)
        return AttentionSetup(model: side.record,
                              images: images.map { ImagesRecord(paths: $0.names, folder: folder) }
                                  ?? .rows(count: count, from: "the attention arrays' rows"),
                              definitions: definitions, layers: side.layers, heads: side.heads, perImage: perImage,
                              totalBatches: batchCount)
    }

    public func run(_ context: RunContext) throws -> Outcome<AttentionResult> {
        let collectors = sides.map { s in
            AttentionCollector(
                geometry: AttentionGeometry(
                grid: s.grid, prefix: s.prefix, scale: convention.scale(patch: s.patch ?? 0)),
                               layers: s.layers, heads: s.heads, perImage: perImage)
        }
        let sources: [BatchSource] = zip(sides, collectors).map { side, collector in
            switch side {
            case let .model(m): return ModelSource(m, taps: AttentionTaps(collector))
            case let .array(a):
                return ArraySource { step in
                    collector.begin(index: step.index, size: step.count)
                    if step.count > 0 { try a.feed(collector, from: step.start, count: step.count) }
                }
            }
        }
        var records = [[AttentionBatch]](repeating: [], count: sides.count)
        try driver.run(sources, context) { _ in
            for (i, c) in collectors.enumerated() { records[i].append(c.finish()) }
        }
        if let shard {
            return .partial(
                Partial(command: "attention", shard: shard, setup: setup(sides[0]).json,
                batches: records[0].map(\.json), dropped: []))
        }
        guard records[0].reduce(0, { $0 + $1.size }) > 0 else {
            throw ImageError.folder(path: folder, reason: "no readable images") }
        var result = try AttentionResult(setup: setup(sides[0]), batches: records[0], run: context.run)
        result.others = try zip(sides.dropFirst(), records.dropFirst()).map { s, r in
            try AttentionResult(setup: setup(s), batches: r, run: context.run)
        }
        return .report(result)
    }
}
