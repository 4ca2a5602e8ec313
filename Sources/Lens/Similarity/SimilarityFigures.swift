import Analysis
import Foundation
import Render
import VitLensCore

extension SimilarityReport {
    static let seriesColors: [Color] = [
        Color(hex: 0x1f77b4), Color(hex: 0xff7f0e), Color(hex: 0x2ca02c), Color(hex: 0xd62728), Color(hex: 0x9467bd),
        Color(hex: 0x8c564b), Color(hex: 0xe377c2), Color(hex: 0x7f7f7f), Color(hex: 0xbcbd22),
    ]

    /// One measure's heatmap of a pair: magma on the data's range; the colour bar says which end
    /// is similar.
    func heatmap(_ pair: SimilarityPair, _ m: SimilarityMeasure, style: FigureStyle) -> Heatmap {
        let la = setup.layers[pair.a], lb = setup.layers[pair.b], v = pair.values[m] ?? []
        let a = names[pair.a], b = setup.selfComparison ? a : names[pair.b]
        let matrix = la.indices.map { i in lb.indices.map { v[i * lb.count + $0] } }
        var h = Heatmap(values: matrix, rowTitle: "\(a): layer", columnTitle: "\(b): layer",
                        title: "\(m.rawValue): \(a) vs \(setup.selfComparison ? "itself" : b)",
                        subtitle: "N = \(imagesUsed) · tokens: \(setup.settings.tokens.rawValue) · "
                            + (m.higherIsSimilar ? "bright = similar" : "dark = similar (an angle)"))
        let finite = v.filter(\.isFinite)
        var lo = style.vmin ?? ((finite.min() ?? 0) * 20).rounded(.down) / 20
        var hi = style.vmax ?? ((finite.max() ?? 1) * 20).rounded(.up) / 20
        if hi <= lo { lo -= 0.05; hi += 0.05 }
        (h.vmin, h.vmax) = (lo, hi)
        h.colorbarTitle = m.quantity + (m.higherIsSimilar ? " ↑ similar" : " ↓ similar")
        // Tick labels are representation indices; with --layers they are the chosen ones.
        return h
    }

    /// All measures of a pair in one grid (each on its own colour range).
    func grid(_ pair: SimilarityPair, style: FigureStyle) -> Figure {
        let tiles = measures.map { heatmap(pair, $0, style: style).figure() }
        let cols = tiles.count <= 2 ? tiles.count : tiles.count <= 4 ? 2 : 3, rows = (tiles.count + cols - 1) / cols
        let s = cols == 3 ? 0.5 : 0.6, tw = (tiles.first?.width ?? 820) * s, th = (tiles.first?.height ?? 700) * s
        let a = names[pair.a], b = setup.selfComparison ? a : names[pair.b]
        var fig = Figure(width: Double(cols) * tw, height: 50 + Double(rows) * th,
                         title: style.title ?? "\(a) vs \(b): \(measures.count) similarity measures")
        fig.fittedText(fig.title, fig.width / 2, 32, size: 18, anchor: .middle)
        for (k, t) in tiles.enumerated() { fig.place(t, x: Double(k % cols) * tw, y: 50 + Double(k / cols) * th, scale: s) }
        return fig
    }

    /// For each layer of B, the layer of A it is most similar to, one line per measure.
    func bestMatchChart(_ pair: SimilarityPair, style: FigureStyle) -> Figure {
        let la = setup.layers[pair.a], lb = setup.layers[pair.b]
        let a = names[pair.a], b = setup.selfComparison ? a : names[pair.b]
        let series = measures.enumerated().map { k, m -> LineSeries in
            let best = bestMatch(pair, m)
            return LineSeries(name: m.rawValue, color: Self.seriesColors[k % Self.seriesColors.count],
                              xs: lb.indices.map(Double.init), ys: best.map { $0.map { Double($0.layerA) } ?? .nan },
                              dashed: m.kind == .gram)
        }
        var chart = LineChart(
            series: series, xLabels: lb.map { "\($0)" }, xTitle: "\(b): layer", yTitle: "best-matching \(a) layer",
            yRange: (Double(la.min() ?? 0) - 0.5, Double(la.max() ?? 1) + 0.5),
            title: style.title ?? "Best match: for each layer of \(b), the layer of \(a) most similar to it",
            subtitle: "one line per measure (dashed: measures over all images at once); dotted: each layer matches "
                + "its own depth")
        // Layer numbers as ticks (13 at most), and the diagonal where a layer matches its own depth.
        let every = max(1, (la.count + 12) / 13)
        chart.yTicks = stride(from: 0, to: la.count, by: every).map { Double(la[$0]) }
        chart.guide = (lb.enumerated().filter { la.contains($0.element) }.map { (Double($0.offset), Double($0.element)) },
                       "same depth")
        return chart.figure()
    }

    /// similarity_<measure>.png/.svg (two sides), similarity_grid and best_match (per pair), index.html.
    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        var files: [String] = []
        var page = HTMLPage(title: "Similarity: " + (setup.selfComparison ? names[0] + " with itself"
                                                     : names.joined(separator: " vs ")))
        page.add(.paragraph(
            "N = \(imagesUsed) images · tokens: \(setup.settings.tokens.rawValue) · rep: \(setup.settings.rep.rawValue) · "
            + "measures: \(measures.map(\.rawValue).joined(separator: ", ")). Rows of every matrix are the first "
            + "model's layers, columns the second's; layer 0 is the patch embedding."))
        for note in notes { page.add(.paragraph("Warning: " + note)) }
        page.add(.table(caption: "Measures: definition, and the peer implementation each equals",
                        header: ["measure", "definition", "equals", "similar when"],
                        rows: measures.map { [$0.rawValue, $0.definition, $0.peer, $0.higherIsSimilar ? "high" : "low"] },
                        colors: nil))
        for pair in pairs {
            let suffix = pairs.count > 1 ? "_\(names[pair.a])_vs_\(names[pair.b])" : ""
            let a = names[pair.a], b = setup.selfComparison ? a : names[pair.b]
            if pairs.count > 1 { page.add(.heading("\(a) vs \(b)")) }
            let g = grid(pair, style: style)
            files += try Drawing.write(g, "similarity_grid" + suffix, out: out, style: style, observer)
            page.add(.figure(svg: g.svg(), png: "similarity_grid\(suffix).png",
                             caption: "Every measure's layer-by-layer matrix, each on its own colour range."))
            let bm = bestMatchChart(pair, style: style)
            files += try Drawing.write(bm, "best_match" + suffix, out: out, style: style, observer)
            page.add(.figure(svg: bm.svg(), png: "best_match\(suffix).png",
                             caption: "For each layer of \(b), the layer of \(a) most similar to it under each measure "
                                + "(best_match.csv)."))
            let lb = setup.layers[pair.b]
            page.add(.table(caption: "Best-matching \(a) layer for each \(b) layer",
                            header: ["measure"] + lb.map { "\($0)" },
                            rows: measures.map { m in [m.rawValue] + bestMatch(pair, m).map { $0.map { "\($0.layerA)" } ?? "–" } },
                            colors: nil))
            if pairs.count == 1 {
                for m in measures {
                    let h = heatmap(pair, m, style: style), fig = h.figure()
                    files += try Drawing.write(fig, "similarity_\(m.rawValue)", out: out, style: style, observer)
                    page.add(.heading(m.rawValue))
                    page.add(.figure(svg: fig.svg(), png: "similarity_\(m.rawValue).png",
                                     caption: m.definition + ". Equals " + m.peer + "."))
                    if let lo = pair.low[m], let hi = pair.high[m] {
                        let w = zip(lo, hi).map { $1 - $0 }.filter(\.isFinite).max()
                        if let w { page.add(.paragraph(String(format: "95%% bootstrap intervals (%d resamples): the "
                            + "widest is %.4f wide; ci_low, ci_high in similarity.csv.", setup.settings.bootstrap, w))) }
                    }
                }
            }
        }
        page.add(.heading("Definitions and metadata (similarity.json)"))
        Drawing.runSection(&page, .object([("setup", setup.json)]))
        try out.write("index.html", page.render())
        return files + ["index.html"]
    }
}
