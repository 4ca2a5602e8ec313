import Analysis
import Foundation

/// An attention report: per layer and head the mean distance and entropy, box statistics per
/// layer, and the JSON; optionally a second model's report to overlay (written to compare/).
public struct AttentionResult {
    /// (L, H), as attention.csv holds them.
    public var distance: [[Double]], entropy: [[Double]]
    /// Per metric ("distance", "entropy") one box per layer.
    public var boxes: [String: [BoxStats]]
    /// The model, images and definitions (nil for a folder without a readable attention.json).
    public var setup: AttentionSetup?
    /// Images the means come from (nil when the report does not say).
    public var imagesUsed: Int?
    /// attention.json as written (made from the fields above) or as read (empty for a CSV-only folder).
    public private(set) var json: JSONValue
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
    public init(setup: AttentionSetup, batches: [AttentionBatch], run: RunRecord) throws {
        let L = setup.layers, H = setup.heads, perImage = setup.perImage
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
        self.setup = setup
        imagesUsed = batches.reduce(0) { $0 + $1.size }
        json = .object(run.fields + [
            ("setup", setup.json),
            ("images_used", .int(imagesUsed ?? 0)),
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
        for l in 0..<layers {
            for h in 0..<heads {
            csv.append(["\(l + 1)", "\(h)", csvNumber(distance[l][h]), csvNumber(entropy[l][h])]) } }
        try out.write(prefix + "attention.csv", csv.render())
        var box = CSVTable(
            header: ["metric", "layer", "min", "q1", "median", "q3", "max", "whisker_low", "whisker_high", "n"])
        for metric in ["distance", "entropy"] {
            for (l, s) in (boxes[metric] ?? []).enumerated() {
                box.append(
                    [metric, "\(l + 1)"]
                    + [s.min, s.q1, s.median, s.q3, s.max, s.whiskerLow, s.whiskerHigh].map(csvNumber) + ["\(s.n)"])
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
            guard l >= 1, l <= 4096, h >= 0,
                h < 4096 else { throw CSVError(path: p, line: r + 2, reason: "layer \(l) / head \(h) out of range") }
            recs.append((l, h, try t.number(r, "mean_distance", path: p), try t.number(r, "mean_entropy", path: p)))
        }
        let L = recs.map(\.0).max()!, H = recs.map(\.1).max()! + 1
        guard recs.count == L * H else {
            throw ReportError.rowCount(path: p, rows: recs.count, expected: L * H, shape: "\(L) layers × \(H) heads") }
        var dist = [[Double]](repeating: [Double](repeating: .nan, count: H), count: L), ent = dist
        for (l, h, d, e) in recs { dist[l - 1][h] = d; ent[l - 1][h] = e }
        distance = dist
        entropy = ent
        json = try src.json("attention.json") ?? .object([])
        setup = json["setup"].flatMap { try? AttentionSetup(json: $0) }
        imagesUsed = json["images_used"]?.intValue
        fallbackName = (dir as NSString).lastPathComponent
        boxes = [:]
        if src.exists("attention_box.csv") {
            let b = try src.csv(
                "attention_box.csv", columns: ["metric", "layer", "q1", "median", "q3", "whisker_low", "whisker_high"])
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
                    guard (1...L).contains(l) else {
                        throw CSVError(path: bp, line: r + 2, reason: "layer \(l) outside 1…\(L)") }
                    let v = try ["q1", "median", "q3", "whisker_low", "whisker_high"].map {
                        try b.number(r, $0, path: bp) }
                    // min, max and n are optional in a hand-made box file: the whiskers stand in.
                    let lo = b.column("min") != nil ? try b.number(r, "min", path: bp) : v[3]
                    let hi = b.column("max") != nil ? try b.number(r, "max", path: bp) : v[4]
                    let n = b.column("n") != nil ? try b.integer(r, "n", path: bp) : 0
                    list[l - 1] = BoxStats(
                        min: lo, q1: v[0], median: v[1], q3: v[2], max: hi, whiskerLow: v[3], whiskerHigh: v[4],
                                           n: n, outliers: outliers["\(metric)/\(l)"] ?? [])
                }
                if let missing = list.firstIndex(where: { $0 == nil }) {
                    throw ReportError.missingBox(path: bp, metric: metric, layer: missing + 1) }
                boxes[metric] = list.compactMap { $0 }
            }
        } else {
            // No box file: boxes over heads from attention.csv.
            for (metric, v) in [("distance", dist), ("entropy", ent)] {
                boxes[metric] = v.map {
                    row in BoxStats(row.filter { !$0.isNaN }.isEmpty ? [0] : row.filter { !$0.isNaN }) }
            }
        }
        if let other = other {
            guard FileManager.default.fileExists(atPath: other + "/attention.csv") else {
                throw ReportError.missingFile(folder: other, file: "attention.csv") }
            compare = try AttentionResult(reading: other)
        } else {
            var k = 0
            while src.exists(Self.compareFolder(k) + "/attention.csv") {
                others.append(try AttentionResult(reading: dir + "/" + Self.compareFolder(k)))
                k += 1
            }
        }
    }

    var name: String { setup?.model.name ?? fallbackName }
}
extension BoxStats {
    /// The statistics as attention_box.csv holds them (outliers keep every digit, in the JSON).
    var tabled: BoxStats {
        BoxStats(
            min: Lens.tabled(min), q1: Lens.tabled(q1), median: Lens.tabled(median), q3: Lens.tabled(q3),
            max: Lens.tabled(max),
                 whiskerLow: Lens.tabled(whiskerLow), whiskerHigh: Lens.tabled(whiskerHigh), n: n, outliers: outliers)
    }
}
