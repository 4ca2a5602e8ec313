import Analysis
import Foundation
import Render

/// How figures are drawn: shared by the analysing commands and `vitlens plot`.
struct FigureStyle {
    var scale = 1.0
    var vmin: Double?
    var vmax: Double?
    var title: String?
}

struct ReportError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A report folder read back from its files: the CSV tables (the numbers) and the JSON (the
/// metadata, optional). Figures are always drawn from these files, so `vitlens plot` redraws
/// exactly what the analysing command drew.
struct ReportSource {
    let dir: String

    func path(_ name: String) -> String { dir + "/" + name }
    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

    func csv(_ name: String, columns: [String]) throws -> CSVTable {
        let p = path(name)
        guard let data = FileManager.default.contents(atPath: p) else { throw ReportError("\(p): cannot read") }
        guard let text = String(data: data, encoding: .utf8) else { throw ReportError("\(p): not UTF-8 text") }
        let t = try CSVTable.parse(text, path: p)
        try t.require(columns, path: p)
        guard !t.rows.isEmpty else { throw ReportError("\(p): no rows") }
        return t
    }

    /// The report's JSON, or nil when there is none (a CSV-only folder still plots).
    func json(_ name: String) throws -> JSONValue? {
        let p = path(name)
        guard let data = FileManager.default.contents(atPath: p) else { return nil }
        do { return try JSONValue.parse(String(decoding: data, as: UTF8.self)) } catch { throw ReportError("\(p): \(error)") }
    }
}

extension JSONValue {
    subscript(path keys: String...) -> JSONValue? {
        var v: JSONValue? = self
        for k in keys { v = v?[k] }
        return v
    }
    var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    var doubleValue: Double? {
        switch self {
        case let .double(d): return d
        case let .int(i): return Double(i)
        default: return nil
        }
    }
    var arrayValue: [JSONValue]? { if case let .array(a) = self { return a }; return nil }
    /// Flattened key/value pairs of an object, nested keys joined with dots.
    func flattened(prefix: String = "") -> [(String, String)] {
        switch self {
        case let .object(o): return o.flatMap { $0.1.flattened(prefix: prefix.isEmpty ? $0.0 : prefix + "." + $0.0) }
        case let .string(s): return [(prefix, s)]
        case let .array(a) where a.count > 16: return [(prefix, "[\(a.count) values]")]
        default: return [(prefix, render())]
        }
    }
}

/// The figures and index.html of a report.
enum ReportFigures {
    /// Draws the figures of the report whose CSV/JSON are in `sourceDir` into `out`; returns the
    /// file names written. `compareDir`: a second attention report to overlay.
    @discardableResult
    static func render(sourceDir: String, out: OutputDirectory, style: FigureStyle, compareDir: String? = nil) throws -> [String] {
        let src = ReportSource(dir: sourceDir)
        if src.exists("cka.csv") { return try cka(src, out: out, style: style) }
        if src.exists("attention.csv") {
            let cmp = compareDir ?? (src.exists("compare/attention.csv") ? sourceDir + "/compare" : nil)
            return try attention(src, compare: cmp.map(ReportSource.init), out: out, style: style)
        }
        if src.exists("probe.csv") { return try probe(src, out: out, style: style) }
        throw ReportError("\(sourceDir): no cka.csv, attention.csv or probe.csv; not a vitlens report folder")
    }

    /// PNG and SVG of one figure. Without a font (fonts-dejavu-core missing) the PNG is left out
    /// with a warning rather than drawn without its text; the SVG names its fonts and needs none.
    static func write(_ fig: Figure, _ base: String, out: OutputDirectory, style: FigureStyle) throws -> [String] {
        try out.write(base + ".svg", fig.svg())
        guard Font.shared != nil else {
            warnNoFont()
            return [base + ".svg"]
        }
        try out.write(base + ".png", bytes: fig.raster(scale: style.scale).png())
        return [base + ".png", base + ".svg"]
    }

    nonisolated(unsafe) static var warned = false
    static func warnNoFont() {
        guard !warned else { return }
        warned = true
        let reason = Font.defaultError.map { "\($0)" } ?? "no font"
        FileHandle.standardError.write(Data("warning: \(reason); PNG figures skipped (SVG written), `vitlens plot DIR` redraws them\n".utf8))
    }

    static func modelTitle(_ m: JSONValue?) -> String? { m?["path"]?.stringValue.map(modelName) }

    static func runSection(_ page: inout HTMLPage, _ json: JSONValue?, extra: [(String, String)] = []) {
        guard let json else { return }
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
        page.add(.keyValues(caption: "Run", run + extra))
    }

    // MARK: CKA

    static func cka(_ src: ReportSource, out: OutputDirectory, style: FigureStyle) throws -> [String] {
        let t = try src.csv("cka.csv", columns: ["layer_a", "layer_b", "cka"])
        let p = src.path("cka.csv")
        var cells: [(Int, Int, Double)] = []
        for r in 0..<t.rows.count {
            let i = try t.integer(r, "layer_a", path: p), j = try t.integer(r, "layer_b", path: p)
            guard (0..<4097).contains(i), (0..<4097).contains(j) else { throw CSVError(path: p, line: r + 2, reason: "layer out of range") }
            cells.append((i, j, try t.number(r, "cka", path: p)))
        }
        let la = cells.map(\.0).max()! + 1, lb = cells.map(\.1).max()! + 1
        guard cells.count == la * lb else { throw ReportError("\(p): \(cells.count) rows, a \(la)×\(lb) matrix needs \(la * lb)") }
        var m = [[Double]](repeating: [Double](repeating: .nan, count: lb), count: la)
        var seen = Set<Int>()
        for (i, j, v) in cells {
            guard seen.insert(i * lb + j).inserted else { throw ReportError("\(p): pair (\(i), \(j)) appears twice") }
            m[i][j] = v
        }
        let json = try src.json("cka.json")
        let a = modelTitle(json?[path: "setup", "model_a"]) ?? "model A"
        let b = json?[path: "setup", "model_b"]?.stringValue == "same as model_a" ? a : (modelTitle(json?[path: "setup", "model_b"]) ?? "model B")
        var sub: [String] = []
        if let n = json?["images_used"]?.intValue { sub.append("N = \(n) images") }
        if let bt = json?[path: "setup", "definitions", "batch"]?.intValue { sub.append("minibatch \(bt)") }
        if let tk = json?[path: "setup", "definitions", "tokens"]?.stringValue { sub.append("tokens: \(tk)") }
        if let rp = json?[path: "setup", "definitions", "rep"]?.stringValue { sub.append("rep: \(rp)") }
        sub.append("unbiased HSIC")
        var h = Heatmap(values: m, rowTitle: "\(a): layer", columnTitle: "\(b): layer",
                        title: style.title ?? "CKA: \(a) vs \(b == a && json?[path: "setup", "model_b"]?.stringValue == "same as model_a" ? "itself" : b)",
                        subtitle: sub.joined(separator: " · "))
        h.vmin = style.vmin ?? 0
        h.vmax = style.vmax ?? 1
        guard h.vmax > h.vmin else { throw ReportError("--vmax (\(h.vmax)) must be greater than --vmin (\(h.vmin))") }
        let fig = h.figure()
        var files = try write(fig, "cka", out: out, style: style)

        var page = HTMLPage(title: fig.title)
        page.add(.paragraph(h.subtitle + ". Layer 0 is the patch embedding, layer \(la - 1) the final norm; rows are \(a), columns \(b)."))
        page.add(.figure(svg: fig.svg(), png: "cka.png", caption: "Minibatch CKA between every pair of layers, magma on [\(csvNumber(h.vmin)), \(csvNumber(h.vmax))]."))
        let undefined = h.undefinedCells
        if !undefined.isEmpty {
            page.add(.paragraph("Undefined (NaN) cells — a representation constant over the images: " + undefined.map { "(\($0.0), \($0.1))" }.joined(separator: ", ")))
        }
        page.add(.heading("Numbers (cka.csv)"))
        let rowsTop = (0..<la).reversed().map { i in ["\(i)"] + m[i].map { $0.isNaN ? "NaN" : String(format: "%.4f", $0) } }
        let colors = (0..<la).reversed().map { i in [nil] + m[i].map { Magma.color($0, vmin: h.vmin, vmax: h.vmax) ?? Magma.undefined } }
        page.add(.table(caption: "CKA, rows \(a) layer (top = last), columns \(b) layer; full precision in cka.csv",
                        header: ["\(a) \\ \(b)"] + (0..<lb).map { "\($0)" }, rows: rowsTop, colors: colors))
        page.add(.heading("Definitions and metadata (cka.json)"))
        runSection(&page, json)
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }

    // MARK: attention

    struct AttentionData {
        let name: String
        let layers: Int
        let heads: Int
        /// (L, H)
        let distance: [[Double]], entropy: [[Double]]
        let boxes: [String: [BoxSummary]]
        let json: JSONValue?

        var grid: Int? {
            guard let s = json?[path: "setup", "model", "architecture", "image_size"]?.intValue,
                  let p = json?[path: "setup", "model", "architecture", "patch_size"]?.intValue, p > 0 else { return nil }
            return s / p
        }
        var scale: Double? { json?[path: "setup", "definitions", "distance_scale"]?.doubleValue }
        var convention: String? { json?[path: "setup", "definitions", "convention"]?.stringValue }
    }

    static func readAttention(_ src: ReportSource) throws -> AttentionData {
        let t = try src.csv("attention.csv", columns: ["layer", "head", "mean_distance", "mean_entropy"])
        let p = src.path("attention.csv")
        var recs: [(Int, Int, Double, Double)] = []
        for r in 0..<t.rows.count {
            let l = try t.integer(r, "layer", path: p), h = try t.integer(r, "head", path: p)
            guard l >= 1, l <= 4096, h >= 0, h < 4096 else { throw CSVError(path: p, line: r + 2, reason: "layer \(l) / head \(h) out of range") }
            recs.append((l, h, try t.number(r, "mean_distance", path: p), try t.number(r, "mean_entropy", path: p)))
        }
        let L = recs.map(\.0).max()!, H = recs.map(\.1).max()! + 1
        guard recs.count == L * H else { throw ReportError("\(p): \(recs.count) rows, \(L) layers × \(H) heads need \(L * H)") }
        var dist = [[Double]](repeating: [Double](repeating: .nan, count: H), count: L), ent = dist
        for (l, h, d, e) in recs { dist[l - 1][h] = d; ent[l - 1][h] = e }

        let json = try src.json("attention.json")
        var boxes: [String: [BoxSummary]] = [:]
        if src.exists("attention_box.csv") {
            let b = try src.csv("attention_box.csv", columns: ["metric", "layer", "q1", "median", "q3", "whisker_low", "whisker_high"])
            let bp = src.path("attention_box.csv")
            var outliers: [String: [Double]] = [:]
            for e in json?[path: "results", "box"]?.arrayValue ?? [] {
                if let m = e["metric"]?.stringValue, let l = e["layer"]?.intValue, let o = e["outliers"]?.arrayValue {
                    outliers["\(m)/\(l)"] = o.compactMap(\.doubleValue)
                }
            }
            for metric in ["distance", "entropy"] {
                var list = [BoxSummary?](repeating: nil, count: L)
                for r in 0..<b.rows.count where b.rows[r][b.column("metric")!] == metric {
                    let l = try b.integer(r, "layer", path: bp)
                    guard (1...L).contains(l) else { throw CSVError(path: bp, line: r + 2, reason: "layer \(l) outside 1…\(L)") }
                    list[l - 1] = BoxSummary(q1: try b.number(r, "q1", path: bp), median: try b.number(r, "median", path: bp),
                                             q3: try b.number(r, "q3", path: bp), whiskerLow: try b.number(r, "whisker_low", path: bp),
                                             whiskerHigh: try b.number(r, "whisker_high", path: bp), outliers: outliers["\(metric)/\(l)"] ?? [])
                }
                if let missing = list.firstIndex(where: { $0 == nil }) { throw ReportError("\(bp): no \(metric) box for layer \(missing + 1)") }
                boxes[metric] = list.compactMap { $0 }
            }
        } else {
            // No box file: boxes over heads from attention.csv.
            for (metric, v) in [("distance", dist), ("entropy", ent)] {
                boxes[metric] = v.map { row in
                    let s = BoxStats(row.filter { !$0.isNaN }.isEmpty ? [0] : row.filter { !$0.isNaN })
                    return BoxSummary(q1: s.q1, median: s.median, q3: s.q3, whiskerLow: s.whiskerLow, whiskerHigh: s.whiskerHigh, outliers: s.outliers)
                }
            }
        }
        let name = modelTitle(json?[path: "setup", "model"]) ?? (src.dir as NSString).lastPathComponent
        return AttentionData(name: name, layers: L, heads: H, distance: dist, entropy: ent, boxes: boxes, json: json)
    }

    static func attention(_ src: ReportSource, compare: ReportSource?, out: OutputDirectory, style: FigureStyle) throws -> [String] {
        let main = try readAttention(src)
        let all = [main] + (try compare.map { [try readAttention($0)] } ?? [])
        let L = all.map(\.layers).max()!
        // Fixed axes from the geometry, so figures of two models compare side by side: distance up
        // to the largest mean distance any attention could have, entropy up to ln(patches).
        var dMax = 0.0, eMax = 0.0
        for d in all {
            if let g = d.grid, let s = d.scale, g > 0, g <= 256 {
                dMax = max(dMax, AttentionGeometry(grid: g, prefix: 0, scale: s).maxMeanDistance)
                eMax = max(eMax, log(Double(g * g)))
            } else {
                dMax = max(dMax, d.distance.joined().filter(\.isFinite).max() ?? 1)
                eMax = max(eMax, d.entropy.joined().filter(\.isFinite).max() ?? 1)
            }
        }
        let perImage = { (d: AttentionData) -> Bool in if case .bool(true)? = d.json?[path: "setup", "per_image"] { return true }; return false }
        var sub: [String] = []
        if let n = main.json?["images_used"]?.intValue { sub.append("N = \(n) images") }
        sub.append(all.map { "\($0.heads) heads" }.joined(separator: " / "))
        sub.append(perImage(main) ? "box over heads × images" : "box over heads")
        let unit: String
        switch main.convention {
        case "mae-lite"?: unit = "mae-lite units: grid steps × 14"; sub.append("convention mae-lite (scale 14)")
        case "pixels"?: unit = "pixels"; sub.append("convention pixels (scale \(csvNumber(main.scale ?? 0)))")
        default: unit = "as in attention.csv"
        }
        let names = all.map(\.name).joined(separator: " vs ")
        var files: [String] = []
        var figs: [(String, Figure, String)] = []
        for (metric, label, top) in [("distance", "mean attention distance (\(unit))", dMax), ("entropy", "mean attention entropy (nats)", eMax)] {
            let series = all.enumerated().map { k, d -> BoxSeries in
                let v = metric == "distance" ? d.distance : d.entropy
                return BoxSeries(name: d.name, color: seriesColors[k % seriesColors.count], boxes: d.boxes[metric] ?? [],
                                 points: v, means: v.map { row in row.reduce(0, +) / Double(row.count) })
            }
            let chart = BoxChart(series: series, xLabels: (1...L).map { "\($0)" }, yTitle: label, yRange: (0, niceCeiling(top)),
                                 title: style.title.map { "\($0): \(metric)" } ?? "Attention \(metric): \(names)",
                                 subtitle: sub.joined(separator: " · "))
            let fig = chart.figure()
            files += try write(fig, "attention_\(metric)", out: out, style: style)
            figs.append(("attention_\(metric)", fig, label))
        }
        var page = HTMLPage(title: style.title ?? "Attention distance and entropy: \(names)")
        page.add(.paragraph(sub.joined(separator: " · ") + ". Per layer: a box over heads, each head a point, the mean over heads a line."))
        for (base, fig, label) in figs { page.add(.figure(svg: fig.svg(), png: base + ".png", caption: label.prefix(1).uppercased() + label.dropFirst() + " per layer.")) }
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
            runSection(&page, d.json)
        }
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }

    // MARK: probe

    static func probe(_ src: ReportSource, out: OutputDirectory, style: FigureStyle) throws -> [String] {
        let t = try src.csv("probe.csv", columns: ["layers_kept", "train_accuracy", "test_accuracy"])
        let p = src.path("probe.csv")
        let hasModel = t.column("model") != nil
        var order: [String] = [], rows: [String: [(Int, Double, Double)]] = [:]
        for r in 0..<t.rows.count {
            let name = hasModel ? t.rows[r][t.column("model")!] : "model"
            let k = try t.integer(r, "layers_kept", path: p)
            guard k >= 1, k <= 4096 else { throw CSVError(path: p, line: r + 2, reason: "layers_kept \(k) out of range") }
            if rows[name] == nil { order.append(name) }
            rows[name, default: []].append((k, try t.number(r, "train_accuracy", path: p), try t.number(r, "test_accuracy", path: p)))
        }
        let json = try src.json("probe.json")
        // A single-model CSV has no model column: take the name from the JSON.
        let jsonNames = json?["results"]?.arrayValue?.compactMap { $0["model"]?.stringValue } ?? []
        func display(_ n: String) -> String { !hasModel && jsonNames.count == 1 ? jsonNames[0] : n }
        let L = rows.values.flatMap { $0.map(\.0) }.max()!
        var series: [LineSeries] = []
        for (i, name) in order.enumerated() {
            let r = rows[name]!.sorted { $0.0 < $1.0 }
            let c = seriesColors[i % seriesColors.count]
            series.append(LineSeries(name: "\(display(name)) test", color: c, xs: r.map { Double($0.0 - 1) }, ys: r.map(\.2)))
            series.append(LineSeries(name: "\(display(name)) train", color: c, xs: r.map { Double($0.0 - 1) }, ys: r.map(\.1), dashed: true))
        }
        var sub: [String] = []
        if let tr = json?[path: "images_used", "train"]?.intValue, let te = json?[path: "images_used", "test"]?.intValue { sub.append("\(tr) train / \(te) test images") }
        if let cl = json?[path: "setup", "dataset", "classes"]?.arrayValue { sub.append("\(cl.count) classes") }
        if let pool = json?[path: "setup", "definitions", "pool"]?.stringValue { sub.append("pool: \(pool)") }
        sub.append("logistic regression, C = 1")
        let chance = json?["chance_accuracy"]?.doubleValue
        let names = order.map(display).joined(separator: " vs ")
        let chart = LineChart(series: series, xLabels: (1...L).map { "\($0)" }, xTitle: "blocks kept (k)", yTitle: "accuracy",
                              yRange: (0, 1), title: style.title ?? "Layer-truncation probe: \(names)", subtitle: sub.joined(separator: " · "),
                              reference: chance.map { ($0, "chance (largest class)") })
        let fig = chart.figure()
        var files = try write(fig, "probe", out: out, style: style)
        var page = HTMLPage(title: fig.title)
        page.add(.paragraph(chart.subtitle + ". For each k the first k blocks are kept; solid: test accuracy, dashed: train accuracy."))
        page.add(.figure(svg: fig.svg(), png: "probe.png", caption: "Accuracy against the number of blocks kept."))
        page.add(.heading("Numbers (probe.csv)"))
        var table: [[String]] = []
        for name in order { for r in rows[name]!.sorted(by: { $0.0 < $1.0 }) { table.append([display(name), "\(r.0)", String(format: "%.4f", r.1), String(format: "%.4f", r.2)]) } }
        page.add(.table(caption: "Accuracy per depth", header: ["model", "blocks kept", "train accuracy", "test accuracy"], rows: table, colors: nil))
        if let ds = json?[path: "setup", "dataset"] {
            page.add(.keyValues(caption: "Dataset", ds.flattened().filter { !$0.0.hasSuffix(".paths") }))
        }
        page.add(.heading("Definitions and metadata (probe.json)"))
        runSection(&page, json)
        try out.write("index.html", page.render())
        files.append("index.html")
        return files
    }
}
