import Analysis
import Foundation
import Render

extension AttentionResult {
    var grid: Int? {
        guard let a = setup?.model.architecture, a.patchSize > 0 else { return nil }
        return a.imageSize / a.patchSize
    }
    var distanceScale: Double? { setup?.definitions.distanceScale }
    var convention: String? { setup?.definitions.convention }

    /// attention_distance/_entropy .png/.svg (boxes per layer, heads as points, the mean line;
    /// the compared model overlaid) and index.html.
    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        let all = [self] + others
        let L = all.map(\.layers).max()!
        // Fixed axes from the geometry, so figures of two models compare side by side: distance up
        // to the largest mean distance any attention could have, entropy up to ln(patches).
        var dMax = 0.0, eMax = 0.0
        for d in all {
            if let g = d.grid, let s = d.distanceScale, g > 0, g <= 256 {
                dMax = max(dMax, AttentionGeometry(grid: g, prefix: 0, scale: s).maxMeanDistance)
                eMax = max(eMax, log(Double(g * g)))
            } else {
                dMax = max(dMax, d.distance.joined().filter(\.isFinite).max() ?? 1)
                eMax = max(eMax, d.entropy.joined().filter(\.isFinite).max() ?? 1)
            }
        }
        var sub: [String] = []
        if let n = imagesUsed { sub.append("N = \(n) images") }
        sub.append(all.map { "\($0.heads) heads" }.joined(separator: " / "))
        sub.append(setup?.perImage == true ? "box over heads × images" : "box over heads")
        let unit: String
        switch convention {
        case "mae-lite"?: unit = "mae-lite units: grid steps × 14"; sub.append("convention mae-lite (scale 14)")
        case "pixels"?: unit = "pixels"; sub.append("convention pixels (scale \(csvNumber(distanceScale ?? 0)))")
        default: unit = "as in attention.csv"
        }
        let names = all.map(\.name).joined(separator: " vs ")
        var files: [String] = []
        var figs: [(String, Figure, String)] = [], ranges: [(Double, Double)] = []
        switch style.ylim {
        case .auto: sub.append("y axes from the data")
        case .geometry: sub.append("y axes: the full possible range")
        case .fixed: sub.append("y axes as given")
        }
        for (metric, label, top) in [
            ("distance", "mean attention distance (\(unit))", dMax),
            ("entropy", "mean attention entropy (nats)", eMax)] {
            let series = all.enumerated().map { k, d -> BoxSeries in
                let v = metric == "distance" ? d.distance : d.entropy
                let boxes = (d.boxes[metric] ?? []).map {
                    BoxSummary(
                        q1: $0.q1, median: $0.median, q3: $0.q3, whiskerLow: $0.whiskerLow, whiskerHigh: $0.whiskerHigh,
                        outliers: $0.outliers)
                }
                return BoxSeries(name: d.name, color: seriesColors[k % seriesColors.count], boxes: boxes,
                                 points: v, means: v.map { row in row.reduce(0, +) / Double(row.count) })
            }
            let range: (Double, Double)
            switch style.ylim {
            case .geometry: range = (0, niceCeiling(top))
            case let .fixed(lo, hi): range = (lo, hi)
            case .auto:
                range = tidyRange(all.flatMap { d -> [Double] in
                    let v = metric == "distance" ? d.distance : d.entropy
                    return v.joined()
                        + (d.boxes[metric] ?? []).flatMap { [$0.whiskerLow, $0.whiskerHigh] + $0.outliers }
                })
            }
            ranges.append(range)
            let chart = BoxChart(series: series, xLabels: (1...L).map { "\($0)" }, yTitle: label, yRange: range,
                                 title: style.title.map { "\($0): \(metric)" } ?? "Attention \(metric): \(names)",
                                 subtitle: sub.joined(separator: " · "))
            let fig = chart.figure()
            files += try Drawing.write(fig, "attention_\(metric)", out: out, style: style, observer)
            figs.append(("attention_\(metric)", fig, label))
        }
        var page = HTMLPage(title: style.title ?? "Attention distance and entropy: \(names)")
        page.add(
            .paragraph(
            sub.joined(separator: " · ")
            + ". Per layer: a box over heads, each head a point, the mean over heads a line."))
        let axisNote: String
        switch style.ylim {
        case .auto: axisNote = "the y axis spans the data (--ylim geometry fixes it to the full possible range, for "
            + "comparing figures side by side)"
        case .geometry: axisNote = "the y axis spans the full possible range: 0 to the largest mean distance any "
            + "attention could have, 0 to ln(patches)"
        case .fixed: axisNote = "the y axis as given by --ylim"
        }
        for ((base, fig, label), r) in zip(figs, ranges) {
            page.add(
                .figure(svg: fig.svg(), png: base + ".png", caption: label.prefix(1).uppercased() + label.dropFirst()
                + " per layer; y from \(csvNumber(r.0)) to \(csvNumber(r.1)): " + axisNote + "."))
        }
        for d in all {
            page.add(.heading("Numbers: \(d.name) (attention.csv)"))
            var rows: [[String]] = []
            for l in 0..<d.layers {
                for h in 0..<d.heads {
                rows.append(
                ["\(l + 1)", "\(h)", String(format: "%.3f", d.distance[l][h]),
                String(format: "%.4f", d.entropy[l][h])]) } }
            page.add(
                .table(caption: "Per layer and head; full precision in attention.csv",
                header: ["layer", "head", "mean distance", "mean entropy"], rows: rows, colors: nil))
            var boxRows: [[String]] = []
            for metric in ["distance", "entropy"] {
                for (l, b) in (d.boxes[metric] ?? []).enumerated() {
                    boxRows.append(
                        [metric, "\(l + 1)"]
                        + [b.whiskerLow, b.q1, b.median, b.q3, b.whiskerHigh].map { String(format: "%.4g", $0) }
                        + ["\(b.outliers.count)"])
                }
            }
            page.add(
                .table(caption: "Box statistics (attention_box.csv)",
                header: ["metric", "layer", "whisker low", "q1", "median", "q3", "whisker high", "outliers"],
                rows: boxRows, colors: nil))
            page.add(.heading("Definitions and metadata: \(d.name)"))
            Drawing.runSection(&page, d.json)
        }
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}
