import Analysis
import Engine
import Foundation
import Images
import VitLensCore

extension RunSide where Array == FeatureFile {
    /// Representations compared: L + 1 of a model (rep 0…L), the array's L of features.
    var layers: Int {
        switch self { case let .model(m): return m.config.depth + 1; case let .array(f): return f.layers }
    }
    /// Patch (non-prefix) tokens per image.
    var patchTokens: Int {
        switch self {
        case let .model(m): return m.config.patches
        case let .array(f): return f.tokens - f.prefixTokens
        }
    }
}
/// Layer-by-layer minibatch CKA between two models, one model and itself, or every pair of
/// several — models run on the same decoded batches, features from elsewhere read batch by batch.
public struct CKARun {
    public let sides: [CKASide]
    public var models: [AnalysisModel] { sides.compactMap(\.model) }
    /// The images the models run on (nil when every side is features).
    public let images: ImageBatches?
    /// The folder the images were listed from (recorded in the report).
    public let folder: String
    public var tokens: TokenSelection
    public var rep: RepresentationKind
    public var shard: ShardSpec?
    /// Bootstrap resamples of the 95 % intervals (0: none).
    public var bootstrap: Int
    /// Images per minibatch, and how many there are.
    public let batch: Int, count: Int

    /// Checks that the sides can be compared on the same images.
    public init(sides: [CKASide], images: ImageBatches?, folder: String, batch: Int,
                tokens: TokenSelection, rep: RepresentationKind, shard: ShardSpec?, bootstrap: Int = 1000) throws {
        precondition(!sides.isEmpty, "CKA of nothing")
        let models = sides.compactMap(\.model)
        if let a = models.first {
            for b in models.dropFirst() where a.config.imageSize != b.config.imageSize {
                throw LensError.differentImageSizes(
                    a: a.request.path, sizeA: a.config.imageSize, b: b.request.path, sizeB: b.config.imageSize)
            }
        }
        if tokens == .patches, let s0 = sides.first,
            let other = sides.first(where: { $0.patchTokens != s0.patchTokens }) {
            let g = { (n: Int) in Int(Double(n).squareRoot().rounded()) }
            throw LensError.differentGrids(
                a: s0.path, gridA: g(s0.patchTokens), b: other.path, gridB: g(other.patchTokens))
        }
        let features = sides.compactMap(\.array)
        let n = try commonImageCount(sides, images: images, kind: .features)
        if tokens == .cls, let m = models.first(where: { !$0.config.classToken }) {
            throw LensError.noClassToken(path: m.request.path, option: "--tokens cls")
        }
        if tokens == .cls, let f = features.first(where: { $0.rank == 4 && $0.prefixTokens == 0 }) {
            throw LensError.noClassTokenInArray(path: f.path)
        }
        guard n >= 4 else { throw ImageError.folder(path: folder, reason: "CKA needs at least 4 images, found \(n)") }
        (self.sides, self.images, self.folder, self.tokens, self.rep, self.shard) = (
            sides, images, folder, tokens, rep, shard)
        (self.bootstrap, self.batch, self.count) = (bootstrap, images?.batch ?? batch, n)
    }

    public init(models: [AnalysisModel], images: ImageBatches, folder: String,
                tokens: TokenSelection, rep: RepresentationKind, shard: ShardSpec?, bootstrap: Int = 1000) throws {
        try self.init(
            sides: models.map { .model($0) }, images: images, folder: folder, batch: images.batch, tokens: tokens,
            rep: rep,
                      shard: shard, bootstrap: bootstrap)
    }

    public init(a: AnalysisModel, b: AnalysisModel?, images: ImageBatches, folder: String,
                tokens: TokenSelection, rep: RepresentationKind, shard: ShardSpec?, bootstrap: Int = 1000) throws {
        try self.init(
            models: [a] + (b.map { [$0] } ?? []), images: images, folder: folder, tokens: tokens, rep: rep,
            shard: shard, bootstrap: bootstrap)
    }

    /// The loop every batch of this run goes through.
    var driver: BatchDriver {
        var d = BatchDriver(images: images, count: count, batch: batch, shard: shard, label: "cka")
        d.minimumBatch = 4
        return d
    }
    var batchCount: Int { driver.batchCount }

    /// The setup of the pair (i, j) — what every shard must share; a pair of a several-model
    /// run has the setup a two-model run of the same pair has. i == j: a model with itself.
    func setup(_ i: Int, _ j: Int) -> CKASetup {
        let a = sides[i], b = sides[j]
        let definitions = CKASetup.Definitions(
            tokens: tokens.rawValue, rep: rep.rawValue, batch: batch, resize: images?.mode.rawValue
                ?? "none (features)",
            imageSize: models.first?.config.imageSize, skipBadImages: images?.skipBad ?? false,
            interval: CKASetup.Interval(resamples: bootstrap))
        return CKASetup(modelA: a.record, modelB: i == j ? .sameAsA : b.record,
                        images: images.map { ImagesRecord(paths: $0.names, folder: folder) }
                            ?? .rows(count: count, from: "the feature files' rows"),
                        definitions: definitions, layersA: a.layers, layersB: b.layers, totalBatches: batchCount)
    }

    /// What every shard of the run must share (one or two models).
    public var setup: CKASetup { setup(0, sides.count > 1 ? 1 : 0) }

    /// The pairs compared: (0, 0) for one side, (0, 1) for two, every i < j for more.
    var pairs: [(Int, Int)] {
        sides.count == 1 ? [(0, 0)] : (0..<sides.count).flatMap { i in ((i + 1)..<sides.count).map { (i, $0) } }
    }

    /// Runs every batch (of this shard) through every model once and reads the features' rows
    /// for the same images, keeping only each pair's HSIC values per batch: memory follows the
    /// batch, not the number of images.
    func collect(_ context: RunContext) throws -> (records: [[CKABatch]], dropped: [Int]) {
        let sources: [GramSource] = sides.map { side in
            switch side {
            case let .model(m): return ModelGrams(m, selection: tokens, representation: rep)
            case let .array(f): return FeatureGrams(f, selection: tokens)
            }
        }
        let pairs = self.pairs
        var records = [[CKABatch]](repeating: [], count: pairs.count), dropped: [Int] = []
        var driver = self.driver
        driver.onDropped = { step in
            context.observer.notice(
                "batch \(step.index) has \(step.count) image(s); CKA needs at least 4, so it is dropped")
            dropped.append(step.index)
        }
        try driver.run(sources, context) { step in
            for (p, (i, j)) in pairs.enumerated() {
                records[p].append(CKABatch(index: step.index, a: sources[i].grams, b: sources[j].grams))
            }
        }
        return (records, dropped)
    }

    /// One model or two: the report, or with a shard the partial sums `merge` combines.
    public func run(_ context: RunContext) throws -> Outcome<CKAResult> {
        precondition(sides.count <= 2, "several models: use runPairs")
        let (records, dropped) = try collect(context)
        if let shard {
            return .partial(
            Partial(command: "cka", shard: shard, setup: setup.json, batches: records[0].map(\.json),
            dropped: dropped)) }
        return .report(try CKAResult(setup: setup, batches: records[0], dropped: dropped, run: context.run))
    }

    /// Three or more models: every pair a < b, each the report a two-model run of it gives.
    public func runPairs(_ context: RunContext) throws -> CKAPairs {
        let (records, dropped) = try collect(context)
        let results = try zip(pairs, records).map { p, r in
            try CKAResult(setup: setup(p.0, p.1), batches: r, dropped: dropped, run: context.run)
        }
        return CKAPairs(names: sides.map(\.name), pairs: zip(pairs, results).map { ($0.0.0, $0.0.1, $0.1) },
                        json: .object(context.run.fields + [("models", .array(sides.map(\.record.json)))]))
    }
}
