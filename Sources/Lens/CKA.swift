import Analysis
import Engine
import Foundation
import Images
import VitLensCore

/// One side of a CKA comparison: a model run on the images, or features computed elsewhere.
public enum CKASide {
    case model(AnalysisModel)
    case features(FeatureFile)

    public var name: String {
        switch self { case let .model(m): return m.name; case let .features(f): return f.name }
    }
    /// Representations compared: L + 1 of a model (rep 0…L), the array's L of features.
    var layers: Int {
        switch self { case let .model(m): return m.config.depth + 1; case let .features(f): return f.layers }
    }
    /// Patch (non-prefix) tokens per image.
    var patchTokens: Int {
        switch self { case let .model(m): return m.config.patches; case let .features(f): return f.tokens - f.prefixTokens }
    }
    var path: String {
        switch self { case let .model(m): return m.request.path; case let .features(f): return f.path }
    }
    var json: JSONValue {
        switch self { case let .model(m): return m.json; case let .features(f): return f.json }
    }
}

/// Layer-by-layer minibatch CKA between two models, one model and itself, or every pair of
/// several — models run on the same decoded batches, features from elsewhere read batch by batch.
public struct CKARun {
    public let sides: [CKASide]
    public var models: [AnalysisModel] { sides.compactMap { if case let .model(m) = $0 { return m }; return nil } }
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
        let models = sides.compactMap { if case let .model(m) = $0 { return m }; return nil }
        if let a = models.first {
            for b in models.dropFirst() where a.config.imageSize != b.config.imageSize {
                throw LensError.differentImageSizes(a: a.request.path, sizeA: a.config.imageSize, b: b.request.path, sizeB: b.config.imageSize)
            }
        }
        if tokens == .patches, let s0 = sides.first, let other = sides.first(where: { $0.patchTokens != s0.patchTokens }) {
            let g = { (n: Int) in Int(Double(n).squareRoot().rounded()) }
            throw LensError.differentGrids(a: s0.path, gridA: g(s0.patchTokens), b: other.path, gridB: g(other.patchTokens))
        }
        let features = sides.compactMap { if case let .features(f) = $0 { return f }; return nil }
        guard models.isEmpty || images != nil else { throw LensError.data("a model needs images to run on") }
        let n = images?.items.count ?? features[0].images
        for f in features where f.images != n {
            throw LensError.data("\(f.path) holds features of \(f.images) images, but \(images != nil ? "the image folder gives" : "\(features[0].path) holds") \(n); the rows must be the same images in the same order")
        }
        if !features.isEmpty && images?.skipBad == true {
            throw LensError.data("skipping unreadable images would misalign the images with the rows of \(features[0].path)")
        }
        if tokens == .cls, let m = models.first(where: { !$0.config.classToken }) {
            throw LensError.noClassToken(path: m.request.path, option: "--tokens cls")
        }
        if tokens == .cls, let f = features.first(where: { $0.rank == 4 && $0.prefixTokens == 0 }) {
            throw LensError.data("\(f.path): no class token (0 prefix tokens) to compare with tokens cls")
        }
        guard n >= 4 else { throw ImageError.folder(path: folder, reason: "CKA needs at least 4 images, found \(n)") }
        (self.sides, self.images, self.folder, self.tokens, self.rep, self.shard) = (sides, images, folder, tokens, rep, shard)
        (self.bootstrap, self.batch, self.count) = (bootstrap, images?.batch ?? batch, n)
    }

    public init(models: [AnalysisModel], images: ImageBatches, folder: String,
                tokens: TokenSelection, rep: RepresentationKind, shard: ShardSpec?, bootstrap: Int = 1000) throws {
        try self.init(sides: models.map { .model($0) }, images: images, folder: folder, batch: images.batch, tokens: tokens, rep: rep,
                      shard: shard, bootstrap: bootstrap)
    }

    public init(a: AnalysisModel, b: AnalysisModel?, images: ImageBatches, folder: String,
                tokens: TokenSelection, rep: RepresentationKind, shard: ShardSpec?, bootstrap: Int = 1000) throws {
        try self.init(models: [a] + (b.map { [$0] } ?? []), images: images, folder: folder, tokens: tokens, rep: rep, shard: shard, bootstrap: bootstrap)
    }

    var batchCount: Int { (count + batch - 1) / batch }

    /// The setup of the pair (i, j) — what every shard must share; a pair of a several-model
    /// run has the setup a two-model run of the same pair has. i == j: a model with itself.
    func setup(_ i: Int, _ j: Int) -> JSONValue {
        let a = sides[i], b = sides[j]
        let imageSize: JSONValue = models.first.map { .int($0.config.imageSize) } ?? .null
        return .object([
            ("command", "cka"),
            ("model_a", a.json), ("model_b", i == j ? .string("same as model_a") : b.json),
            ("images", images.map { imagesJSON($0.names, folder: folder) } ?? .object([("count", .int(count)), ("from", "the feature files' rows")])),
            ("definitions", .object([
                ("tokens", .string(tokens.rawValue)), ("rep", .string(rep.rawValue)),
                ("estimator", "minibatch CKA, unbiased HSIC (Nguyen et al. 2021 eq. 3), K and L with zeroed diagonals, float64, batches weighted equally"),
                ("batch", .int(batch)), ("resize", .string(images?.mode.rawValue ?? "none (features)")), ("image_size", imageSize),
                ("skip_bad_images", .bool(images?.skipBad ?? false)),
                ("interval", .object([("kind", "percentile bootstrap over minibatches (each resample draws as many minibatches as there are, with replacement)"),
                                      ("level", 0.95), ("resamples", .int(bootstrap)), ("seed", 0)])),
            ])),
            ("layers_a", .int(a.layers)), ("layers_b", .int(b.layers)), ("total_batches", .int(batchCount)),
        ])
    }

    /// What every shard of the run must share (one or two models).
    public var setup: JSONValue { setup(0, sides.count > 1 ? 1 : 0) }

    /// The pairs compared: (0, 0) for one side, (0, 1) for two, every i < j for more.
    var pairs: [(Int, Int)] {
        sides.count == 1 ? [(0, 0)] : (0..<sides.count).flatMap { i in ((i + 1)..<sides.count).map { (i, $0) } }
    }

    /// Runs every batch (of this shard) through every model once and reads the features' rows
    /// for the same images, keeping only each pair's HSIC values per batch: memory follows the
    /// batch, not the number of images.
    func collect(_ context: RunContext) throws -> (records: [[CKABatch]], dropped: [Int]) {
        for m in models { m.engine.representation = rep }
        let taps: [GramTaps?] = sides.map { if case let .model(m) = $0 { return GramTaps(config: m.config, selection: tokens) }; return nil }
        let mine = (0..<batchCount).filter { shard?.owns($0) ?? true }
        let sizeOf = { (k: Int) in min(batch, count - k * batch) }
        let total = mine.reduce(0) { $0 + sizeOf($1) }
        let observer = context.observer, pairs = self.pairs
        var records = [[CKABatch]](repeating: [], count: pairs.count), dropped: [Int] = [], done = 0, scratch: [Float] = []
        func step(_ k: Int, _ images: Tensor?) throws {
            done += sizeOf(k)
            defer { observer.progress("cka", done: done, total: total) }
            let b = images?.shape[0] ?? sizeOf(k)
            guard b >= 4 else {
                observer.notice("batch \(k) has \(b) image(s); CKA needs at least 4, so it is dropped")
                dropped.append(k)
                return
            }
            var grams: [[Gram]] = []
            for (side, t) in zip(sides, taps) {
                switch side {
                case let .model(m):
                    try m.run(images!, taps: t, batch: k)
                    grams.append(t!.grams)
                case let .features(f):
                    grams.append(try f.grams(from: k * batch, count: b, selection: tokens, scratch: &scratch))
                }
            }
            for (p, (i, j)) in pairs.enumerated() { records[p].append(CKABatch(index: k, a: grams[i], b: grams[j])) }
        }
        if let images, !models.isEmpty {
            try images.forEach(batches: mine) { try step($0.index, $0.images) }
        } else {
            for k in mine { try step(k, nil) }
        }
        observer.progressEnded()
        return (records, dropped)
    }

    /// One model or two: the report, or with a shard the partial sums `merge` combines.
    public func run(_ context: RunContext) throws -> Outcome<CKAResult> {
        precondition(sides.count <= 2, "several models: use runPairs")
        let (records, dropped) = try collect(context)
        if let shard { return .partial(Partial(command: "cka", shard: shard, setup: setup, batches: records[0].map(\.json), dropped: dropped)) }
        return .report(try CKAResult(setup: setup, batches: records[0], dropped: dropped, commandLine: context.commandLine))
    }

    /// Three or more models: every pair a < b, each the report a two-model run of it gives.
    public func runPairs(_ context: RunContext) throws -> CKAPairs {
        let (records, dropped) = try collect(context)
        let results = try zip(pairs, records).map { p, r in
            try CKAResult(setup: setup(p.0, p.1), batches: r, dropped: dropped, commandLine: context.commandLine)
        }
        return CKAPairs(names: sides.map(\.name), pairs: zip(pairs, results).map { ($0.0.0, $0.0.1, $0.1) },
                        json: .object(context.header + [("models", .array(sides.map(\.json)))]))
    }
}

/// What a run gives: a report, or (with a shard) the partial sums that `merge` combines.
public enum Outcome<Result> {
    case report(Result)
    case partial(Partial)
}

/// A CKA report: the matrix (model A's layers on the rows) and its JSON.
public struct CKAResult {
    /// (La, Lb), as cka.csv holds it; NaN where undefined.
    public var matrix: [[Double]]
    /// The 95 % bootstrap interval's ends, (La, Lb) each; nil without intervals, NaN where there is none.
    public var ciLow: [[Double]]?, ciHigh: [[Double]]?
    /// cka.json: run metadata, setup, definitions and the full-precision results.
    public var json: JSONValue

    init(matrix: [[Double]], json: JSONValue) {
        self.matrix = matrix
        self.json = json
    }

    /// From the per-batch HSIC values — the same code for a single run and for merged shards.
    public init(setup: JSONValue, batches: [CKABatch], dropped: [Int], commandLine: String, extra: [(String, JSONValue)] = []) throws {
        guard let la = setup["layers_a"]?.intValue, let lb = setup["layers_b"]?.intValue else {
            throw LensError.merge("setup lacks layers_a/layers_b")
        }
        guard !batches.isEmpty else { throw LensError.data("no minibatch of at least 4 images: CKA is undefined") }
        let m = ckaMatrix(batches, layersA: la, layersB: lb)
        matrix = (0..<la).map { i in (0..<lb).map { tabled(m[i * lb + $0]) } }
        let resamples = setup[path: "definitions", "interval", "resamples"]?.intValue ?? 0
        var intervals: [(String, JSONValue)] = []
        if resamples > 0 {
            let ci = ckaBootstrap(batches, layersA: la, layersB: lb, resamples: resamples)
            ciLow = (0..<la).map { i in (0..<lb).map { tabled(ci.low[i * lb + $0]) } }
            ciHigh = (0..<la).map { i in (0..<lb).map { tabled(ci.high[i * lb + $0]) } }
            intervals = [("ci_low", .array((0..<la).map { i in .doubles(Array(ci.low[(i * lb)..<((i + 1) * lb)])) })),
                         ("ci_high", .array((0..<la).map { i in .doubles(Array(ci.high[(i * lb)..<((i + 1) * lb)])) }))]
        }
        let undefined = (0..<(la * lb)).filter { !m[$0].isFinite }.map { JSONValue.array([.int($0 / lb), .int($0 % lb)]) }
        json = .object([("vitlens_version", .string(vitlensVersion)), ("command_line", .string(commandLine))] + extra + [
            ("setup", setup),
            ("minibatches_used", .int(batches.count)), ("images_used", .int(batches.reduce(0) { $0 + $1.size })),
            ("dropped_batches", .array(dropped.map { .int($0) })),
            ("results", .object([
                ("layers_a", .array((0..<la).map { .int($0) })), ("layers_b", .array((0..<lb).map { .int($0) })),
                ("cka", .array((0..<la).map { i in .doubles(Array(m[(i * lb)..<((i + 1) * lb)])) })),
            ] + intervals + [
                ("undefined_cells", .array(undefined)),
            ])),
        ])
    }

    public static let files = ["cka.csv", "cka.json"]

    public func write(to out: OutputDirectory) throws -> [String] {
        var csv = CSVTable(header: ["layer_a", "layer_b", "cka"] + (ciLow != nil ? ["ci_low", "ci_high"] : []))
        for (i, row) in matrix.enumerated() {
            for (j, v) in row.enumerated() {
                csv.append(["\(i)", "\(j)", csvNumber(v)] + (ciLow.map { lo in [csvNumber(lo[i][j]), csvNumber(ciHigh![i][j])] } ?? []))
            }
        }
        try out.write("cka.csv", csv.render())
        try out.write("cka.json", json.render() + "\n")
        return Self.files
    }

    /// A report folder's cka.csv (the numbers) and cka.json (the metadata, optional).
    public init(reading dir: String) throws {
        let src = ReportFolder(dir: dir)
        let t = try src.csv("cka.csv", columns: ["layer_a", "layer_b", "cka"])
        let p = src.path("cka.csv")
        var cells: [(Int, Int, Double)] = [], intervals: [(Double, Double)] = []
        let hasCI = t.column("ci_low") != nil && t.column("ci_high") != nil
        for r in 0..<t.rows.count {
            let i = try t.integer(r, "layer_a", path: p), j = try t.integer(r, "layer_b", path: p)
            guard (0..<4097).contains(i), (0..<4097).contains(j) else { throw CSVError(path: p, line: r + 2, reason: "layer out of range") }
            cells.append((i, j, try t.number(r, "cka", path: p)))
            if hasCI { intervals.append((try t.number(r, "ci_low", path: p), try t.number(r, "ci_high", path: p))) }
        }
        let la = cells.map(\.0).max()! + 1, lb = cells.map(\.1).max()! + 1
        guard cells.count == la * lb else { throw LensError.report("\(p): \(cells.count) rows, a \(la)×\(lb) matrix needs \(la * lb)") }
        var m = [[Double]](repeating: [Double](repeating: .nan, count: lb), count: la)
        var seen = Set<Int>()
        var lo = m, hi = m
        for (k, (i, j, v)) in cells.enumerated() {
            guard seen.insert(i * lb + j).inserted else { throw LensError.report("\(p): pair (\(i), \(j)) appears twice") }
            m[i][j] = v
            if hasCI { (lo[i][j], hi[i][j]) = intervals[k] }
        }
        matrix = m
        if hasCI { (ciLow, ciHigh) = (lo, hi) }
        json = try src.json("cka.json") ?? .object([])
    }

    var nameA: String { displayName(json[path: "setup", "model_a"]) ?? "model A" }
    var nameB: String { displayName(json[path: "setup", "model_b"]) ?? (selfComparison ? nameA : "model B") }
    var selfComparison: Bool { json[path: "setup", "model_b"]?.stringValue == "same as model_a" }
}

/// A model's display name as its report records it (older reports: from the path).
func displayName(_ model: JSONValue?) -> String? {
    model?["name"]?.stringValue ?? model?["path"]?.stringValue.map(modelName)
}
