import Analysis
import Engine
import Foundation
import Images
import VitLensCore

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
            throw MergeError.missingField("setup lacks layers_a/layers_b")
        }
        guard !batches.isEmpty else { throw LensError.noFullMinibatch }
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
        guard cells.count == la * lb else { throw ReportError.rowCount(path: p, rows: cells.count, expected: la * lb, shape: "a \(la)×\(lb) matrix") }
        var m = [[Double]](repeating: [Double](repeating: .nan, count: lb), count: la)
        var seen = Set<Int>()
        var lo = m, hi = m
        for (k, (i, j, v)) in cells.enumerated() {
            guard seen.insert(i * lb + j).inserted else { throw ReportError.duplicatePair(path: p, i: i, j: j) }
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
