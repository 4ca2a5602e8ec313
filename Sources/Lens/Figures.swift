import Analysis
import Foundation
import Render

/// The value range of an axis or colour scale.
public enum AxisRange: Equatable {
    /// A tidy range around the data (the default: differences show).
    case auto
    /// Fixed by what the quantity can be (attention: 0 to the largest possible mean distance, 0
    /// to ln(patches); CKA: 0 to 1), so that two figures compare side by side.
    case geometry
    case fixed(Double, Double)
}

/// How figures are drawn: the analysing commands and `vitlens plot` share it.
public struct FigureStyle {
    public var scale = 1.0
    /// The heatmap's colour range ends; nil: from the data.
    public var vmin: Double?
    public var vmax: Double?
    /// The attention figures' y range.
    public var ylim: AxisRange
    public var title: String?
    public init(scale: Double = 1, vmin: Double? = nil, vmax: Double? = nil, ylim: AxisRange = .auto, title: String? = nil) {
        self.scale = scale; self.vmin = vmin; self.vmax = vmax; self.ylim = ylim; self.title = title
    }
}

/// A tidy range holding every value: the data's extent padded by 5% and widened to whole steps
/// of the axis's tick spacing; never below 0 for data that is not.
public func tidyRange(_ values: [Double]) -> (Double, Double) {
    let v = values.filter(\.isFinite)
    guard var lo = v.min(), var hi = v.max() else { return (0, 1) }
    let pad = hi > lo ? 0.05 * (hi - lo) : max(abs(hi) * 0.05, 1e-3)
    let nonNegative = lo >= 0
    lo -= pad
    hi += pad
    let ticks = niceTicks(lo, hi, maxCount: 6)
    let step = ticks.count > 1 ? ticks[1] - ticks[0] : (hi - lo)
    lo = (lo / step).rounded(.down) * step
    hi = (hi / step).rounded(.up) * step
    return (nonNegative ? max(0, lo) : lo, hi)
}

extension CKAResult {
    /// The heatmap's colour range: given ends, else the data's range to whole 0.05s (within
    /// [0, 1] for data inside it).
    public func colorRange(_ style: FigureStyle) -> (Double, Double) {
        let v = matrix.joined().filter(\.isFinite)
        var lo = style.vmin ?? ((v.min() ?? 0) * 20).rounded(.down) / 20
        var hi = style.vmax ?? ((v.max() ?? 1) * 20).rounded(.up) / 20
        if style.vmin == nil, style.vmax == nil, hi <= lo { lo -= 0.05; hi += 0.05 }
        if style.vmin == nil, hi <= lo { lo = hi - 0.05 }
        if style.vmax == nil, hi <= lo { hi = lo + 0.05 }
        return (lo, hi)
    }
}

/// Figures and index.html, drawn from a typed result in memory — by the analysing commands
/// right after computing it, and by `vitlens plot` after reading it, with the same code.
enum Drawing {
    /// PNG and SVG of one figure. Without a font (fonts-dejavu-core missing) the PNG is left out
    /// with a warning rather than drawn without its text; the SVG names its fonts and needs none.
    static func write(_ fig: Figure, _ base: String, out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        try out.write(base + ".svg", fig.svg())
        guard Font.shared != nil else {
            warnNoFont(observer)
            return [base + ".svg"]
        }
        try out.write(base + ".png", bytes: fig.raster(scale: style.scale).png())
        return [base + ".png", base + ".svg"]
    }

    nonisolated(unsafe) static var warned = false
    static func warnNoFont(_ observer: RunObserver) {
        guard !warned else { return }
        warned = true
        let reason = Font.defaultError.map { "\($0)" } ?? "no font"
        observer.warning("\(reason); PNG figures skipped (SVG written), `vitlens plot DIR` redraws them")
    }

    /// The page section every report ends with: definitions, models, images, run.
    static func runSection(_ page: inout HTMLPage, _ json: JSONValue) {
        guard case let .object(o) = json, !o.isEmpty else { return }
        if let defs = json[path: "setup", "definitions"] { page.add(.keyValues(caption: "Definitions", defs.flattened())) }
        var models: [(String, String)] = []
        for key in ["model", "model_a", "model_b"] {
            if let m = json[path: "setup", key] { models += m.flattened(prefix: key) }
        }
        if let models2 = json[path: "setup", "models"]?.arrayValue {
            for (i, m) in models2.enumerated() { models += m.flattened(prefix: "model \(i + 1)") }
        }
        if !models.isEmpty { page.add(.keyValues(caption: "Models", models)) }
        if let im = json[path: "setup", "images"] {
            page.add(.keyValues(caption: "Images", im.flattened().filter { $0.0 != "paths" }))
        }
        var run: [(String, String)] = []
        for k in ["vitlens_version", "command_line", "images_used", "minibatches_used"] {
            if let v = json[k] { run.append((k, v.stringValue ?? v.render())) }
        }
        page.add(.keyValues(caption: "Run", run))
    }
}

extension CKAResult {
    /// The heatmap: model A on the y axis, layer 0 at the bottom, magma on the colour range.
    func heatmap(_ style: FigureStyle) throws -> Heatmap {
        let a = nameA, b = nameB
        var sub: [String] = []
        if let n = json["images_used"]?.intValue { sub.append("N = \(n) images") }
        if let bt = json[path: "setup", "definitions", "batch"]?.intValue { sub.append("minibatch \(bt)") }
        if let tk = json[path: "setup", "definitions", "tokens"]?.stringValue { sub.append("tokens: \(tk)") }
        if let rp = json[path: "setup", "definitions", "rep"]?.stringValue { sub.append("rep: \(rp)") }
        sub.append("unbiased HSIC")
        if let w = ciWidest { sub.append("95% CI ≤ ±\(String(format: "%.3f", w.width / 2))") }
        let (c0, c1) = colorRange(style)
        sub.append("colours \(csvNumber(c0))–\(csvNumber(c1))" + (style.vmin == nil && style.vmax == nil ? " (data)" : ""))
        var h = Heatmap(values: matrix, rowTitle: "\(a): layer", columnTitle: "\(b): layer",
                        title: style.title ?? "CKA: \(a) vs \(selfComparison ? "itself" : b)", subtitle: sub.joined(separator: " · "))
        (h.vmin, h.vmax) = (c0, c1)
        guard h.vmax > h.vmin else { throw LensError.report("the colour range's top (\(h.vmax)) must be greater than its bottom (\(h.vmin))") }
        return h
    }

    /// The page's sections for this matrix: the figure, its uncertainty, the numbers.
    func addSections(_ page: inout HTMLPage, _ h: Heatmap, figure fig: Figure, png: String, style: FigureStyle) {
        let a = nameA, b = nameB, la = matrix.count, lb = matrix.first?.count ?? 0
        let rangeNote = style.vmin == nil && style.vmax == nil ? " (from the data; --vmin 0 --vmax 1 gives the fixed scale)" : style.vmin == nil || style.vmax == nil ? " (one end from the data)" : ""
        page.add(.paragraph(h.subtitle + ". Layer 0 is the patch embedding, layer \(la - 1) the final norm; rows are \(a), columns \(b)."))
        page.add(.figure(svg: fig.svg(), png: png, caption: "Minibatch CKA between every pair of layers, magma on [\(csvNumber(h.vmin)), \(csvNumber(h.vmax))]\(rangeNote)."))
        if let w = ciWidest, let m = json["minibatches_used"]?.intValue {
            page.add(.paragraph("Uncertainty: 95% percentile-bootstrap intervals over the \(m) minibatches (ci_low, ci_high in cka.csv); the widest is \(String(format: "%.4f", w.width)) wide, at (\(w.i), \(w.j)). Differences between cells smaller than that are not resolved by these images."))
        } else if ciLow != nil {
            page.add(.paragraph("Uncertainty: no bootstrap interval (it needs at least 2 minibatches)."))
        }
        let undefined = h.undefinedCells
        if !undefined.isEmpty {
            page.add(.paragraph("Undefined (NaN) cells — a representation constant over the images: " + undefined.map { "(\($0.0), \($0.1))" }.joined(separator: ", ")))
        }
        let rowsTop = (0..<la).reversed().map { i in ["\(i)"] + matrix[i].map { $0.isNaN ? "NaN" : String(format: "%.4f", $0) } }
        let colors = (0..<la).reversed().map { i in [nil] + matrix[i].map { Magma.color($0, vmin: h.vmin, vmax: h.vmax) ?? Magma.undefined } }
        page.add(.table(caption: "CKA, rows \(a) layer (top = last), columns \(b) layer; full precision in cka.csv",
                        header: ["\(a) \\ \(b)"] + (0..<lb).map { "\($0)" }, rows: rowsTop, colors: colors))
    }

    /// cka.png/.svg (the heatmap) and index.html.
    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        let h = try heatmap(style)
        let fig = h.figure()
        var files = try Drawing.write(fig, "cka", out: out, style: style, observer)
        var page = HTMLPage(title: fig.title)
        addSections(&page, h, figure: fig, png: "cka.png", style: style)
        page.add(.heading("Definitions and metadata (cka.json)"))
        Drawing.runSection(&page, json)
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}

extension CKAPairs {
    /// cka_grid.png/.svg — every pair's heatmap at half size on one shared colour range — and
    /// index.html with each pair's full heatmap and numbers.
    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        // One colour range for all pairs, so that the small multiples compare.
        var shared = style
        if style.vmin == nil || style.vmax == nil {
            // The range of all pairs' values together, by the single heatmap's rule.
            let (lo, hi) = CKAResult(matrix: pairs.map { Array($0.2.matrix.joined()) }, json: .object([])).colorRange(style)
            (shared.vmin, shared.vmax) = (style.vmin ?? lo, style.vmax ?? hi)
        }
        let tiles = try pairs.map { try $0.2.heatmap(shared) }.map { ($0, $0.figure()) }
        let cols = pairs.count <= 2 ? pairs.count : pairs.count <= 4 ? 2 : 3, rows = (pairs.count + cols - 1) / cols
        let s = cols == 3 ? 0.5 : 0.6, tw = (tiles.first?.1.width ?? 820) * s, th = (tiles.first?.1.height ?? 700) * s
        var grid = Figure(width: Double(cols) * tw, height: 50 + Double(rows) * th, title: style.title ?? "CKA between \(names.count) models")
        grid.fittedText(grid.title, grid.width / 2, 32, size: 18, anchor: .middle)
        for (k, t) in tiles.enumerated() { grid.place(t.1, x: Double(k % cols) * tw, y: 50 + Double(k / cols) * th, scale: s) }
        var files = try Drawing.write(grid, "cka_grid", out: out, style: style, observer)
        var page = HTMLPage(title: grid.title)
        page.add(.paragraph("Models: " + names.joined(separator: ", ") + ". Every pair a < b in argument order, on the same decoded batches; each pair's numbers are those a two-model run of it gives."))
        page.add(.figure(svg: grid.svg(), png: "cka_grid.png", caption: "Each pair's heatmap, magma on one shared range [\(csvNumber(shared.vmin ?? 0)), \(csvNumber(shared.vmax ?? 1))]."))
        for ((i, j, r), (h, fig)) in zip(pairs, tiles) {
            page.add(.heading("\(names[i]) vs \(names[j])"))
            r.addSections(&page, h, figure: fig, png: "cka_grid.png", style: shared)
        }
        page.add(.heading("Definitions and metadata (cka.json)"))
        if let first = pairs.first { Drawing.runSection(&page, first.2.json) }
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}

extension CKAResult {
    /// The widest 95 % interval and where it is, when there are intervals.
    var ciWidest: (width: Double, i: Int, j: Int)? {
        guard let lo = ciLow, let hi = ciHigh else { return nil }
        var best: (Double, Int, Int)?
        for i in lo.indices { for j in lo[i].indices where lo[i][j].isFinite && hi[i][j].isFinite {
            if best == nil || hi[i][j] - lo[i][j] > best!.0 { best = (hi[i][j] - lo[i][j], i, j) }
        } }
        return best.map { (width: $0.0, i: $0.1, j: $0.2) }
    }
}

extension AttentionResult {
    var grid: Int? {
        guard let s = json[path: "setup", "model", "architecture", "image_size"]?.intValue,
              let p = json[path: "setup", "model", "architecture", "patch_size"]?.intValue, p > 0 else { return nil }
        return s / p
    }
    var distanceScale: Double? { json[path: "setup", "definitions", "distance_scale"]?.doubleValue }
    var convention: String? { json[path: "setup", "definitions", "convention"]?.stringValue }

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
        if let n = json["images_used"]?.intValue { sub.append("N = \(n) images") }
        sub.append(all.map { "\($0.heads) heads" }.joined(separator: " / "))
        sub.append(json[path: "setup", "per_image"]?.boolValue == true ? "box over heads × images" : "box over heads")
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
        for (metric, label, top) in [("distance", "mean attention distance (\(unit))", dMax), ("entropy", "mean attention entropy (nats)", eMax)] {
            let series = all.enumerated().map { k, d -> BoxSeries in
                let v = metric == "distance" ? d.distance : d.entropy
                let boxes = (d.boxes[metric] ?? []).map {
                    BoxSummary(q1: $0.q1, median: $0.median, q3: $0.q3, whiskerLow: $0.whiskerLow, whiskerHigh: $0.whiskerHigh, outliers: $0.outliers)
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
                    return v.joined() + (d.boxes[metric] ?? []).flatMap { [$0.whiskerLow, $0.whiskerHigh] + $0.outliers }
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
        page.add(.paragraph(sub.joined(separator: " · ") + ". Per layer: a box over heads, each head a point, the mean over heads a line."))
        let axisNote: String
        switch style.ylim {
        case .auto: axisNote = "the y axis spans the data (--ylim geometry fixes it to the full possible range, for comparing figures side by side)"
        case .geometry: axisNote = "the y axis spans the full possible range: 0 to the largest mean distance any attention could have, 0 to ln(patches)"
        case .fixed: axisNote = "the y axis as given by --ylim"
        }
        for ((base, fig, label), r) in zip(figs, ranges) {
            page.add(.figure(svg: fig.svg(), png: base + ".png", caption: label.prefix(1).uppercased() + label.dropFirst() + " per layer; y from \(csvNumber(r.0)) to \(csvNumber(r.1)): " + axisNote + "."))
        }
        for d in all {
            page.add(.heading("Numbers: \(d.name) (attention.csv)"))
            var rows: [[String]] = []
            for l in 0..<d.layers { for h in 0..<d.heads { rows.append(["\(l + 1)", "\(h)", String(format: "%.3f", d.distance[l][h]), String(format: "%.4f", d.entropy[l][h])]) } }
            page.add(.table(caption: "Per layer and head; full precision in attention.csv", header: ["layer", "head", "mean distance", "mean entropy"], rows: rows, colors: nil))
            var boxRows: [[String]] = []
            for metric in ["distance", "entropy"] {
                for (l, b) in (d.boxes[metric] ?? []).enumerated() {
                    boxRows.append([metric, "\(l + 1)"] + [b.whiskerLow, b.q1, b.median, b.q3, b.whiskerHigh].map { String(format: "%.4g", $0) } + ["\(b.outliers.count)"])
                }
            }
            page.add(.table(caption: "Box statistics (attention_box.csv)", header: ["metric", "layer", "whisker low", "q1", "median", "q3", "whisker high", "outliers"], rows: boxRows, colors: nil))
            page.add(.heading("Definitions and metadata: \(d.name)"))
            Drawing.runSection(&page, d.json)
        }
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}

extension ProbeResult {
    /// probe.png/.svg (accuracy against blocks kept: test solid, train dashed, chance dotted) and index.html.
    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        let L = models.flatMap { $0.rows.map(\.layersKept) }.max() ?? 1
        var series: [LineSeries] = []
        for (i, m) in models.enumerated() {
            let c = seriesColors[i % seriesColors.count]
            series.append(LineSeries(name: "\(m.name) test", color: c, xs: m.rows.map { Double($0.layersKept - 1) }, ys: m.rows.map(\.test),
                                     errors: m.rows.map { ($0.testLow, $0.testHigh) }))
            series.append(LineSeries(name: "\(m.name) train", color: c, xs: m.rows.map { Double($0.layersKept - 1) }, ys: m.rows.map(\.train), dashed: true))
        }
        var sub: [String] = []
        if let tr = json[path: "images_used", "train"]?.intValue, let te = json[path: "images_used", "test"]?.intValue { sub.append("\(tr) train / \(te) test images") }
        if let cl = json[path: "setup", "dataset", "classes"]?.arrayValue { sub.append("\(cl.count) classes") }
        if let pool = json[path: "setup", "definitions", "pool"]?.stringValue { sub.append("pool: \(pool)") }
        sub.append("logistic regression, C = 1")
        if models.contains(where: { $0.rows.contains { $0.testLow.isFinite } }) { sub.append("bars: 95% Wilson") }
        let chance = json["chance_accuracy"]?.doubleValue
        let names = models.map(\.name).joined(separator: " vs ")
        let chart = LineChart(series: series, xLabels: (1...L).map { "\($0)" }, xTitle: "blocks kept (k)", yTitle: "accuracy",
                              yRange: (0, 1), title: style.title ?? "Layer-truncation probe: \(names)", subtitle: sub.joined(separator: " · "),
                              reference: chance.map { ($0, "chance (largest class)") })
        let fig = chart.figure()
        var files = try Drawing.write(fig, "probe", out: out, style: style, observer)
        var page = HTMLPage(title: fig.title)
        page.add(.paragraph(chart.subtitle + ". For each k the first k blocks are kept; solid: test accuracy with its 95% Wilson interval as error bars, dashed: train accuracy."))
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
                        header: ["blocks kept"] + models.flatMap { ["\($0.name) train", "\($0.name) test [95% CI]"] }, rows: table, colors: nil))
        if let ds = json[path: "setup", "dataset"] {
            page.add(.keyValues(caption: "Dataset", ds.flattened().filter { !$0.0.hasSuffix(".paths") }))
        }
        page.add(.heading("Definitions and metadata (probe.json)"))
        Drawing.runSection(&page, json)
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}

/// Any report `vitlens plot` can redraw, read from its folder.
public enum AnyReport {
    case cka(CKAResult)
    case ckaPairs(CKAPairs)
    case attention(AttentionResult)
    case probe(ProbeResult)

    /// `compare`: a second attention report folder to overlay.
    public init(reading dir: String, compare: String? = nil) throws {
        let src = ReportFolder(dir: dir)
        if src.exists("cka.csv") {
            let header = (try? String(contentsOfFile: src.path("cka.csv"), encoding: .utf8))?.prefix(while: { $0 != "\n" }) ?? ""
            self = header.hasPrefix("model_a,") ? .ckaPairs(try CKAPairs(reading: dir)) : .cka(try CKAResult(reading: dir))
        }
        else if src.exists("attention.csv") { self = .attention(try AttentionResult(reading: dir, compareWith: compare)) }
        else if src.exists("probe.csv") { self = .probe(try ProbeResult(reading: dir)) }
        else if src.exists("maps.json") {
            throw LensError.report("\(dir): a maps report; its figure is drawn over the images by `vitlens maps` (the report does not store them), run it again with --out")
        }
        else { throw LensError.report("\(dir): no cka.csv, attention.csv or probe.csv; not a vitlens report folder") }
    }

    public func draw(into out: OutputDirectory, style: FigureStyle, _ observer: RunObserver) throws -> [String] {
        switch self {
        case let .cka(r): return try r.draw(into: out, style: style, observer)
        case let .ckaPairs(r): return try r.draw(into: out, style: style, observer)
        case let .attention(r): return try r.draw(into: out, style: style, observer)
        case let .probe(r): return try r.draw(into: out, style: style, observer)
        }
    }
}
