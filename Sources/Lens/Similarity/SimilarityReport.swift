import Analysis
import Engine
import Foundation
import VitLensCore

/// What every shard of a similarity run shares, and what its report records of how it was made.
public struct SimilaritySetup: JSONRecord, Equatable {
    public var sides: [SideRecord]
    public var selfComparison: Bool
    public var images: ImagesRecord
    public var settings: SimilaritySettings
    public var batch: Int
    public var resize: String
    public var imageSize: Int?
    public var layers: [[Int]]
    public var totalBatches: Int

    public var names: [String] {
        sides.enumerated().map { $0.1.name ?? "model \($0.0 + 1)" }
    }

    public static let intervalText = "percentile bootstrap over images (each resample draws N images with "
        + "replacement; copies of one image are not each other's neighbours nor an RDM entry); cka: over "
        + "minibatches, as vitlens cka"

    public var json: JSONValue {
        let s = settings
        return .object([
            ("command", "similarity"),
            ("models", .array(sides.map(\.json))), ("self_comparison", .bool(selfComparison)),
            ("images", images.json),
            ("definitions", .object([
                ("tokens", .string(s.tokens.rawValue)), ("rep", .string(s.rep.rawValue)),
                ("batch", .int(batch)), ("resize", .string(resize)),
                ("image_size", imageSize.map { .int($0) } ?? .null),
                ("measures", .array(s.measures.map { m in
                    .object([("name", .string(m.rawValue)), ("definition", .string(m.definition)),
                             ("peer", .string(m.peer)), ("higher_is_similar", .bool(m.higherIsSimilar))])
                })),
                ("knn", .int(s.gram.knn)), ("clamp_quantile", s.gram.clampQuantile.map { .double($0) } ?? .null),
                ("rbf_t", .double(s.gram.rbfT)), ("rsa_compare", .string(s.gram.rsaCompare.rawValue)),
                ("svcca_keep", .double(s.svccaKeep)),
                ("float", "float64"),
                ("interval", .object([("kind", .string(Self.intervalText)), ("level", .double(0.95)),
                                      ("resamples", .int(s.bootstrap)), ("seed", .int(Int(s.seed)))])),
            ])),
            ("layers", .array(layers.map { .array($0.map { .int($0) }) })),
            ("total_batches", .int(totalBatches)),
        ])
    }

    public init(sides: [SideRecord], selfComparison: Bool, images: ImagesRecord, settings: SimilaritySettings,
                batch: Int, resize: String, imageSize: Int?, layers: [[Int]], totalBatches: Int) {
        (self.sides, self.selfComparison, self.images, self.settings) = (sides, selfComparison, images, settings)
        (self.batch, self.resize, self.imageSize, self.layers, self.totalBatches) = (
            batch, resize, imageSize, layers, totalBatches)
    }

    public init(json: JSONValue) throws {
        let f = try JSONFields(json, record: "similarity setup")
        try checkCommand(f, "similarity")
        let d = try f.object("definitions"), i = try d.object("interval")
        guard let models = try f.raw("models").arrayValue, let ms = try d.raw("measures").arrayValue,
              let ls = try f.raw("layers").arrayValue else { throw f.missing("models", "is not a list") }
        let measures = try ms.map { m -> SimilarityMeasure in
            guard let n = m["name"]?.stringValue, let v = SimilarityMeasure(rawValue: n) else {
                throw f.missing("definitions.measures", "names an unknown measure") }
            return v
        }
        guard let tokens = TokenSelection(rawValue: try d.string("tokens")),
              let rep = RepresentationKind(rawValue: try d.string("rep")),
              let compare = RDMComparison(rawValue: try d.string("rsa_compare")) else {
            throw f.missing("definitions", "holds an unknown tokens, rep or rsa_compare") }
        let clamp = try d.raw("clamp_quantile").doubleValue
        var settings = SimilaritySettings(
            measures: measures, tokens: tokens, rep: rep, layers: nil,
            gram: GramSettings(knn: try d.int("knn"), clampQuantile: clamp, rbfT: try d.double("rbf_t"),
                               rsaCompare: compare),
            svccaKeep: try d.double("svcca_keep"), bootstrap: try i.int("resamples"))
        settings.seed = UInt64(try i.int("seed"))
        let layers = ls.map { ($0.arrayValue ?? []).compactMap(\.intValue) }
        settings.layers = layers.first
        self.init(sides: try models.map { try SideRecord(json: $0) }, selfComparison: try f.bool("self_comparison"),
                  images: try ImagesRecord(json: try f.raw("images")), settings: settings,
                  batch: try d.int("batch"), resize: try d.string("resize"), imageSize: try d.optionalInt("image_size"),
                  layers: layers, totalBatches: try f.int("total_batches"))
    }
}

/// The shape of a pair's covariance sums, for a bootstrap resample's.
struct CovarianceTemplate {
    let dimA: Int, dimB: Int, shiftA: [Double], shiftB: [Double], moments: CovarianceSums.Moments
}

/// A similarity report: every pair's matrix under every measure, intervals, best matches.
public struct SimilarityReport {
    public var setup: SimilaritySetup
    public var pairs: [SimilarityPair]
    public var run: RunRecord
    public var imagesUsed: Int
    public var dropped: [Int]
    /// Notes the report keeps (the CCA sample-size warning).
    public var notes: [String] = []

    public var names: [String] { setup.names }
    var measures: [SimilarityMeasure] { setup.settings.measures }

    /// Computes every measure of every pair from what the streaming pass kept (the same code for
    /// a single run and for merged shards, which have no held vectors: no Gram measures).
    /// `held`: per side, every image's vectors (empty when only streamed sums were kept). Each
    /// pair's sums are let go once its measures are computed (pass them with `consume`).
    public init(setup: SimilaritySetup, sums: consuming [CovarianceSums?], batches: [[CKABatch]], held: [LayerStore],
                dropped: [Int], run: RunRecord, observer: RunObserver) throws {
        self.setup = setup
        self.run = run
        self.dropped = dropped
        self.pairs = []
        let s = setup.settings
        let pairIndex = setup.selfComparison ? [(0, 0)]
            : (0..<setup.sides.count).flatMap { i in ((i + 1)..<setup.sides.count).map { (i, $0) } }
        imagesUsed = sums.compactMap { $0?.count }.first ?? held.first?.rows ?? 0
        if imagesUsed == 0 { imagesUsed = batches.first?.reduce(0) { $0 + $1.size } ?? 0 }
        var pairs: [SimilarityPair] = []
        var checked: Set<Int> = []
        for (p, (i, j)) in pairIndex.enumerated() {
            let la = setup.layers[i].count, lb = setup.layers[j].count
            var values: [SimilarityMeasure: [Double]] = [:]
            var pair = SimilarityPair(a: i, b: j, values: [:])
            if s.wantsCKA {
                guard !batches[p].isEmpty else { throw LensError.noFullMinibatch }
                values[.cka] = ckaMatrix(batches[p], layersA: la, layersB: lb)
                if s.bootstrap > 0 {
                    let ci = ckaBootstrap(batches[p], layersA: la, layersB: lb, resamples: s.bootstrap)
                    (pair.low[.cka], pair.high[.cka]) = (ci.low, ci.high)
                }
            }
            // What a bootstrap resample's sums need of the pair's: shifts and moments.
            let template = sums[p].map { CovarianceTemplate(dimA: $0.dimA, dimB: $0.dimB, shiftA: $0.shiftA,
                                                            shiftB: $0.shiftB, moments: $0.moments) }
            if !s.covariance.isEmpty, let sum = sums[p] {
                imagesUsed = sum.count
                if s.covariance.contains(where: { $0.isCCA }) {
                    let widest = max(sum.dimA, sum.dimB)
                    if sum.count < 10 * widest {
                        let note = "\(s.covariance.filter(\.isCCA).map(\.rawValue).joined(separator: ", ")): "
                            + "N = \(sum.count) samples for \(widest) channels (fewer than 10·D): canonical "
                            + "correlations are biased upwards; svcca or more images"
                        if !notes.contains(note) { notes.append(note); observer.warning(note) }
                    }
                }
                let cov = try computing(setup, i, j) {
                    try CovarianceMeasures(sums: sum, measures: s.covariance, svccaKeep: s.svccaKeep).compute()
                }
                values.merge(cov) { a, _ in a }
            }
            sums[p] = nil
            let vectorsA = held.isEmpty ? nil : held[i], vectorsB = held.isEmpty ? nil : held[j]
            if !s.gramMeasures.isEmpty, let vectorsA, let vectorsB {
                imagesUsed = vectorsA.rows
                for (side, store) in [(i, vectorsA), (j, vectorsB)] where !checked.contains(side) {
                    try checkConstant(store, side: side)
                    checked.insert(side)
                }
                let gram = try gramMeasures(vectorsA, vectorsB, measures: s.gramMeasures, settings: s.gram)
                values.merge(gram) { a, _ in a }
            }
            let resampled = s.gramMeasures + (vectorsA == nil ? [] : s.covariance)
            if s.bootstrap > 0, !resampled.isEmpty, let vectorsA, let vectorsB {
                let n = vectorsA.rows
                var samples: [SimilarityMeasure: [[Double]]] = [:]
                for (r, index) in bootstrapResamples(count: n, resamples: s.bootstrap, seed: s.seed).enumerated() {
                    observer.progress("similarity bootstrap", done: r + 1, total: s.bootstrap)
                    let a = ResampledLayers(vectorsA, index: index), b = ResampledLayers(vectorsB, index: index)
                    var v = try gramMeasures(a, b, measures: s.gramMeasures, settings: s.gram, identity: index)
                    if !s.covariance.isEmpty, let sum = template {
                        var rs = CovarianceSums(layersA: la, dimA: sum.dimA, layersB: lb, dimB: sum.dimB,
                                                shiftA: sum.shiftA, shiftB: sum.shiftB, moments: sum.moments)
                        try rs.add(a: a, b: b)
                        let cm = (try? CovarianceMeasures(sums: rs, measures: s.covariance, svccaKeep: s.svccaKeep)
                            .compute()) ?? [:]
                        for m in s.covariance { v[m] = cm[m] ?? [Double](repeating: .nan, count: la * lb) }
                    }
                    for (m, x) in v { samples[m, default: []].append(x) }
                }
                observer.progressEnded()
                for (m, x) in samples { (pair.low[m], pair.high[m]) = percentileInterval(x) }
            }
            pair.values = values
            pairs.append(pair)
        }
        self.pairs = pairs
    }

    func checkConstant(_ store: LayerStore, side: Int) throws {
        for k in 0..<store.layerCount {
            let x = try store.layer(k)
            let first = Array(x.values[0..<x.dim])
            let varies = (1..<x.rows).contains { i in x.values[(i * x.dim)..<((i + 1) * x.dim)].elementsEqual(first) == false }
            if !varies { throw constantError(setup, side: side, layer: k) }
        }
    }

    /// Runs a computation, turning the analysis's errors into ones that name the file and layer.
    func computing<T>(_ setup: SimilaritySetup, _ i: Int, _ j: Int, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as SimilarityError {
            switch e {
            case let .rankDeficient(side, layer, rank, width, measure):
                let s = side == 0 ? i : j
                throw SimilarityRunError(
                    description: "\(sidePath(s)): layer \(setup.layers[s][layer]) has centred features of rank "
                        + "\(rank) < width \(width); \(measure.rawValue) needs full rank (more images than channels, "
                        + "no constant channel): use svcca, more images, or leave the layer out with --layers",
                    usage: false)
            case let .constant(side, layer): throw constantError(setup, side: side == 0 ? i : j, layer: layer)
            case let .tooFewImages(count, needed, measure):
                throw SimilarityRunError(description: "\(measure.rawValue) needs at least \(needed) images, has "
                                         + "\(count)", usage: false)
            case let .linearAlgebra(l):
                throw SimilarityRunError(description: "LAPACK failed (\(l)) between \(setup.names[i]) and "
                                         + "\(setup.names[j])", usage: false)
            }
        }
    }

    func sidePath(_ s: Int) -> String {
        switch setup.sides[s] {
        case let .model(m): return m.path
        case let .array(a): return a.path
        case .sameAsA: return setup.names[0]
        }
    }

    func constantError(_ setup: SimilaritySetup, side: Int, layer: Int) -> SimilarityRunError {
        SimilarityRunError(
            description: "\(sidePath(side)): layer \(setup.layers[side][layer]) is the same for every image "
                + "(from image 0 on; --tokens \(setup.settings.tokens.rawValue)); no measure is defined for it: "
                + "leave it out with --layers", usage: false)
    }
}
