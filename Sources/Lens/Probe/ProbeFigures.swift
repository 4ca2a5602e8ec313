import Analysis
import Foundation
import Render

extension ProbeResult {
    /// probe.png/.svg (accuracy against blocks kept: test solid, train dashed, chance dotted) and index.html.
    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        let L = models.flatMap { $0.rows.map(\.layersKept) }.max() ?? 1
        var series: [LineSeries] = []
        for (i, m) in models.enumerated() {
            let c = seriesColors[i % seriesColors.count]
            series.append(
                LineSeries(
                name: "\(m.name) test", color: c, xs: m.rows.map { Double($0.layersKept - 1) }, ys: m.rows.map(\.test),
                                     errors: m.rows.map { ($0.testLow, $0.testHigh) }))
            series.append(
                LineSeries(
                name: "\(m.name) train", color: c, xs: m.rows.map { Double($0.layersKept - 1) },
                ys: m.rows.map(\.train), dashed: true))
        }
        var sub: [String] = []
        if let n = imagesUsed { sub.append("\(n.train) train / \(n.test) test images") }
        if let s = setup { sub += ["\(s.dataset.classes.count) classes", "pool: \(s.definitions.pool.rawValue)"] }
        sub.append("logistic regression, C = 1")
        if models.contains(where: { $0.rows.contains { $0.testLow.isFinite } }) { sub.append("bars: 95% Wilson") }
        let names = models.map(\.name).joined(separator: " vs ")
        let chart = LineChart(
            series: series, xLabels: (1...L).map { "\($0)" }, xTitle: "blocks kept (k)", yTitle: "accuracy",
                              yRange: (0, 1), title: style.title ?? "Layer-truncation probe: \(names)",
                                  subtitle: sub.joined(separator: " · "),
                              reference: chance.map { ($0, "chance (largest class)") })
        let fig = chart.figure()
        var files = try Drawing.write(fig, "probe", out: out, style: style, observer)
        var page = HTMLPage(title: fig.title)
        page.add(
            .paragraph(
            chart.subtitle
            + ". For each k the first k blocks are kept; solid: test accuracy with its 95% Wilson interval as error "
            + "bars, dashed: train accuracy."))
        page.add(.figure(svg: fig.svg(), png: "probe.png", caption: "Accuracy against the number of blocks kept."))
        page.add(.heading("Numbers (probe.csv)"))
        // One row per depth, a train and a test column per model.
        let table = (1...L).map { k in
            ["\(k)"] + models.flatMap { m -> [String] in
                guard let r = m.rows.first(where: { $0.layersKept == k }) else { return ["", ""] }
                let ci = r.testLow.isFinite ? String(format: " [%.3f, %.3f]", r.testLow, r.testHigh) : ""
                return [String(format: "%.4f", r.train), String(format: "%.4f", r.test) + ci]
            }
        }
        page.add(.table(caption: "Accuracy per depth (full precision in probe.csv)",
                        header: ["blocks kept"] + models.flatMap { ["\($0.name) train", "\($0.name) test [95% CI]"] },
                            rows: table, colors: nil))
        if let ds = setup?.dataset {
            page.add(.keyValues(caption: "Dataset", ds.json.flattened().filter { !$0.0.hasSuffix(".paths") }))
        }
        page.add(.heading("Definitions and metadata (probe.json)"))
        Drawing.runSection(&page, json)
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}
