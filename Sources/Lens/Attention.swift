import Analysis
import Engine
import Foundation
import Images
import Render
import VitLensCore

/// One model of an attention report: a checkpoint run on the images, or attention
/// probabilities computed elsewhere.
public enum AttentionSide {
    case model(AnalysisModel)
    case array(AttentionFile)

    public var name: String {
        switch self { case let .model(m): return m.name; case let .array(a): return a.name }
    }
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
    var json: JSONValue {
        switch self { case let .model(m): return m.json; case let .array(a): return a.json }
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
        try self.init(model: model, others: compare.map { [$0] } ?? [], images: images, folder: folder, convention: convention, perImage: perImage, shard: shard)
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
        let arrays = sides.compactMap { if case let .array(a) = $0 { return a }; return nil }
        guard arrays.count == sides.count || images != nil else { throw LensError.data("a model needs images to run on") }
        let n = images?.items.count ?? arrays[0].images
        for a in arrays where a.images != n {
            throw LensError.data("\(a.path) holds the attention of \(a.images) images, but \(images != nil ? "the image folder gives" : "\(arrays[0].path) holds") \(n); the rows must be the same images in the same order")
        }
        if !arrays.isEmpty && images?.skipBad == true {
            throw LensError.data("skipping unreadable images would misalign the images with the rows of \(arrays[0].path)")
        }
        if convention == .pixels, let a = arrays.first(where: { $0.patch == nil }) { throw LensError.patchSizeNeeded(path: a.path) }
        guard n > 0 else { throw ImageError.folder(path: folder, reason: "no readable images") }
        (self.sides, self.images, self.folder, self.convention, self.perImage, self.shard) = (sides, images, folder, convention, perImage, shard)
        (self.batch, self.count) = (images?.batch ?? batch, n)
    }

    var batchCount: Int { (count + batch - 1) / batch }

    /// The report's setup block for one side (the same for a single run, shards and merge).
    func setup(_ side: AttentionSide) -> JSONValue {
        let scale = convention.scale(patch: side.patch ?? 0)
        var size: JSONValue = .null
        if case let .model(m) = side { size = .int(m.config.imageSize) }
        return .object([
            ("command", "attention"), ("model", side.json),
            ("images", images.map { imagesJSON($0.names, folder: folder) } ?? .object([("count", .int(count)), ("from", "the attention arrays' rows")])),
            ("definitions", .object([
                ("convention", .string(convention.rawValue)), ("distance_scale", .double(scale)),
                ("distance_unit", .string(convention == .pixels ? "pixels" : "mae-lite units (patch grid steps × 14)")),
                ("entropy_unit", "nats"),
                ("attention", "patch tokens only: prefix rows/columns dropped, softmax again over the patch keys (mae-lite)"),
                ("entropy", "−Σ p·ln(p + 1e−6) per query, mean over queries and images"),
                ("distance", "Σ p·‖g(q) − g(k)‖₂·scale per query, mean over queries and images"),
                ("box", .string("per layer over heads" + (perImage ? " × images" : "") + "; quartiles linear (numpy), whiskers at 1.5·IQR")),
                ("batch", .int(batch)), ("resize", .string(images?.mode.rawValue ?? "none (attention arrays)")), ("image_size", size),
                ("skip_bad_images", .bool(images?.skipBad ?? false)),
            ])),
            ("layers", .int(side.layers)), ("heads", .int(side.heads)), ("per_image", .bool(perImage)),
            ("total_batches", .int(batchCount)),
        ])
    }

    public func run(_ context: RunContext) throws -> Outcome<AttentionResult> {
        let collectors = sides.map { s in
            AttentionCollector(geometry: AttentionGeometry(grid: s.grid, prefix: s.prefix, scale: convention.scale(patch: s.patch ?? 0)),
                               layers: s.layers, heads: s.heads, perImage: perImage)
        }
        let taps = collectors.map(AttentionTaps.init)
        let mine = (0..<batchCount).filter { shard?.owns($0) ?? true }
        let sizeOf = { (k: Int) in min(batch, count - k * batch) }
        let total = mine.reduce(0) { $0 + sizeOf($1) }
        var records = [[AttentionBatch]](repeating: [], count: sides.count), done = 0
        func step(_ k: Int, _ images: Tensor?) throws {
            let b = images?.shape[0] ?? sizeOf(k)
            for (i, side) in sides.enumerated() {
                collectors[i].begin(index: k, size: b)
                if b > 0 {
                    switch side {
                    case let .model(m): try m.run(images!, taps: taps[i], batch: k)
                    case let .array(a): try a.feed(collectors[i], from: k * batch, count: b)
                    }
                }
                records[i].append(collectors[i].finish())
            }
            done += sizeOf(k)
            context.observer.progress("attention", done: done, total: total)
        }
        if let images, sides.contains(where: { if case .model = $0 { return true }; return false }) {
            try images.forEach(batches: mine) { try step($0.index, $0.images) }
        } else {
            for k in mine { try step(k, nil) }
        }
        context.observer.progressEnded()
        if let shard {
            return .partial(Partial(command: "attention", shard: shard, setup: setup(sides[0]), batches: records[0].map(\.json), dropped: []))
        }
        guard records[0].reduce(0, { $0 + $1.size }) > 0 else { throw ImageError.folder(path: folder, reason: "no readable images") }
        var result = try AttentionResult(setup: setup(sides[0]), batches: records[0], commandLine: context.commandLine)
        result.others = try zip(sides.dropFirst(), records.dropFirst()).map { s, r in
            try AttentionResult(setup: setup(s), batches: r, commandLine: context.commandLine)
        }
        return .report(result)
    }
}

/// An attention report: per layer and head the mean distance and entropy, box statistics per
/// layer, and the JSON; optionally a second model's report to overlay (written to compare/).
public struct AttentionResult {
    /// (L, H), as attention.csv holds them.
    public var distance: [[Double]], entropy: [[Double]]
    /// Per metric ("distance", "entropy") one box per layer.
    public var boxes: [String: [BoxStats]]
    /// attention.json (an empty object for a CSV-only folder).
    public var json: JSONValue
    /// Further models' reports, overlaid in the figures.
    public var others: [AttentionResult] = []
    /// The second model's report.
    public var compare: AttentionResult? {
        get { others.first }
        set { others = newValue.map { [$0] } ?? [] }
    }

    /// The sub-folder of further model k (0-based): compare/, compare_3/, compare_4/ …
    static func compareFolder(_ k: Int) -> String { k == 0 ? "compare" : "compare_\(k + 2)" }
    /// Display name when the JSON does not give one (a CSV-only folder: its folder name).
    var fallbackName = "model"

    public var layers: Int { distance.count }
    public var heads: Int { distance.first?.count ?? 0 }

    /// From the per-batch sums — the same code for a single run and for merged shards.
    public init(setup: JSONValue, batches: [AttentionBatch], commandLine: String, extra: [(String, JSONValue)] = []) throws {
        guard let L = setup["layers"]?.intValue, let H = setup["heads"]?.intValue,
              let perImage = setup["per_image"]?.boolValue else { throw LensError.merge("setup lacks layers/heads/per_image") }
        let (ent, dist) = attentionMeans(batches, layers: L, heads: H)
        distance = (0..<L).map { l in (0..<H).map { tabled(dist[l * H + $0]) } }
        entropy = (0..<L).map { l in (0..<H).map { tabled(ent[l * H + $0]) } }
        // Box statistics per layer over heads (of the per-head means), or over heads × images.
        let sorted = batches.sorted { $0.index < $1.index }
        func values(_ metric: String, _ l: Int) -> [Double] {
            if !perImage { return (0..<H).map { (metric == "distance" ? dist : ent)[l * H + $0] } }
            var v: [Double] = []
            for b in sorted {
                let src = metric == "distance" ? b.distances : b.entropies
                for img in 0..<b.size { for h in 0..<H { v.append(src[(img * L + l) * H + h]) } }
            }
            return v
        }
        var boxes: [String: [BoxStats]] = [:], boxJSON: [JSONValue] = []
        for metric in ["distance", "entropy"] {
            boxes[metric] = (0..<L).map { l in
                let s = BoxStats(values(metric, l))
                boxJSON.append(.object([
                    ("metric", .string(metric)), ("layer", .int(l + 1)), ("min", .double(s.min)), ("q1", .double(s.q1)),
                    ("median", .double(s.median)), ("q3", .double(s.q3)), ("max", .double(s.max)),
                    ("whisker_low", .double(s.whiskerLow)), ("whisker_high", .double(s.whiskerHigh)), ("n", .int(s.n)),
                    ("outliers", .doubles(s.outliers)),
                ]))
                return s.tabled
            }
        }
        self.boxes = boxes
        json = .object([("vitlens_version", .string(vitlensVersion)), ("command_line", .string(commandLine))] + extra + [
            ("setup", setup),
            ("images_used", .int(batches.reduce(0) { $0 + $1.size })),
            ("results", .object([
                ("mean_distance", .array((0..<L).map { l in .doubles(Array(dist[(l * H)..<((l + 1) * H)])) })),
                ("mean_entropy", .array((0..<L).map { l in .doubles(Array(ent[(l * H)..<((l + 1) * H)])) })),
                ("box", .array(boxJSON)),
            ])),
        ])
    }

    public static let files = ["attention.csv", "attention_box.csv", "attention.json"]

    /// Writes attention.csv, attention_box.csv and attention.json (and compare/ for a second model).
    public func write(to out: OutputDirectory, prefix: String = "") throws -> [String] {
        var csv = CSVTable(header: ["layer", "head", "mean_distance", "mean_entropy"])
        for l in 0..<layers { for h in 0..<heads { csv.append(["\(l + 1)", "\(h)", csvNumber(distance[l][h]), csvNumber(entropy[l][h])]) } }
        try out.write(prefix + "attention.csv", csv.render())
        var box = CSVTable(header: ["metric", "layer", "min", "q1", "median", "q3", "max", "whisker_low", "whisker_high", "n"])
        for metric in ["distance", "entropy"] {
            for (l, s) in (boxes[metric] ?? []).enumerated() {
                box.append([metric, "\(l + 1)"] + [s.min, s.q1, s.median, s.q3, s.max, s.whiskerLow, s.whiskerHigh].map(csvNumber) + ["\(s.n)"])
            }
        }
        try out.write(prefix + "attention_box.csv", box.render())
        try out.write(prefix + "attention.json", json.render() + "\n")
        var files = Self.files.map { prefix + $0 }
        for (k, other) in others.enumerated() {
            let folder = prefix + Self.compareFolder(k)
            try out.makeFolder(folder)
            _ = try other.write(to: out, prefix: folder + "/")
            files.append(folder + "/")
        }
        return files
    }

    /// A report folder's attention.csv (+ attention_box.csv, attention.json, compare/ when there).
    public init(reading dir: String, compareWith other: String? = nil) throws {
        let src = ReportFolder(dir: dir)
        let t = try src.csv("attention.csv", columns: ["layer", "head", "mean_distance", "mean_entropy"])
        let p = src.path("attention.csv")
        var recs: [(Int, Int, Double, Double)] = []
        for r in 0..<t.rows.count {
            let l = try t.integer(r, "layer", path: p), h = try t.integer(r, "head", path: p)
            guard l >= 1, l <= 4096, h >= 0, h < 4096 else { throw CSVError(path: p, line: r + 2, reason: "layer \(l) / head \(h) out of range") }
            recs.append((l, h, try t.number(r, "mean_distance", path: p), try t.number(r, "mean_entropy", path: p)))
        }
        let L = recs.map(\.0).max()!, H = recs.map(\.1).max()! + 1
        guard recs.count == L * H else { throw LensError.report("\(p): \(recs.count) rows, \(L) layers × \(H) heads need \(L * H)") }
        var dist = [[Double]](repeating: [Double](repeating: .nan, count: H), count: L), ent = dist
        for (l, h, d, e) in recs { dist[l - 1][h] = d; ent[l - 1][h] = e }
        distance = dist
        entropy = ent
        json = try src.json("attention.json") ?? .object([])
        fallbackName = (dir as NSString).lastPathComponent
        boxes = [:]
        if src.exists("attention_box.csv") {
            let b = try src.csv("attention_box.csv", columns: ["metric", "layer", "q1", "median", "q3", "whisker_low", "whisker_high"])
            let bp = src.path("attention_box.csv")
            var outliers: [String: [Double]] = [:]
            for e in json[path: "results", "box"]?.arrayValue ?? [] {
                if let m = e["metric"]?.stringValue, let l = e["layer"]?.intValue, let o = e["outliers"]?.arrayValue {
                    outliers["\(m)/\(l)"] = o.compactMap(\.doubleValue)
                }
            }
            for metric in ["distance", "entropy"] {
                var list = [BoxStats?](repeating: nil, count: L)
                for r in 0..<b.rows.count where b.rows[r][b.column("metric")!] == metric {
                    let l = try b.integer(r, "layer", path: bp)
                    guard (1...L).contains(l) else { throw CSVError(path: bp, line: r + 2, reason: "layer \(l) outside 1…\(L)") }
                    let v = try ["q1", "median", "q3", "whisker_low", "whisker_high"].map { try b.number(r, $0, path: bp) }
                    // min, max and n are optional in a hand-made box file: the whiskers stand in.
                    let lo = b.column("min") != nil ? try b.number(r, "min", path: bp) : v[3]
                    let hi = b.column("max") != nil ? try b.number(r, "max", path: bp) : v[4]
                    let n = b.column("n") != nil ? try b.integer(r, "n", path: bp) : 0
                    list[l - 1] = BoxStats(min: lo, q1: v[0], median: v[1], q3: v[2], max: hi, whiskerLow: v[3], whiskerHigh: v[4],
                                           n: n, outliers: outliers["\(metric)/\(l)"] ?? [])
                }
                if let missing = list.firstIndex(where: { $0 == nil }) { throw LensError.report("\(bp): no \(metric) box for layer \(missing + 1)") }
                boxes[metric] = list.compactMap { $0 }
            }
        } else {
            // No box file: boxes over heads from attention.csv.
            for (metric, v) in [("distance", dist), ("entropy", ent)] {
                boxes[metric] = v.map { row in BoxStats(row.filter { !$0.isNaN }.isEmpty ? [0] : row.filter { !$0.isNaN }) }
            }
        }
        if let other = other {
            guard FileManager.default.fileExists(atPath: other + "/attention.csv") else { throw LensError.report("\(other): no attention.csv there") }
            compare = try AttentionResult(reading: other)
        } else {
            var k = 0
            while src.exists(Self.compareFolder(k) + "/attention.csv") {
                others.append(try AttentionResult(reading: dir + "/" + Self.compareFolder(k)))
                k += 1
            }
        }
    }

    var name: String { displayName(json[path: "setup", "model"]) ?? fallbackName }
}

extension BoxStats {
    /// The statistics as attention_box.csv holds them (outliers keep every digit, in the JSON).
    var tabled: BoxStats {
        BoxStats(min: Lens.tabled(min), q1: Lens.tabled(q1), median: Lens.tabled(median), q3: Lens.tabled(q3), max: Lens.tabled(max),
                 whiskerLow: Lens.tabled(whiskerLow), whiskerHigh: Lens.tabled(whiskerHigh), n: n, outliers: outliers)
    }
}
