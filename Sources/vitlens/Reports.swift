import Analysis
import Foundation
import Render


/// The report of `vitlens cka` (SPEC §8), from per-batch HSIC values — the same code for a
/// single run and for `vitlens merge`.
enum CKAReport {
    static func write(_ out: OutputDirectory, setup: JSONValue, batches: [CKABatch], dropped: [Int],
                      commandLine: String, extra: [(String, JSONValue)] = []) throws -> [Double] {
        guard let la = setup["layers_a"]?.intValue, let lb = setup["layers_b"]?.intValue else {
            throw MergeError("setup lacks layers_a/layers_b")
        }
        guard !batches.isEmpty else { throw MergeError("no minibatch of at least 4 images: CKA is undefined") }
        let m = ckaMatrix(batches, layersA: la, layersB: lb)
        var csv = CSVTable(header: ["layer_a", "layer_b", "cka"])
        for i in 0..<la { for j in 0..<lb { csv.append(["\(i)", "\(j)", csvNumber(m[i * lb + j])]) } }
        try out.write("cka.csv", csv.render())
        let rows: [JSONValue] = (0..<la).map { i in .array((0..<lb).map { .double(m[i * lb + $0]) }) }
        let undefined = (0..<(la * lb)).filter { !m[$0].isFinite }.map { JSONValue.array([.int($0 / lb), .int($0 % lb)]) }
        let json = JSONValue.object([
            ("vitlens_version", .string(vitlensVersion)), ("command_line", .string(commandLine)),
        ] + extra + [
            ("setup", setup),
            ("minibatches_used", .int(batches.count)), ("images_used", .int(batches.reduce(0) { $0 + $1.size })),
            ("dropped_batches", .array(dropped.map { .int($0) })),
            ("results", .object([
                ("layers_a", .array((0..<la).map { .int($0) })), ("layers_b", .array((0..<lb).map { .int($0) })),
                ("cka", .array(rows)), ("undefined_cells", .array(undefined)),
            ])),
        ])
        try out.write("cka.json", json.render() + "\n")
        return m
    }
}

/// The report of `vitlens attention` (SPEC §8).
enum AttentionReport {
    static func write(_ out: OutputDirectory, setup: JSONValue, batches: [AttentionBatch],
                      commandLine: String, extra: [(String, JSONValue)] = [], prefix: String = "") throws {
        guard let L = setup["layers"]?.intValue, let H = setup["heads"]?.intValue,
              case let .bool(perImage)? = setup["per_image"] else { throw MergeError("setup lacks layers/heads/per_image") }
        let (ent, dist) = attentionMeans(batches, layers: L, heads: H)
        var csv = CSVTable(header: ["layer", "head", "mean_distance", "mean_entropy"])
        for l in 0..<L { for h in 0..<H { csv.append(["\(l + 1)", "\(h)", csvNumber(dist[l * H + h]), csvNumber(ent[l * H + h])]) } }
        try out.write(prefix + "attention.csv", csv.render())

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
        var box = CSVTable(header: ["metric", "layer", "min", "q1", "median", "q3", "max", "whisker_low", "whisker_high", "n"])
        var boxJSON: [JSONValue] = []
        for metric in ["distance", "entropy"] {
            for l in 0..<L {
                let s = BoxStats(values(metric, l))
                box.append([metric, "\(l + 1)"] + [s.min, s.q1, s.median, s.q3, s.max, s.whiskerLow, s.whiskerHigh].map(csvNumber) + ["\(s.n)"])
                boxJSON.append(.object([
                    ("metric", .string(metric)), ("layer", .int(l + 1)), ("min", .double(s.min)), ("q1", .double(s.q1)),
                    ("median", .double(s.median)), ("q3", .double(s.q3)), ("max", .double(s.max)),
                    ("whisker_low", .double(s.whiskerLow)), ("whisker_high", .double(s.whiskerHigh)), ("n", .int(s.n)),
                    ("outliers", doubles(s.outliers)),
                ]))
            }
        }
        try out.write(prefix + "attention_box.csv", box.render())
        let json = JSONValue.object([
            ("vitlens_version", .string(vitlensVersion)), ("command_line", .string(commandLine)),
        ] + extra + [
            ("setup", setup),
            ("images_used", .int(batches.reduce(0) { $0 + $1.size })),
            ("results", .object([
                ("mean_distance", .array((0..<L).map { l in doubles(Array(dist[(l * H)..<((l + 1) * H)])) })),
                ("mean_entropy", .array((0..<L).map { l in doubles(Array(ent[(l * H)..<((l + 1) * H)])) })),
                ("box", .array(boxJSON)),
            ])),
        ])
        try out.write(prefix + "attention.json", json.render() + "\n")
    }
}
