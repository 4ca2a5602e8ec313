import Analysis
import Engine
import Foundation
import Images
import VitLensCore

/// What `vitlens similarity` computes and how (docs/reference.md, "`vitlens similarity`").
public struct SimilaritySettings: Equatable {
    public var measures: [SimilarityMeasure]
    public var tokens: TokenSelection
    public var rep: RepresentationKind
    /// The representations compared (indices into each side's 0…L); nil: all.
    public var layers: [Int]?
    public var gram: GramSettings
    public var svccaKeep: Double
    /// Bootstrap resamples of the images (0: no intervals).
    public var bootstrap: Int
    public var seed: UInt64 = 0

    public init(measures: [SimilarityMeasure], tokens: TokenSelection = .mean, rep: RepresentationKind = .normed,
                layers: [Int]? = nil, gram: GramSettings = GramSettings(), svccaKeep: Double = 0.99,
                bootstrap: Int = 0) {
        (self.measures, self.tokens, self.rep, self.layers) = (measures.sorted(), tokens, rep, layers)
        (self.gram, self.svccaKeep, self.bootstrap) = (gram, svccaKeep, bootstrap)
    }

    var covariance: [SimilarityMeasure] { measures.filter { $0.kind == .covariance } }
    var gramMeasures: [SimilarityMeasure] { measures.filter { $0.kind == .gram } }
    var wantsCKA: Bool { measures.contains(.cka) }
}

/// Why a similarity run cannot go ahead, in words that name the option, file and layer.
public struct SimilarityRunError: Error, CustomStringConvertible, Equatable {
    public let description: String
    /// Whether it is a usage error (exit 64) rather than a property of the data (exit 1).
    public let usage: Bool
}

/// One pair's matrices: every measure's values (layers_a × layers_b, row-major), and intervals.
public struct SimilarityPair {
    public var a: Int, b: Int
    public var values: [SimilarityMeasure: [Double]]
    public var low: [SimilarityMeasure: [Double]] = [:], high: [SimilarityMeasure: [Double]] = [:]
}

/// Every measure between two models, a model and itself, or every pair of several, on the same
/// images: covariance measures streamed, Gram measures from every image's vector, `cka` as
/// `vitlens cka`.
public struct SimilarityRun {
    public let sides: [CKASide]
    public let images: ImageBatches?
    public let folder: String
    public let batch: Int, count: Int
    public let settings: SimilaritySettings
    public let shard: ShardSpec?
    /// The representation indices compared on each side.
    public let layers: [[Int]]

    public init(sides: [CKASide], images: ImageBatches?, folder: String, batch: Int, settings: SimilaritySettings,
                shard: ShardSpec?) throws {
        let models = sides.compactMap(\.model)
        if let a = models.first, let b = models.dropFirst().first(where: { $0.config.imageSize != a.config.imageSize }) {
            throw LensError.differentImageSizes(
                a: a.request.path, sizeA: a.config.imageSize, b: b.request.path, sizeB: b.config.imageSize)
        }
        func refuse(_ s: String) -> SimilarityRunError { SimilarityRunError(description: s, usage: true) }
        let gram = settings.gramMeasures.map(\.rawValue).joined(separator: ", ")
        if !gram.isEmpty && shard != nil {
            throw refuse("--shard: \(gram) compare every image with every other and cannot be sharded; run them "
                         + "without --shard, or shard only the covariance measures")
        }
        if !gram.isEmpty && settings.tokens == .patches {
            throw refuse("--tokens patches: \(gram) need one vector per image; use --tokens mean or cls for them")
        }
        if settings.bootstrap > 0 && shard != nil && !settings.covariance.isEmpty {
            throw refuse("--bootstrap resamples the images and needs all of them in one run; with --shard give "
                         + "--bootstrap 0")
        }
        if settings.bootstrap > 0 && settings.tokens == .patches && !settings.covariance.isEmpty {
            throw refuse("--bootstrap resamples images; with --tokens patches give --bootstrap 0")
        }
        if settings.tokens == .patches, let s0 = sides.first,
           let other = sides.first(where: { $0.patchTokens != s0.patchTokens }) {
            let g = { (n: Int) in Int(Double(n).squareRoot().rounded()) }
            throw LensError.differentGrids(a: s0.path, gridA: g(s0.patchTokens), b: other.path,
                                           gridB: g(other.patchTokens))
        }
        if settings.tokens == .cls, let m = models.first(where: { !$0.config.classToken }) {
            throw LensError.noClassToken(path: m.request.path, option: "--tokens cls")
        }
        if settings.tokens == .cls, let f = sides.compactMap(\.array).first(where: { $0.rank == 4 && $0.prefixTokens == 0 }) {
            throw LensError.noClassTokenInArray(path: f.path)
        }
        let n = try commonImageCount(sides, images: images, kind: .features)
        guard n >= 4 else { throw ImageError.folder(path: folder, reason: "similarity needs at least 4 images, found \(n)") }
        if settings.measures.contains(.mknn) && settings.gram.knn >= n {
            throw refuse("--knn \(settings.gram.knn): needs fewer neighbours than the \(n) images")
        }
        layers = try sides.map { side in
            guard let wanted = settings.layers else { return Array(0..<side.layers) }
            if let bad = wanted.first(where: { $0 >= side.layers }) {
                throw refuse("--layers \(bad): \(side.path) has representations 0-\(side.layers - 1)")
            }
            return wanted
        }
        (self.sides, self.images, self.folder, self.settings, self.shard) = (sides, images, folder, settings, shard)
        (self.batch, self.count) = (images?.batch ?? batch, n)
    }

    var driver: BatchDriver {
        var d = BatchDriver(images: images, count: count, batch: batch, shard: shard, label: "similarity")
        d.minimumBatch = settings.wantsCKA ? 4 : 0
        return d
    }

    var pairs: [(Int, Int)] {
        sides.count == 1 ? [(0, 0)] : (0..<sides.count).flatMap { i in ((i + 1)..<sides.count).map { (i, $0) } }
    }

    /// What every shard must share.
    public var setup: SimilaritySetup {
        SimilaritySetup(
            sides: sides.map(\.record), selfComparison: sides.count == 1,
            images: images.map { ImagesRecord(paths: $0.names, folder: folder) }
                ?? .rows(count: count, from: "the feature files' rows"),
            settings: settings, batch: batch, resize: images?.mode.rawValue ?? "none (features)",
            imageSize: sides.compactMap(\.model).first?.config.imageSize, layers: layers,
            totalBatches: driver.batchCount)
    }

    /// What the streaming pass keeps.
    struct Collected {
        var sums: [CovarianceSums?]
        var batches: [[CKABatch]]
        /// Per side: every image's vector of each selected layer (Gram measures, bootstrap).
        var held: [ScratchLayers]
        var dropped: [Int]
    }

    func sources(grams: Bool) -> [VectorSource] {
        sides.map { side -> VectorSource in
            switch side {
            case let .model(m):
                return ModelVectors(m, selection: settings.tokens, representation: settings.rep, grams: grams)
            case let .array(f): return FeatureVectors(f, selection: settings.tokens, grams: grams)
            }
        }
    }

    /// Batch 0's column means of each side's selected layers: the shift every shard uses.
    func shifts(_ context: RunContext) throws -> [[Double]] {
        var d = BatchDriver(images: images, count: count, batch: batch, shard: ShardSpec(index: 0, count: driver.batchCount),
                            label: "similarity (shift)")
        d.minimumBatch = 0
        let src = sources(grams: false)
        var out: [[Double]] = []
        try d.run(src, context) { _ in out = zip(src.map(\.current), layers).map(Self.columnMeans) }
        return out
    }

    /// The column means of a batch's selected layers (a side's shift).
    static func columnMeans(_ v: BatchVectors, _ layers: [Int]) -> [Double] {
        layers.map { v.layers[$0] }.withPointers {
            CovarianceSums.means($0, rows: v.rows, dim: v.layers[0].count / max(1, v.rows)) }
    }

    func collect(_ context: RunContext) throws -> Collected {
        let wantsHeld = !settings.gramMeasures.isEmpty || (settings.bootstrap > 0 && !settings.covariance.isEmpty)
        let src = sources(grams: settings.wantsCKA)
        let held = wantsHeld ? try sides.indices.map { s in
            try ScratchLayers(dims: layers[s].map { _ in sides[s].width }, capacity: count) } : []
        var c = Collected(sums: pairs.map { _ in nil }, batches: pairs.map { _ in [] }, held: held, dropped: [])
        // Unsharded, the first batch's means; a shard computes batch 0's, so that every shard's sums add.
        var shift: [[Double]]? = shard != nil && !settings.covariance.isEmpty ? try shifts(context) : nil
        var d = driver
        d.onDropped = { step in
            context.observer.notice(
                "batch \(step.index) has \(step.count) image(s); the cka measure needs at least 4, so it is dropped")
            c.dropped.append(step.index)
        }
        try d.run(src, context) { step in
            let vectors = src.map(\.current)
            if !settings.covariance.isEmpty {
                if shift == nil { shift = zip(vectors, layers).map(Self.columnMeans) }
                for (p, (i, j)) in pairs.enumerated() {
                    let da = sides[i].width, db = sides[j].width
                    if c.sums[p] == nil {
                        c.sums[p] = CovarianceSums(layersA: layers[i].count, dimA: da, layersB: layers[j].count,
                                                   dimB: db, shiftA: shift![i], shiftB: shift![j],
                                                   moments: .needed(by: settings.covariance))
                    }
                    layers[i].map { vectors[i].layers[$0] }.withPointers { a in
                        layers[j].map { vectors[j].layers[$0] }.withPointers { b in
                            c.sums[p]!.add(a: a, b: b, rows: vectors[i].rows)
                        }
                    }
                }
            }
            if settings.wantsCKA {
                for (p, (i, j)) in pairs.enumerated() {
                    c.batches[p].append(CKABatch(index: step.index, a: layers[i].map { vectors[i].grams[$0] },
                                                 b: layers[j].map { vectors[j].grams[$0] }))
                }
            }
            for (s, store) in c.held.enumerated() {
                try store.append(layers[s].map { vectors[s].layers[$0] }, rows: vectors[s].rows)
            }
        }
        return c
    }

    /// The report, or with a shard the sums `merge` adds up.
    public func run(_ context: RunContext) throws -> Outcome<SimilarityReport> {
        var c = try collect(context)
        if let shard {
            return .partial(Partial(command: "similarity", shard: shard, setup: setup.json,
                                    batches: c.batches.enumerated().flatMap { p, bs in bs.map { $0.json(pair: p) } },
                                    dropped: c.dropped, sums: c.sums.compactMap { $0 }))
        }
        let sums = c.sums
        c.sums = []
        return .report(try SimilarityReport(setup: setup, sums: consume sums, batches: c.batches, held: c.held,
                                            dropped: c.dropped, run: context.run, observer: context.observer))
    }
}

extension CKABatch {
    /// A similarity shard's batch record: the pair it belongs to beside cka's fields.
    func json(pair: Int) -> JSONValue {
        guard case let .object(o) = json else { return json }
        return .object([("pair", .int(pair))] + o)
    }
}
