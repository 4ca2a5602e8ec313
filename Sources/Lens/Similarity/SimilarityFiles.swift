import Analysis
import Foundation
import Render
import VitLensCore

extension SimilarityReport {
    public static let files = ["similarity.csv", "best_match.csv", "similarity.json"]

    var several: Bool { setup.sides.count > 2 }

    /// For each layer of B, the layer of A most similar to it under a measure (the highest value,
    /// the lowest angle for procrustes), with that value; nil where a column has no finite value.
    public func bestMatch(_ pair: SimilarityPair, _ m: SimilarityMeasure) -> [(layerB: Int, layerA: Int, value: Double)?] {
        let la = setup.layers[pair.a], lb = setup.layers[pair.b], v = pair.values[m] ?? []
        return lb.indices.map { j in
            var best: (Int, Double)?
            for i in la.indices {
                let x = v[i * lb.count + j]
                guard x.isFinite else { continue }
                if best == nil || (m.higherIsSimilar ? x > best!.1 : x < best!.1) { best = (i, x) }
            }
            return best.map { (lb[j], la[$0.0], $0.1) }
        }
    }

    public func write(to out: OutputDirectory) throws -> [String] {
        // SPEC §16's columns always; the interval is nan without --bootstrap.
        var csv = CSVTable(header: (several ? ["model_a", "model_b"] : [])
                           + ["measure", "layer_a", "layer_b", "value", "ci_low", "ci_high"])
        var best = CSVTable(header: (several ? ["model_a", "model_b"] : [])
                            + ["measure", "layer_b", "best_layer_a", "value"])
        for pair in pairs {
            let la = setup.layers[pair.a], lb = setup.layers[pair.b]
            let head = several ? [names[pair.a], names[pair.b]] : []
            for m in measures {
                let v = pair.values[m] ?? []
                for (i, a) in la.enumerated() {
                    for (j, b) in lb.enumerated() {
                        let k = i * lb.count + j
                        csv.append(head + [m.rawValue, "\(a)", "\(b)", csvNumber(v[k]),
                                           csvNumber(pair.low[m]?[k] ?? .nan), csvNumber(pair.high[m]?[k] ?? .nan)])
                    }
                }
                for row in bestMatch(pair, m) {
                    guard let row else { continue }
                    best.append(head + [m.rawValue, "\(row.layerB)", "\(row.layerA)", csvNumber(row.value)])
                }
            }
        }
        try out.write("similarity.csv", csv.render())
        try out.write("best_match.csv", best.render())
        try out.write("similarity.json", json.render() + "\n")
        return Self.files
    }

    public var json: JSONValue {
        .object(run.fields + [
            ("setup", setup.json),
            ("images_used", .int(imagesUsed)), ("dropped_batches", .array(dropped.map { .int($0) })),
            ("notes", .array(notes.map { .string($0) })),
            ("pairs", .array(pairs.map { p in
                let lb = setup.layers[p.b].count
                func rows(_ v: [Double]) -> JSONValue {
                    .array(stride(from: 0, to: v.count, by: max(1, lb)).map { .doubles(Array(v[$0..<($0 + lb)])) }) }
                return .object([
                    ("model_a", .string(names[p.a])), ("model_b", .string(setup.selfComparison ? names[0] : names[p.b])),
                    ("layers_a", .array(setup.layers[p.a].map { .int($0) })),
                    ("layers_b", .array(setup.layers[p.b].map { .int($0) })),
                    ("measures", .object(measures.map { m in
                        (m.rawValue, .object([("value", rows(p.values[m] ?? []))]
                            + (p.low[m].map { [("ci_low", rows($0)), ("ci_high", rows(p.high[m]!))] } ?? [])))
                    })),
                ])
            })),
        ])
    }
}
