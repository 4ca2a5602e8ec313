import Foundation
import Render

/// CKA of every pair of several models (a < b in argument order): each pair's report is the
/// one a two-model run of that pair gives; written as one cka.csv (with `model_a,model_b`
/// first), one cka.json, the pairs' heatmaps side by side (cka_grid.png/.svg) and index.html.
public struct CKAPairs {
    /// Display names, in argument order.
    public var names: [String]
    /// (index of model a, index of model b, the pair's report).
    public var pairs: [(Int, Int, CKAResult)]
    /// Run metadata and the models (the pairs' own JSON sits under "pairs").
    public var json: JSONValue

    public static let files = ["cka.csv", "cka.json"]

    public init(names: [String], pairs: [(Int, Int, CKAResult)], json: JSONValue) {
        self.names = names
        self.pairs = pairs
        self.json = json
    }

    var hasIntervals: Bool { pairs.contains { $0.2.ciLow != nil } }

    public func write(to out: OutputDirectory) throws -> [String] {
        var csv = CSVTable(
            header: ["model_a", "model_b", "layer_a", "layer_b", "cka"] + (hasIntervals ? ["ci_low", "ci_high"] : []))
        for (i, j, r) in pairs {
            for (la, row) in r.matrix.enumerated() {
                for (lb, v) in row.enumerated() {
                    csv.append([names[i], names[j], "\(la)", "\(lb)", csvNumber(v)]
                               + (hasIntervals
                                   ? [csvNumber(r.ciLow?[la][lb] ?? .nan), csvNumber(r.ciHigh?[la][lb] ?? .nan)] : []))
                }
            }
        }
        try out.write("cka.csv", csv.render())
        guard case let .object(head) = json else {
            throw ReportError.malformed(path: "cka.json", reason: "not an object") }
        let full = JSONValue.object(head + [("pairs", .array(pairs.map { i, j, r in
            .object([("model_a", .string(names[i])), ("model_b", .string(names[j])), ("report", r.json)])
        }))])
        try out.write("cka.json", full.render() + "\n")
        return Self.files
    }

    /// A several-model report folder: cka.csv with model_a/model_b columns, and cka.json.
    public init(reading dir: String) throws {
        let src = ReportFolder(dir: dir)
        let t = try src.csv("cka.csv", columns: ["model_a", "model_b", "layer_a", "layer_b", "cka"])
        let p = src.path("cka.csv")
        let full = try src.json("cka.json") ?? .object([])
        var order: [String] = [], cells: [String: [(Int, Int, Double, Double, Double)]] = [:],
            pairOrder: [(String, String)] = []
        let hasCI = t.column("ci_low") != nil && t.column("ci_high") != nil
        for r in 0..<t.rows.count {
            let a = t.rows[r][t.column("model_a")!], b = t.rows[r][t.column("model_b")!]
            for n in [a, b] where !order.contains(n) { order.append(n) }
            let key = a + "\u{0}" + b
            if cells[key] == nil { pairOrder.append((a, b)) }
            let i = try t.integer(r, "layer_a", path: p), j = try t.integer(r, "layer_b", path: p)
            guard (0..<4097).contains(i),
                (0..<4097).contains(j) else { throw CSVError(path: p, line: r + 2, reason: "layer out of range") }
            cells[key, default: []].append((i, j, try t.number(r, "cka", path: p),
                                            hasCI ? try t.number(r, "ci_low", path: p) : .nan, hasCI
                                                ? try t.number(r, "ci_high", path: p) : .nan))
        }
        let reports = full["pairs"]?.arrayValue ?? []
        names = order
        pairs = try pairOrder.map { a, b in
            let c = cells[a + "\u{0}" + b]!
            let la = c.map(\.0).max()! + 1, lb = c.map(\.1).max()! + 1
            guard c.count == la * lb else {
                throw ReportError.rowCount(
                path: p, rows: c.count, expected: la * lb, shape: "pair \(a), \(b): a \(la)×\(lb) matrix") }
            var m = [[Double]](repeating: [Double](repeating: .nan, count: lb), count: la), lo = m, hi = m
            for (i, j, v, l, h) in c { m[i][j] = v; lo[i][j] = l; hi[i][j] = h }
            let json = reports.first { $0["model_a"]?.stringValue == a && $0["model_b"]?.stringValue == b }?["report"]
                ?? .object([])
            var r = CKAResult(matrix: m, json: json)
            if hasCI { (r.ciLow, r.ciHigh) = (lo, hi) }
            return (order.firstIndex(of: a)!, order.firstIndex(of: b)!, r)
        }
        guard case let .object(head) = full else { json = .object([]); return }
        json = .object(head.filter { $0.0 != "pairs" })
    }
}
