import Analysis
import Foundation
import VitLensCore

/// How a report was made: the version and command line, and the shards it was merged from.
public struct RunRecord: Equatable {
    public var version: String
    public var commandLine: String
    /// The shard folders `merge` combined (nil for a single run).
    public var mergedFrom: [String]?

    public init(version: String = vitlensVersion, commandLine: String, mergedFrom: [String]? = nil) {
        (self.version, self.commandLine, self.mergedFrom) = (version, commandLine, mergedFrom)
    }

    var fields: [(String, JSONValue)] {
        [("vitlens_version", .string(version)), ("command_line", .string(commandLine))]
            + (mergedFrom.map { [("merged_from", .array($0.map { .string($0) }))] } ?? [])
    }

    /// From a report's top level (nil when it records neither).
    init?(_ json: JSONValue) {
        guard let v = json["vitlens_version"]?.stringValue,
            let c = json["command_line"]?.stringValue else { return nil }
        self.init(version: v, commandLine: c, mergedFrom: json["merged_from"]?.arrayValue?.compactMap(\.stringValue))
    }
}

/// A CKA report: the matrix (model A's layers on the rows), how it was made, and its JSON.
public struct CKAResult {
    /// (La, Lb), as cka.csv holds it; NaN where undefined.
    public var matrix: [[Double]]
    /// The 95 % bootstrap interval's ends, (La, Lb) each; nil without intervals, NaN where there is none.
    public var ciLow: [[Double]]?, ciHigh: [[Double]]?
    /// The models, images and definitions (nil for a folder without a readable cka.json).
    public var setup: CKASetup?
    public var run: RunRecord?
    /// Minibatches and images the matrix comes from (nil when the report does not say).
    public var minibatchesUsed: Int?, imagesUsed: Int?
    /// cka.json as written (made from the fields above) or as read.
    public private(set) var json: JSONValue

    init(matrix: [[Double]], json: JSONValue) {
        self.matrix = matrix
        self.json = json
        setup = json["setup"].flatMap { try? CKASetup(json: $0) }
        run = RunRecord(json)
        (minibatchesUsed, imagesUsed) = (json["minibatches_used"]?.intValue, json["images_used"]?.intValue)
    }

    /// From the per-batch HSIC values — the same code for a single run and for merged shards.
    public init(setup: CKASetup, batches: [CKABatch], dropped: [Int], run: RunRecord) throws {
        let la = setup.layersA, lb = setup.layersB
        guard !batches.isEmpty else { throw LensError.noFullMinibatch }
        let m = ckaMatrix(batches, layersA: la, layersB: lb)
        matrix = (0..<la).map { i in (0..<lb).map { tabled(m[i * lb + $0]) } }
        let resamples = setup.definitions.interval.resamples
        var intervals: [(String, JSONValue)] = []
        func rows(_ v: [Double]) -> JSONValue {
            .array((0..<la).map { i in .doubles(Array(v[(i * lb)..<((i + 1) * lb)])) }) }
        if resamples > 0 {
            let ci = ckaBootstrap(batches, layersA: la, layersB: lb, resamples: resamples)
            ciLow = (0..<la).map { i in (0..<lb).map { tabled(ci.low[i * lb + $0]) } }
            ciHigh = (0..<la).map { i in (0..<lb).map { tabled(ci.high[i * lb + $0]) } }
            intervals = [("ci_low", rows(ci.low)), ("ci_high", rows(ci.high))]
        }
        self.setup = setup
        self.run = run
        (minibatchesUsed, imagesUsed) = (batches.count, batches.reduce(0) { $0 + $1.size })
        let undefined = (0..<(la * lb)).filter { !m[$0].isFinite }.map {
            JSONValue.array([.int($0 / lb), .int($0 % lb)]) }
        json = .object(run.fields + [
            ("setup", setup.json),
            ("minibatches_used", .int(batches.count)), ("images_used", .int(imagesUsed ?? 0)),
            ("dropped_batches", .array(dropped.map { .int($0) })),
            ("results", .object([
                ("layers_a", .array((0..<la).map { .int($0) })), ("layers_b", .array((0..<lb).map { .int($0) })),
                ("cka", rows(m)),
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
                csv.append(
                    ["\(i)", "\(j)", csvNumber(v)]
                    + (ciLow.map { lo in [csvNumber(lo[i][j]), csvNumber(ciHigh![i][j])] } ?? []))
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
            guard (0..<4097).contains(i),
                (0..<4097).contains(j) else { throw CSVError(path: p, line: r + 2, reason: "layer out of range") }
            cells.append((i, j, try t.number(r, "cka", path: p)))
            if hasCI { intervals.append((try t.number(r, "ci_low", path: p), try t.number(r, "ci_high", path: p))) }
        }
        let la = cells.map(\.0).max()! + 1, lb = cells.map(\.1).max()! + 1
        guard cells.count == la * lb else {
            throw ReportError.rowCount(path: p, rows: cells.count, expected: la * lb, shape: "a \(la)×\(lb) matrix") }
        var m = [[Double]](repeating: [Double](repeating: .nan, count: lb), count: la)
        var seen = Set<Int>()
        var lo = m, hi = m
        for (k, (i, j, v)) in cells.enumerated() {
            guard seen.insert(i * lb + j).inserted else { throw ReportError.duplicatePair(path: p, i: i, j: j) }
            m[i][j] = v
            if hasCI { (lo[i][j], hi[i][j]) = intervals[k] }
        }
        self.init(matrix: m, json: try src.json("cka.json") ?? .object([]))
        if hasCI { (ciLow, ciHigh) = (lo, hi) }
    }

    var nameA: String { setup?.nameA ?? "model A" }
    var nameB: String { setup?.nameB ?? "model B" }
    var selfComparison: Bool { setup?.selfComparison ?? false }
}
