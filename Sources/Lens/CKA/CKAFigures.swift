import Analysis
import Foundation
import Render

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
extension CKAResult {
    /// The heatmap: model A on the y axis, layer 0 at the bottom, magma on the colour range.
    func heatmap(_ style: FigureStyle) throws -> Heatmap {
        let a = nameA, b = nameB
        var sub: [String] = []
        if let n = imagesUsed { sub.append("N = \(n) images") }
        if let d = setup?.definitions {
            sub += ["minibatch \(d.batch)", "tokens: \(d.tokens)", "rep: \(d.rep)"]
        }
        sub.append("unbiased HSIC")
        if let w = ciWidest { sub.append("95% CI ≤ ±\(String(format: "%.3f", w.width / 2))") }
        let (c0, c1) = colorRange(style)
        sub.append(
            "colours \(csvNumber(c0))–\(csvNumber(c1))" + (style.vmin == nil && style.vmax == nil ? " (data)" : ""))
        var h = Heatmap(values: matrix, rowTitle: "\(a): layer", columnTitle: "\(b): layer",
                        title: style.title ?? "CKA: \(a) vs \(selfComparison ? "itself" : b)",
                            subtitle: sub.joined(separator: " · "))
        (h.vmin, h.vmax) = (c0, c1)
        guard h.vmax > h.vmin else { throw LensError.emptyColourRange(vmin: h.vmin, vmax: h.vmax) }
        return h
    }

    /// The page's sections for this matrix: the figure, its uncertainty, the numbers.
    func addSections(_ page: inout HTMLPage, _ h: Heatmap, figure fig: Figure, png: String, style: FigureStyle) {
        let a = nameA, b = nameB, la = matrix.count, lb = matrix.first?.count ?? 0
        let rangeNote = style.vmin == nil && style.vmax == nil
            ? " (from the data; --vmin 0 --vmax 1 gives the fixed scale)" : style.vmin == nil || style.vmax == nil
            ? " (one end from the data)" : ""
        page.add(
            .paragraph(
            h.subtitle
            + ". Layer 0 is the patch embedding, layer \(la - 1) the final norm; rows are \(a), columns \(b)."))
        page.add(
            .figure(svg: fig.svg(), png: png,
            caption: "Minibatch CKA between every pair of layers, magma on [\(csvNumber(h.vmin)), "
            + "\(csvNumber(h.vmax))]\(rangeNote)."))
        if let w = ciWidest, let m = minibatchesUsed {
            page.add(
                .paragraph(
                "Uncertainty: 95% percentile-bootstrap intervals over the \(m) minibatches (ci_low, ci_high in "
                + "cka.csv); the widest is \(String(format: "%.4f", w.width)) wide, at (\(w.i), \(w.j)). "
                + "Differences between cells smaller than that are not resolved by these images."))
        } else if ciLow != nil {
            page.add(.paragraph("Uncertainty: no bootstrap interval (it needs at least 2 minibatches)."))
        }
        let undefined = h.undefinedCells
        if !undefined.isEmpty {
            page.add(
                .paragraph(
                "Undefined (NaN) cells — a representation constant over the images: "
                + undefined.map { "(\($0.0), \($0.1))" }.joined(separator: ", ")))
        }
        let rowsTop = (0..<la).reversed().map {
            i in ["\(i)"] + matrix[i].map { $0.isNaN ? "NaN" : String(format: "%.4f", $0) } }
        let colors = (0..<la).reversed().map {
            i in [nil] + matrix[i].map { Magma.color($0, vmin: h.vmin, vmax: h.vmax) ?? Magma.undefined } }
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
            let (lo, hi) = CKAResult(matrix: pairs.map { Array($0.2.matrix.joined()) }, json: .object([])).colorRange(
                style)
            (shared.vmin, shared.vmax) = (style.vmin ?? lo, style.vmax ?? hi)
        }
        let tiles = try pairs.map { try $0.2.heatmap(shared) }.map { ($0, $0.figure()) }
        let cols = pairs.count <= 2 ? pairs.count : pairs.count <= 4 ? 2 : 3, rows = (pairs.count + cols - 1) / cols
        let s = cols == 3 ? 0.5 : 0.6, tw = (tiles.first?.1.width ?? 820) * s, th = (tiles.first?.1.height ?? 700) * s
        var grid = Figure(
            width: Double(cols) * tw, height: 50 + Double(rows) * th, title: style.title
            ?? "CKA between \(names.count) models")
        grid.fittedText(grid.title, grid.width / 2, 32, size: 18, anchor: .middle)
        for (k, t) in tiles.enumerated() {
            grid.place(t.1, x: Double(k % cols) * tw, y: 50 + Double(k / cols) * th, scale: s) }
        var files = try Drawing.write(grid, "cka_grid", out: out, style: style, observer)
        var page = HTMLPage(title: grid.title)
        page.add(
            .paragraph(
            "Models: " + names.joined(separator: ", ")
            + ". Every pair a < b in argument order, on the same decoded batches; each pair's numbers are those a "
            + "two-model run of it gives."))
        page.add(
            .figure(svg: grid.svg(), png: "cka_grid.png",
            caption: "Each pair's heatmap, magma on one shared range [\(csvNumber(shared.vmin ?? 0)), "
            + "\(csvNumber(shared.vmax ?? 1))]."))
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
