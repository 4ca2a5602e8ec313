import Analysis
import Engine
import Foundation
import Images
import VitLensCore

/// Layer-by-layer minibatch CKA between two models, one model and itself, or every pair of
/// several models — all on the same decoded batches.
public struct CKARun {
    public let models: [AnalysisModel]
    public var a: AnalysisModel { models[0] }
    public var b: AnalysisModel? { models.count > 1 ? models[1] : nil }
    public let images: ImageBatches
    /// The folder the images were listed from (recorded in the report).
    public let folder: String
    public var tokens: TokenSelection
    public var rep: RepresentationKind
    public var shard: ShardSpec?
    /// Bootstrap resamples of the 95 % intervals (0: none).
    public var bootstrap: Int

    /// Checks that the models can be compared on the same images.
    public init(models: [AnalysisModel], images: ImageBatches, folder: String,
                tokens: TokenSelection, rep: RepresentationKind, shard: ShardSpec?, bootstrap: Int = 1000) throws {
        precondition(!models.isEmpty, "CKA of no model")
        let a = models[0]
        for b in models.dropFirst() {
            guard a.config.imageSize == b.config.imageSize else {
                throw LensError.differentImageSizes(a: a.request.path, sizeA: a.config.imageSize, b: b.request.path, sizeB: b.config.imageSize)
            }
            if tokens == .patches && a.config.patches != b.config.patches {
                throw LensError.differentGrids(a: a.request.path, gridA: a.config.runGrid, b: b.request.path, gridB: b.config.runGrid)
            }
        }
        guard images.items.count >= 4 else {
            throw ImageError.folder(path: folder, reason: "CKA needs at least 4 images, found \(images.items.count)")
        }
        (self.models, self.images, self.folder, self.tokens, self.rep, self.shard) = (models, images, folder, tokens, rep, shard)
        self.bootstrap = bootstrap
    }

    public init(a: AnalysisModel, b: AnalysisModel?, images: ImageBatches, folder: String,
                tokens: TokenSelection, rep: RepresentationKind, shard: ShardSpec?, bootstrap: Int = 1000) throws {
        try self.init(models: [a] + (b.map { [$0] } ?? []), images: images, folder: folder, tokens: tokens, rep: rep, shard: shard, bootstrap: bootstrap)
    }

    /// The setup of the pair (i, j) — what every shard must share; a pair of a several-model
    /// run has the setup a two-model run of the same pair has. i == j: a model with itself.
    func setup(_ i: Int, _ j: Int) -> JSONValue {
        let a = models[i], b = models[j]
        return .object([
            ("command", "cka"),
            ("model_a", a.json), ("model_b", i == j ? .string("same as model_a") : b.json),
            ("images", imagesJSON(images.names, folder: folder)),
            ("definitions", .object([
                ("tokens", .string(tokens.rawValue)), ("rep", .string(rep.rawValue)),
                ("estimator", "minibatch CKA, unbiased HSIC (Nguyen et al. 2021 eq. 3), K and L with zeroed diagonals, float64, batches weighted equally"),
                ("batch", .int(images.batch)), ("resize", .string(images.mode.rawValue)), ("image_size", .int(a.config.imageSize)),
                ("skip_bad_images", .bool(images.skipBad)),
                ("interval", .object([("kind", "percentile bootstrap over minibatches (each resample draws as many minibatches as there are, with replacement)"),
                                      ("level", 0.95), ("resamples", .int(bootstrap)), ("seed", 0)])),
            ])),
            ("layers_a", .int(a.config.depth + 1)), ("layers_b", .int(b.config.depth + 1)), ("total_batches", .int(images.batchCount)),
        ])
    }

    /// What every shard of the run must share (one or two models).
    public var setup: JSONValue { setup(0, models.count > 1 ? 1 : 0) }

    /// The pairs compared: (0, 0) for one model, (0, 1) for two, every i < j for more.
    var pairs: [(Int, Int)] {
        models.count == 1 ? [(0, 0)] : (0..<models.count).flatMap { i in ((i + 1)..<models.count).map { (i, $0) } }
    }

    /// Runs every batch (of this shard) through every model once, keeping only each pair's HSIC
    /// values per batch: memory follows the batch, not the number of images.
    func collect(_ context: RunContext) throws -> (records: [[CKABatch]], dropped: [Int]) {
        for m in models { m.engine.representation = rep }
        let taps = models.map { GramTaps(config: $0.config, selection: tokens) }
        let mine = (0..<images.batchCount).filter { shard?.owns($0) ?? true }
        let total = mine.reduce(0) { $0 + images.imageCount(ofBatch: $1) }
        let observer = context.observer, pairs = self.pairs
        var records = [[CKABatch]](repeating: [], count: pairs.count), dropped: [Int] = [], done = 0
        try images.forEach(batches: mine) { batch in
            done += images.imageCount(ofBatch: batch.index)
            defer { observer.progress("cka", done: done, total: total) }
            guard batch.count >= 4 else {
                observer.notice("batch \(batch.index) has \(batch.count) image(s); CKA needs at least 4, so it is dropped")
                dropped.append(batch.index)
                return
            }
            var grams: [[Gram]] = []
            for (m, t) in zip(models, taps) {
                try m.run(batch.images, taps: t, batch: batch.index)
                grams.append(t.grams)
            }
            for (k, (i, j)) in pairs.enumerated() { records[k].append(CKABatch(index: batch.index, a: grams[i], b: grams[j])) }
        }
        observer.progressEnded()
        return (records, dropped)
    }

    /// One model or two: the report, or with a shard the partial sums `merge` combines.
    public func run(_ context: RunContext) throws -> Outcome<CKAResult> {
        precondition(models.count <= 2, "several models: use runPairs")
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
        return CKAPairs(names: models.map(\.name), pairs: zip(pairs, results).map { ($0.0.0, $0.0.1, $0.1) },
                        json: .object(context.header + [("models", .array(models.map(\.json)))]))
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
